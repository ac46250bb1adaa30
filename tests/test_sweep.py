"""Sweeps: estimators, the generation cache, sample reuse, budgets, resume, config, report."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from reasoning.benchmarks.cli import main
from reasoning.benchmarks.compute import ExtendedComputeModel, ModelShape
from reasoning.benchmarks.estimators import bootstrap_ci, coverage_curve, fit_coverage, pass_at_k, saturation, subset_mean
from reasoning.benchmarks.sweep import Sweep, SweepConfig, _mark_saturation
from reasoning.backends import Scripted
from reasoning.backends.cache import CachedBackend
from reasoning.errors import ConfigError
from reasoning.types import GenerationRequest, Message

GOLD = {}  # gsm8k gold answers of the first problems, filled lazily


def gsm8k_gold(limit: int) -> dict[str, str]:
    from reasoning.benchmarks.datasets import load_items

    return {item.problem: item.answer for item in load_items("gsm8k", limit)}


def per_problem_responder(right_every: int, golds: dict[str, str]):
    """Sample i of a problem is right when i % right_every == 0, else a wrong answer that
    depends on i, so votes split and pools differ across problems."""
    counts: Counter[str] = Counter()

    def respond(request: GenerationRequest, _index: int) -> str:
        text = request.prompt_text()
        gold = next((g for q, g in golds.items() if q in text), "0")
        i = counts[text]
        counts[text] += 1
        answer = gold if i % right_every == 0 else f"{1000 + i % 5}"
        return f"Reasoning {i}. \\boxed{{{answer}}}"

    return respond


# -- estimators -------------------------------------------------------------------------
def test_pass_at_k_matches_brute_force():
    for n in range(1, 7):
        for c in range(n + 1):
            for k in range(1, n + 1):
                outcomes = [1] * c + [0] * (n - c)
                subsets = list(itertools.combinations(outcomes, k))
                assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_subset_mean_is_exact_when_it_can_enumerate_and_close_when_it_samples():
    pool = [1, 0, 0, 1, 0, 1, 1, 0]
    rng = random.Random(0)
    exact = sum(max(set(s), key=s.count) for s in itertools.combinations(pool, 3)) / math.comb(8, 3)
    # A majority of 3 binary values has no ties: enumeration must be exact.
    assert subset_mean(pool, 3, lambda s: max(set(s), key=s.count), draws=1000, rng=rng) == pytest.approx(exact)
    sampled = subset_mean(pool, 3, lambda s: max(set(s), key=s.count), draws=20, rng=rng)
    assert abs(sampled - exact) < 0.3
    with pytest.raises(ValueError):
        subset_mean(pool, 9, sum, draws=10, rng=rng)


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_more_problems():
    few = [1.0, 0.0] * 10
    many = [1.0, 0.0] * 500
    low, high = bootstrap_ci(few, seed=1)
    assert low < 0.5 < high
    low2, high2 = bootstrap_ci(many, seed=1)
    assert low2 < 0.5 < high2 and (high2 - low2) < (high - low) / 3
    assert bootstrap_ci([1.0] * 5) == (1.0, 1.0)


def test_fit_coverage_recovers_an_exponentiated_power_law():
    ks = list(range(1, 65))
    curve = [math.exp(-1.7 * k**-0.45) for k in ks]
    fit = fit_coverage(ks, curve)
    assert fit.a == pytest.approx(-1.7, rel=1e-6) and fit.b == pytest.approx(-0.45, rel=1e-6)
    assert fit.r2 == pytest.approx(1.0) and fit(10) == pytest.approx(curve[9])
    assert fit_coverage([1, 2], [1.0, 1.0]) is None  # saturated: nothing to fit


def test_coverage_curve_averages_unbiased_pass_at_k():
    curve = coverage_curve([(4, 1), (4, 0), (4, 4)], [1, 2, 4])
    assert curve == pytest.approx([(0.25 + 0 + 1) / 3, (0.5 + 0 + 1) / 3, (1 + 0 + 1) / 3])


def test_saturation_marks_the_first_budget_after_which_doublings_stop_paying():
    budgets = [1, 2, 4, 8, 16]
    accuracy = [0.2, 0.4, 0.5, 0.505, 0.507]
    gains, point = saturation(budgets, accuracy, threshold=0.01)
    assert gains[0] == pytest.approx(0.2) and gains[-1] is None
    assert point == 2  # from 4 on, every doubling gains < 1 point
    assert saturation(budgets, [0.1, 0.2, 0.3, 0.4, 0.5], 0.01)[1] is None


# -- compute ----------------------------------------------------------------------------
def test_flops_include_attention_and_extended_effective_flops_charge_kv_and_weight_reads():
    shape = ModelShape(params=1e6, layers=2, d_attn=8, d_kv=4)
    model = ExtendedComputeModel(shape, intensity=100.0, batch=1)  # Kinetics' own model: tests/test_compute.py
    flops, effective = model.call(10, [5])
    context = 10 * 5 + 5 * 5 / 2
    expected = 2e6 * 10 + 2 * 2 * 8 * 100 + 2e6 * 5 + 4 * 2 * 8 * context
    assert flops == pytest.approx(expected)
    kv_bytes = 2.0 * 2 * 2 * 4 * context
    assert effective == pytest.approx(expected + 100.0 * (kv_bytes + 2.0 * 1e6 * 5))
    # Longer generations: attention grows quadratically, so FLOPs per token rise.
    assert model.call(0, [4000])[0] / 4000 > model.call(0, [40])[0] / 40
    # Without native n each sample prefills its own copy of the prompt.
    assert model.call(20, [5, 5], prefill_per_sample=True)[0] > model.call(10, [5, 5])[0]


def test_model_shape_from_a_hf_config():
    config = {"hidden_size": 896, "num_attention_heads": 14, "num_key_value_heads": 2, "num_hidden_layers": 24,
              "intermediate_size": 4864, "vocab_size": 151936, "tie_word_embeddings": True}
    shape = ModelShape.from_config(config)
    assert (shape.layers, shape.d_attn, shape.d_kv) == (24, 896, 128)
    # Qwen2.5-0.5B: ~358M in its layers + 136M for the logits (896 x 151,936, tied or not): what
    # flops_params counts from its weights (494,032,768)
    assert 4.9e8 < shape.params < 5.0e8
    assert ModelShape.from_config({**config, "tie_word_embeddings": False}).params == shape.params
    assert ModelShape.from_config(config, params=123).params == 123


# -- the generation cache ---------------------------------------------------------------
def run(coro):
    return asyncio.run(coro)


def request(n: int, temperature: float = 0.7) -> GenerationRequest:
    return GenerationRequest(messages=(Message("user", "What is 2+2?"),), n=n, max_tokens=50, temperature=temperature)


def test_cache_serves_stored_samples_and_generates_only_missing_ones(tmp_path):
    inner = Scripted(responder=lambda req, i: f"sample {i} \\boxed{{{i}}}", completion_tokens=7)
    cached = CachedBackend(inner, tmp_path / "gen.sqlite")
    first = run(cached.generate(request(3)))
    assert [c.text for c in first.completions] == [f"sample {i} \\boxed{{{i}}}" for i in range(3)]
    again = run(cached.generate(request(2)))
    assert [c.text for c in again.completions] == [c.text for c in first.completions[:2]]
    assert inner.calls == 1 and again.info["cache"] == {"reused": 2, "generated": 0}
    more = run(cached.generate(request(5)))
    assert inner.calls == 2 and inner.requests[-1].n == 2  # only the two missing samples
    assert [c.text for c in more.completions[:3]] == [c.text for c in first.completions]
    assert more.completion_tokens == 5 * 7
    run(cached.generate(request(2, temperature=0.0)))  # other sampling parameters: another key
    assert inner.calls == 3
    run(cached.aclose())
    # A new process (new instance) finds everything on disk.
    reopened = CachedBackend(Scripted(responder=lambda req, i: "never"), tmp_path / "gen.sqlite")
    assert [c.text for c in run(reopened.generate(request(5))).completions] == [c.text for c in more.completions]
    assert reopened.inner.calls == 0


def test_cached_usage_equals_the_original_usage(tmp_path):
    inner = Scripted(completion_tokens=11, usd_per_token=(1e-6, 2e-6))
    cached = CachedBackend(inner, tmp_path / "gen.sqlite")
    fresh = run(cached.generate(request(4)))
    hit = run(cached.generate(request(4)))
    assert (hit.prompt_tokens, hit.completion_tokens) == (fresh.prompt_tokens, fresh.completion_tokens)
    assert hit.usd == pytest.approx(fresh.usd)


@pytest.mark.parametrize("native_n", [True, False], ids=["native-n", "fan-out"])
def test_a_request_served_from_a_bigger_stored_call_reports_what_it_would_cost_uncached(tmp_path, native_n):
    """n=2 served (wholly or partly) from a stored n=8 call: one prompt copy and one call with
    native n, two of each with fan-out; USD likewise (it was k/N of the big call's prompt)."""

    def inner():
        return Scripted(completion_tokens=11, usd_per_token=(1e-6, 2e-6), native_n=native_n, prefix_cache=False)

    cached = CachedBackend(inner(), tmp_path / "gen.sqlite")
    run(cached.generate(request(8)))
    uncached = run(inner().generate(request(2)))
    for served in (run(cached.generate(request(2))), run(cached.generate(request(10)))):
        ask = len(served.completions)
        expected = uncached if ask == 2 else run(inner().generate(request(ask)))
        assert (served.prompt_tokens, served.completion_tokens, served.calls) == \
            (expected.prompt_tokens, expected.completion_tokens, expected.calls)
        assert served.usd == pytest.approx(expected.usd)


def test_a_step_continuation_through_the_cache_keeps_its_stop_ids_and_prefix_cache_hits(tmp_path):
    """Step searches in a sweep go through the cache: a stored step must still say which stop
    string ended it (else every step looks like a finished solution), and a fresh one must
    pass on the engine's prefix-cache hits and the prompt's token ids."""
    inner = Scripted(responder=lambda req, i: "Step one.\n\nStep two \\boxed{4}", completion_tokens=9)
    cached = CachedBackend(inner, tmp_path / "gen.sqlite")
    first = GenerationRequest(prompt_token_ids=tuple(inner.encode("What is 2+2?")), n=2, max_tokens=50,
                              stop=("\n\n",), include_stop=True)
    fresh = run(cached.generate(first))
    assert [c.stop_reason for c in fresh.completions] == ["\n\n", "\n\n"]
    assert fresh.prompt_token_ids is not None
    again = run(cached.generate(first))  # outside a scope: the stored rows
    assert cached.hits == 2 and [c.stop_reason for c in again.completions] == ["\n\n", "\n\n"]
    longer = (*fresh.prompt_token_ids, *fresh.completions[0].token_ids)
    step = GenerationRequest(prompt_token_ids=longer, n=1, max_tokens=50, stop=("\n\n",), include_stop=True)
    continued = run(cached.generate(step))
    assert continued.cached_prompt_tokens == len(fresh.prompt_token_ids) + len(fresh.completions[0].token_ids)
    assert tuple(continued.prompt_token_ids) == longer
    replayed = run(cached.generate(step))  # served from disk: the same uncached tokens as made
    assert cached.hits == 3 and replayed.cached_prompt_tokens == continued.cached_prompt_tokens


def test_a_cache_file_from_before_prefix_hits_were_stored_still_opens_and_serves(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE completions (key TEXT NOT NULL, idx INTEGER NOT NULL, completion TEXT NOT NULL, "
                   "prompt_tokens INTEGER NOT NULL, call_n INTEGER NOT NULL, usd REAL NOT NULL, PRIMARY KEY (key, idx))")
    cached = CachedBackend(Scripted(completion_tokens=5), path)
    made = run(cached.generate(request(2)))
    served = run(cached.generate(request(2)))
    assert cached.hits == 2 and [c.text for c in served.completions] == [c.text for c in made.completions]


def test_concurrent_requests_for_one_key_generate_once(tmp_path):
    inner = Scripted(latency=0.05)
    cached = CachedBackend(inner, tmp_path / "gen.sqlite")

    async def both():
        return await asyncio.gather(cached.generate(request(4)), cached.generate(request(4)))

    a, b = run(both())
    assert inner.calls == 1 and [c.text for c in a.completions] == [c.text for c in b.completions]


def test_within_a_scope_repeated_asks_get_new_samples_and_a_new_scope_starts_over(tmp_path):
    from reasoning.backends.cache import cache_scope

    inner = Scripted(responder=lambda req, i: f"s{i}")
    cached = CachedBackend(inner, tmp_path / "gen.sqlite")

    async def waves():
        with cache_scope():
            first = await cached.generate(request(2))
            second = await cached.generate(request(2))
            both = await asyncio.gather(cached.generate(request(1)), cached.generate(request(1)))
        return first, second, both

    first, second, both = run(waves())
    texts = [c.text for r in (first, second, *both) for c in r.completions]
    assert texts[:4] == ["s0", "s1", "s2", "s3"] and sorted(texts[4:]) == ["s4", "s5"]
    assert inner.calls == 4
    # A new scope (the next problem or strategy) reuses the stored rows from the start.
    _, second_again, _ = run(waves())
    assert [c.text for c in second_again.completions] == ["s2", "s3"] and inner.calls == 4
    # Outside any scope every ask starts from the first row.
    assert [c.text for c in run(cached.generate(request(2))).completions] == ["s0", "s1"]


# -- sweeps end to end --------------------------------------------------------------------
def make_sweep(tmp_path, backend, **fields) -> tuple[Sweep, CachedBackend]:
    config = SweepConfig(**{"datasets": ["gsm8k"], "limit": 4, "out": str(tmp_path / "sweep"), **fields})
    cached = CachedBackend(backend, tmp_path / "sweep" / "generations.sqlite")
    return Sweep(config, cached), cached


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_reuse_at_full_pool_equals_a_direct_run_and_small_n_is_a_subset_average(tmp_path):
    golds = gsm8k_gold(4)
    backend = Scripted(responder=per_problem_responder(3, golds))
    sweep, cached = make_sweep(tmp_path, backend, strategies=[{"name": "self-consistency"}], n=[1, 2, 8], subsets=64)
    summary = run(sweep.run())
    cells = {row["point"]: row for row in summary["cells"]}
    # 8 samples: 3 right (i = 0, 3, 6); the wrong ones split 1001/1002/1004/1000/1002: right wins.
    assert cells["n=8"]["accuracy"] == 1.0
    # n=1: a random single sample is right with probability 3/8.
    assert cells["n=1"]["accuracy"] == pytest.approx(3 / 8)
    # n=2: both right (3 of 28 pairs) wins; one right and one wrong (15 of 28) is a 1-1 tie the
    # right answer wins in half of the orders; both wrong loses: (3 + 15/2) / 28 = 0.375 exactly
    # (8·7 = 56 ordered pairs <= 64 subsets: every order is enumerated).
    assert cells["n=2"]["accuracy"] == pytest.approx(10.5 / 28)
    assert backend.calls == 4  # one pool per problem served every n
    # Completions scale with n; the one request's prompt and call are paid at every n.
    assert cells["n=8"]["usage"]["completion_tokens"] == pytest.approx(8 * cells["n=1"]["usage"]["completion_tokens"])
    assert cells["n=1"]["usage"]["calls"] == cells["n=8"]["usage"]["calls"] == 1
    # The same strategy run directly with n=8 sees the same (cached) samples and the same answer.
    direct, _ = make_sweep(tmp_path / "direct", backend, strategies=[{"name": "self-consistency"}], n=[8], reuse=False,
                           cache=str(tmp_path / "sweep" / "generations.sqlite"))
    direct.backend = cached
    assert run(direct.run())["cells"][0]["accuracy"] == 1.0
    assert backend.calls == 4
    coverage = summary["coverage"]["gsm8k"]["self-consistency"]
    assert coverage["coverage"][0] == pytest.approx(3 / 8) and coverage["coverage"][-1] == 1.0


def _genrm_responder(req: GenerationRequest, i: int) -> str:
    if "Is the answer correct" in req.prompt_text():
        return "Checks out. Verification: Is the answer correct (Yes/No)? Yes"
    return f"Work. \\boxed{{{i % 3}}}"


POOLED_VS_DIRECT = [
    ({"name": "self-consistency"}, True),
    ({"name": "self-consistency"}, False),
    ({"name": "genrm-best-of-n", "options": {"k_verifications": 2, "verify_max_tokens": 64}}, True),
    ({"name": "genrm-best-of-n", "options": {"k_verifications": 2, "verify_max_tokens": 64}}, False),
]


@pytest.mark.parametrize(("strategy", "native_n"), POOLED_VS_DIRECT,
                         ids=["sc-native", "sc-fan-out", "genrm-native", "genrm-fan-out"])
def test_a_pooled_point_costs_what_the_strategy_pays_run_directly_at_that_k(tmp_path, strategy, native_n):
    """Pooled accounting against the real thing: each point run directly, on a backend whose
    costs are deterministic (every completion 30 tokens), must cost exactly the pooled row's
    usage: with native n the prompt and the call once per request, with fan-out per sample."""

    def backend():
        return Scripted(responder=_genrm_responder, completion_tokens=30, logprobs=False, native_n=native_n,
                        usd_per_token=(1e-6, 3e-6), prefix_cache=False)

    ns = [1, 2, 5, 8]
    pooled, _ = make_sweep(tmp_path / "pooled", backend(), strategies=[strategy], n=ns, limit=3)
    direct, _ = make_sweep(tmp_path / "direct", backend(), strategies=[strategy], n=ns, limit=3, reuse=False)
    pooled_cells = {row["point"]: row for row in run(pooled.run())["cells"]}
    direct_cells = {row["point"]: row for row in run(direct.run())["cells"]}
    assert {row["mode"] for row in pooled_cells.values()} == {"reuse"}
    assert {row["mode"] for row in direct_cells.values()} == {"direct"}
    for point in (f"n={n}" for n in ns):
        for kind in ("tokens", "completion_tokens", "uncached_tokens", "calls", "usd"):
            assert pooled_cells[point]["usage"][kind] == pytest.approx(direct_cells[point]["usage"][kind]), (point, kind)
    if native_n and strategy["name"] == "self-consistency":
        assert pooled_cells["n=1"]["usage"]["calls"] == pooled_cells["n=8"]["usage"]["calls"] == 1


def test_worst_case_budget_mode_gives_pooled_strategies_the_k_a_direct_run_is_granted(tmp_path):
    """Under ``worst-case`` a pooled point gets the n the ledger lets a direct run reserve
    (prompt + n x max_tokens within the budget); ``expected`` matches the mean cost instead."""

    def backend():
        return Scripted(completion_tokens=40, prefix_cache=False)

    grid = {"tokens": [150, 300, 700]}
    strategies = [{"name": "self-consistency"}]
    worst, _ = make_sweep(tmp_path / "worst", backend(), strategies=strategies, budget_grid=grid, pool=16,
                          max_tokens=100, budget_mode="worst-case", limit=2)
    expected, _ = make_sweep(tmp_path / "expected", backend(), strategies=strategies, budget_grid=grid, pool=16,
                             max_tokens=100, limit=2)
    direct, _ = make_sweep(tmp_path / "direct", backend(), strategies=strategies, budget_grid=grid, max_n=16,
                           max_tokens=100, reuse=False, limit=2)
    run(worst.run()), run(expected.run()), run(direct.run())
    granted = {(r["id"], r["point"]): r["info"]["n"] for r in rows_of(tmp_path / "direct" / "sweep" / "problems.jsonl")}
    worst_k = {(r["id"], r["point"]): r["n"] for r in rows_of(tmp_path / "worst" / "sweep" / "problems.jsonl")}
    expected_k = {(r["id"], r["point"]): r["n"] for r in rows_of(tmp_path / "expected" / "sweep" / "problems.jsonl")}
    assert worst_k == granted
    assert all(expected_k[key] > worst_k[key] for key in worst_k)  # 40-token completions: more fit on average
    assert len(set(worst_k.values())) > 1  # the points differ
    # The report says which matching its table uses.
    from reasoning.benchmarks.report import render

    assert "(worst-case mode)" in render(tmp_path / "worst" / "sweep").read_text()
    assert "(expected mode)" in render(tmp_path / "expected" / "sweep").read_text()


def test_budget_grid_with_reuse_fits_each_problem_in_its_budget(tmp_path):
    backend = Scripted(completion_tokens=100)
    sweep, _ = make_sweep(tmp_path, backend, strategies=[{"name": "self-consistency"}],
                          budget_grid={"tokens": [250, 1000, 100000]}, pool=8)
    run(sweep.run())
    rows = rows_of(tmp_path / "sweep" / "problems.jsonl")
    for row in rows:
        limit = float(row["point"].split("=")[1])
        assert row["cost"]["tokens"] <= limit + 1e-9
        per_sample = row["cost"]["tokens"] / row["n"] if row["n"] else 0
        if not row["capped"]:
            assert per_sample * (row["n"] + 1) > limit  # the largest k that fits
    assert all(row["capped"] for row in rows if row["point"] == "tokens=100000")
    assert {row["n"] for row in rows if row["point"] == "tokens=100000"} == {8}


def test_direct_strategies_run_under_the_enforced_budget(tmp_path):
    backend = Scripted(completion_tokens=100)
    sweep, _ = make_sweep(tmp_path, backend, strategies=[{"name": "self-consistency"}], reuse=False,
                          budget_grid={"tokens": [400, 1200]}, max_tokens=100)
    summary = run(sweep.run())
    rows = rows_of(tmp_path / "sweep" / "problems.jsonl")
    assert all(row["mode"] == "direct" for row in rows)
    # The strategy's scalar info travels with each row (here SC's vote share and n).
    assert all({"share", "n"} <= set(row["info"]) and "votes" not in row["info"] for row in rows)
    for row in rows:
        assert row["cost"]["tokens"] <= float(row["point"].split("=")[1])
    small, large = sorted(summary["cells"], key=lambda r: r["budget"])
    assert small["usage"]["tokens"] < large["usage"]["tokens"]


def test_a_killed_sweep_resumes_without_regenerating(tmp_path):
    golds = gsm8k_gold(4)
    backend = Scripted(responder=per_problem_responder(2, golds))
    sweep, cached = make_sweep(tmp_path, backend, strategies=[{"name": "self-consistency"}, {"name": "greedy"}], n=[1, 4])
    first = run(sweep.run())
    run(cached.aclose())
    problems = tmp_path / "sweep" / "problems.jsonl"
    lines = problems.read_bytes().splitlines(keepends=True)
    problems.write_bytes(b"".join(lines[:-3]) + lines[-3][:10])  # lost rows and a torn last line
    again_backend = Scripted(responder=lambda req, i: "never called")
    sweep2, cached2 = make_sweep(tmp_path, again_backend, strategies=[{"name": "self-consistency"}, {"name": "greedy"}], n=[1, 4])
    second = run(sweep2.run())
    assert again_backend.calls == 0 and cached2.hits > 0
    assert [(r["strategy"], r["point"], r["accuracy"]) for r in second["cells"]] == \
        [(r["strategy"], r["point"], r["accuracy"]) for r in first["cells"]]
    assert all(r["n_problems"] == 4 for r in second["cells"])
    # The same folder with other sampling settings is refused.
    other, _ = make_sweep(tmp_path, again_backend, strategies=[{"name": "greedy"}], n=[1], temperature=0.1)
    with pytest.raises(ConfigError, match="temperature"):
        run(other.run())


def test_a_stored_compressed_sweep_folder_reads_reports_and_resumes_as_one_plain_file(tmp_path):
    """Finished result folders keep problems.jsonl gzip-compressed (every GPU call carries the
    repository): tables and reports read it as is, and a resume turns it back into the one
    append-only file instead of starting a second one beside it."""
    import gzip

    from reasoning.benchmarks.cli import main as bench
    from reasoning.benchmarks.run import read_rows

    golds = gsm8k_gold(4)
    strategies = [{"name": "self-consistency"}]
    sweep, cached = make_sweep(tmp_path, Scripted(responder=per_problem_responder(2, golds)), strategies=strategies,
                               n=[1, 4], limit=3)
    run(sweep.run())
    run(cached.aclose())
    problems = tmp_path / "sweep" / "problems.jsonl"
    plain = problems.read_bytes()
    packed = problems.with_name("problems.jsonl.gz")
    packed.write_bytes(gzip.compress(plain))
    problems.unlink()
    assert read_rows(problems) == [json.loads(line) for line in plain.splitlines()]
    assert bench(["report", str(tmp_path / "sweep")]) == 0
    # one more problem: the stored rows are kept, the new ones appended, only the new problem generated
    again = Scripted(responder=per_problem_responder(2, golds))
    sweep2, cached2 = make_sweep(tmp_path, again, strategies=strategies, n=[1, 4], limit=4)
    summary = run(sweep2.run())
    run(cached2.aclose())
    assert not packed.exists() and problems.read_bytes().startswith(plain)
    assert again.calls == 1 and all(cell["n_problems"] == 4 for cell in summary["cells"])


def test_genrm_pools_are_reused_with_verification_cost_per_candidate(tmp_path):
    def respond(req: GenerationRequest, i: int) -> str:
        text = req.prompt_text()
        if "Is the answer correct" in text or "Verification" in text or "verify" in text.lower():
            return "The solution checks out. Verification: Is the answer correct (Yes/No)? Yes"
        return f"Work. \\boxed{{{i % 4}}}"

    backend = Scripted(responder=respond, completion_tokens=30, logprobs=False)
    sweep, _ = make_sweep(tmp_path, backend, limit=2,
                          strategies=[{"name": "genrm-best-of-n", "options": {"k_verifications": 2, "verify_max_tokens": 64}},
                                      {"name": "self-consistency", "n": [1, 8]}],
                          n=[1, 2, 4])
    summary = run(sweep.run())
    # A strategy's own n points replace the grid's for it (and size its pool).
    assert [r["point"] for r in summary["cells"] if r["strategy"] == "self-consistency"] == ["n=1", "n=8"]
    cells = {row["point"]: row for row in summary["cells"] if row["strategy"] == "genrm-best-of-n"}
    # Each candidate costs its solution plus two verification chains.
    per_candidate = cells["n=1"]["usage"]["completion_tokens"]
    assert per_candidate == pytest.approx(30 * 3)
    assert cells["n=4"]["usage"]["completion_tokens"] == pytest.approx(4 * per_candidate)


def test_sweep_config_validation_and_files(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        SweepConfig(datasets=["gsm8k"], strategies=[{"name": "greedy"}], out="x")
    with pytest.raises(ValueError, match="unknown budget kind"):
        SweepConfig(datasets=["gsm8k"], strategies=[{"name": "greedy"}], budget_grid={"parsecs": [1]}, out="x")
    with pytest.raises(ValueError, match="distinct"):
        SweepConfig(datasets=["gsm8k"], strategies=[{"name": "greedy"}, {"name": "greedy"}], n=[1], out="x")
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text("datasets: [gsm8k]\nlimit: 3\nstrategies:\n  - name: self-consistency\n"
                         "  - name: best-of-n\n    options: {verifier: confidence}\nn: [4, 1, 2]\nout: OUT\n")
    config = SweepConfig.from_file(yaml_file, out=str(tmp_path / "o"))
    assert config.n == [1, 2, 4] and config.out == str(tmp_path / "o") and config.strategies[1].options == {"verifier": "confidence"}
    toml_file = tmp_path / "s.toml"
    toml_file.write_text('datasets = ["gsm8k"]\nout = "o"\n[budget_grid]\ntokens = [1000, 2000]\n'
                         '[[strategies]]\nname = "self-consistency"\n')
    assert SweepConfig.from_file(toml_file).budget_grid == {"tokens": [1000.0, 2000.0]}
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [gsm8k\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        SweepConfig.from_file(bad)


def test_cli_sweep_writes_rows_plots_and_report(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["sweep", "--dataset", "gsm8k", "--limit", "3", "--strategy", "self-consistency",
                 "--strategy", "best-of-n:verifier=confidence", "--n", "1,2,4", "--backend", "scripted:18,3,18,5",
                 "--out", str(out)])
    assert code == 0
    rows = rows_of(out / "sweep.jsonl")
    assert {(r["strategy"], r["point"]) for r in rows} == {
        (s, f"n={n}") for s in ("self-consistency", "best-of-n:verifier=confidence") for n in (1, 2, 4)}
    for row in rows:
        assert row["ci95"][0] <= row["accuracy"] <= row["ci95"][1] and row["n_problems"] == 3
    html = (out / "report.html").read_text()
    assert "accuracy_gsm8k.png" in html and "coverage_gsm8k.png" in html
    assert (out / "accuracy_gsm8k.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert re.search(r"coverage gsm8k / self-consistency: @1 [\d.]+, @4 [\d.]+; coverage\(k\) ≈ exp", printed) or "no fit" in printed
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.html").exists()
    assert main(["sweep", "--dataset", "gsm8k", "--strategy", "greedy", "--n", "1", "--budget-grid", "tokens=5",
                 "--out", str(tmp_path / "bad")]) == 2
    assert main(["sweep", "--dataset", "gsm8k", "--strategy", "greedy:bogus=1", "--n", "1", "--out", str(tmp_path / "bad")]) == 2
    assert main(["report", str(tmp_path)]) == 2


@pytest.mark.slow
def test_sweep_on_the_embedded_model_counts_real_tokens_and_flops(tmp_path):
    """The real model on CPU: a pooled SC sweep, then a second run served wholly by the cache."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "real"
    cmd = [sys.executable, "-m", "reasoning.benchmarks.cli", "sweep", "--dataset", "gsm8k", "--limit", "2", "--strategy",
           "self-consistency", "--n", "1,2", "--backend", "local", "--max-tokens", "96", "--x-axis", "eflops",
           "--out", str(out)]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = rows_of(out / "sweep.jsonl")
    assert [r["point"] for r in rows] == ["n=1", "n=2"]
    one, two = rows
    assert 0 < one["usage"]["completion_tokens"] <= 96
    # direct-run accounting: the prompt once, the completions per sample
    assert two["usage"]["completion_tokens"] == pytest.approx(2 * one["usage"]["completion_tokens"])
    assert two["usage"]["tokens"] - one["usage"]["tokens"] == pytest.approx(one["usage"]["completion_tokens"])
    # FLOPs from the model's own config.json: more than 2·params·tokens (attention); Kinetics'
    # eFLOPs (no prefill) more than the completions' parameter FLOPs (KV reads); the extended
    # eFLOPs (prefill, weight reads) more than the FLOPs.
    assert one["usage"]["flops"] > 2 * 3.5e8 * one["usage"]["tokens"]
    assert one["usage"]["eflops"] > 2 * 3.5e8 * one["usage"]["completion_tokens"]
    assert one["usage"]["eflops_extended"] > one["usage"]["flops"]
    (out / "problems.jsonl").unlink()  # forget the results, keep the generation cache
    again = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 samples reused, 0 generated" in " ".join(again.stderr.split())
    assert rows_of(out / "sweep.jsonl") == rows


def test_run_sweeps_shares_one_backend_learns_the_policy_first_and_resumes(tmp_path):
    from reasoning.benchmarks.run_sweeps import main as run_sweeps

    pooled = tmp_path / "pooled.yaml"
    pooled.write_text("datasets: [gsm8k]\nlimit: 3\nn: [1, 4]\nstrategies:\n  - name: self-consistency\n"
                      "out: pooled\ncache: shared.sqlite\nmax_tokens: 64\n")
    routed = tmp_path / "routed.yaml"
    routed.write_text("datasets: [gsm8k]\nlimit: 3\nbudget_grid: {tokens: [600]}\nmax_n: 4\nmax_tokens: 64\n"
                      "strategies:\n  - name: self-consistency\n  - name: compute-optimal\n    options: {policy: policy.json}\n"
                      "out: routed\ncache: shared.sqlite\n")
    root = tmp_path / "root"
    argv = [str(pooled), str(routed), "--backend", "scripted:18,72", "--root", str(root),
            "--calibrate", "gsm8k:10:4:600:300=policy.json", "--status", str(tmp_path / "status.json")]
    assert run_sweeps(argv) == 0
    assert json.loads((tmp_path / "status.json").read_text()) == {str(root / "pooled"): "done", str(root / "routed"): "done"}
    policy = json.loads((root / "policy.json").read_text())
    assert policy["bins"] and all("strategy" in b for b in policy["bins"])
    rows = rows_of(root / "routed" / "sweep.jsonl")
    assert {r["strategy"] for r in rows} == {"self-consistency", "compute-optimal"}
    assert all(r["n_problems"] == 3 for r in rows)
    before = (root / "routed" / "problems.jsonl").read_text()
    assert run_sweeps(argv) == 0  # everything done: nothing is redone
    assert (root / "routed" / "problems.jsonl").read_text() == before


def test_budget_kinds_the_backend_cannot_measure_are_refused_up_front(tmp_path):
    for kind, match in (("usd", "no prices"), ("flops", "parameter count")):
        sweep, _ = make_sweep(tmp_path / kind, Scripted(), strategies=[{"name": "self-consistency"}],
                              budget_grid={kind: [1.0]})
        with pytest.raises(ConfigError, match=match):
            run(sweep.run())
    # With prices, USD budgets work: each problem's expected spend fits its budget.
    priced = Scripted(completion_tokens=100, usd_per_token=(1e-6, 1e-5))
    sweep, _ = make_sweep(tmp_path / "priced", priced, strategies=[{"name": "self-consistency"}],
                          budget_grid={"usd": [0.004]}, pool=8)
    run(sweep.run())
    rows = rows_of(tmp_path / "priced" / "sweep" / "problems.jsonl")
    assert all(0 < row["cost"]["usd"] <= 0.004 for row in rows) and all(row["n"] >= 1 for row in rows)


def test_flops_of_a_cached_prefix_are_not_counted_again():
    model = ExtendedComputeModel(ModelShape(params=1e6, layers=2, d_attn=64, d_kv=64))
    cold, _ = model.call(1000, [10])
    warm, _ = model.call(1000, [10], cached_prompt_tokens=900)
    # the 900 cached tokens' prefill (weights and their own attention) is not paid again
    assert cold - warm == pytest.approx(2 * 1e6 * 900 + 2 * 2 * 64 * 900**2)
    assert model.call(1000, [10], cached_prompt_tokens=0) == model.call(1000, [10])


def test_a_sweep_over_a_users_dataset_file_writes_its_plots(tmp_path):
    from reasoning.benchmarks.report import slug

    data = tmp_path / "my data" / "own.set.jsonl"
    data.parent.mkdir()
    data.write_text("\n".join(json.dumps({"id": i, "question": f"What is {i}+{i}?", "answer": 2 * i}) for i in range(3)))
    out = tmp_path / "own"
    assert main(["sweep", "--dataset", str(data), "--strategy", "self-consistency", "--n", "1,2",
                 "--backend", "scripted:2,4", "--out", str(out)]) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [f"accuracy_{slug(str(data))}.png", f"coverage_{slug(str(data))}.png"]
    assert "/" not in slug(str(data)) and slug("gsm8k") == "gsm8k" and slug("a/b.jsonl") != slug("c/b.jsonl")


def test_two_points_give_no_fit_and_no_saturation_mark():
    from reasoning.benchmarks.estimators import fit_coverage

    assert fit_coverage([1, 2], [0.3, 0.5]) is None  # a two-parameter curve through two points proves nothing
    fit = fit_coverage([1, 2, 4], [0.3, 0.5, 0.7])
    assert fit is not None and fit.points == 3
    table = [{"dataset": "d", "strategy": "s", "accuracy": a, "usage": {"tokens": t}, "mean_n": None, "budget": None}
             for a, t in ((0.5, 100.0), (0.5, 200.0))]
    _mark_saturation(table, SweepConfig(datasets=["gsm8k"], strategies=[{"name": "self-consistency"}], n=[1, 2], out="x"))
    assert [r["saturation_point"] for r in table] == [False, False]


def test_step_searches_sweep_a_budget_grid_against_pooled_self_consistency(tmp_path):
    """Tree search vs SC on the sweep harness: each search runs directly under every
    uncached-token budget (through the generation cache), never spends past it, and spends more
    where it is given more; SC's pool meets the same points."""
    searches = ["rebase", "ets", "beam-search", "dvts"]
    strategies = [{"name": "self-consistency"}] + [
        {"name": name, "options": {"max_steps": 3, "max_step_tokens": 24}} for name in searches]
    backend = Scripted(completion_tokens=12)

    def respond(request, index):
        if "\n\n" not in request.stop:  # a PRM verdict or an SC sample
            return "Verification: Is the step correct (Yes/No)? Yes" if index % 3 else "No. So \\boxed{7}"
        depth = backend.continuation(request).count("\n\n")
        return f"Step {depth} of path {index}.\n\n" if depth < 2 else f"Step {depth}. So \\boxed{{{index % 2 + 7}}}"

    backend.responder = respond
    sweep, cached = make_sweep(tmp_path, backend, strategies=strategies, limit=2,
                               budget_grid={"uncached_tokens": [500, 5000]}, pool=8, max_n=4, max_tokens=64)
    summary = run(sweep.run())
    rows = rows_of(tmp_path / "sweep" / "problems.jsonl")
    assert {(r["strategy"], r["mode"]) for r in rows} == {("self-consistency", "reuse")} | {(s, "direct") for s in searches}
    for row in rows:
        assert 0 < row["cost"]["uncached_tokens"] <= float(row["point"].split("=")[1])
    for name in searches:
        small, large = (c for c in summary["cells"] if c["strategy"] == name)
        assert small["budget"] < large["budget"] and small["usage"]["tokens"] < large["usage"]["tokens"], name
    assert cached.misses > 0


def test_run_sweeps_deadline_while_a_sweep_still_waits_for_its_policy(tmp_path):
    """The deadline falls during calibration: the waiting sweep never started (no folder yet); it
    is reported "resume later" with an empty summary instead of crashing the whole printout."""
    from reasoning.benchmarks.run_sweeps import main as run_sweeps

    routed = tmp_path / "routed.yaml"
    routed.write_text("datasets: [gsm8k]\nlimit: 2\nbudget_grid: {tokens: [600]}\nmax_n: 4\nmax_tokens: 64\n"
                      "strategies:\n  - name: compute-optimal\n    options: {policy: policy.json}\nout: routed\ncache: shared.sqlite\n")
    root = tmp_path / "root"
    status = tmp_path / "status.json"
    argv = [str(routed), "--backend", "scripted:18?latency=0.5", "--root", str(root), "--deadline-s", "0.2",
            "--calibrate", "gsm8k:10:4:600:300=policy.json", "--status", str(status)]
    assert run_sweeps(argv) == 0
    assert json.loads(status.read_text()) == {str(root / "routed"): "resume later"}
    assert (root / "routed" / "sweep.jsonl").read_text() == ""  # no cells yet


def test_run_sweeps_deadline_counts_the_engines_load(tmp_path):
    """A GPU call's clock starts with the command: a deadline that passes while the backend loads
    leaves no time for problems (it used to count from after the load, which ran past the call)."""
    from reasoning.benchmarks.run_sweeps import main as run_sweeps

    config = tmp_path / "sc.yaml"
    config.write_text("datasets: [gsm8k]\nlimit: 3\nn: [1]\nmax_tokens: 32\nstrategies:\n  - name: self-consistency\n"
                      "out: sc\n")
    status = tmp_path / "status.json"
    argv = [str(config), "--backend", "scripted:18?load=3&latency=0.05", "--root", str(tmp_path),
            "--deadline-s", "2.5", "--status", str(status)]
    assert run_sweeps(argv) == 0
    assert json.loads(status.read_text()) == {str(tmp_path / "sc"): "resume later"}
    assert not (tmp_path / "sc" / "problems.jsonl").exists() or (tmp_path / "sc" / "problems.jsonl").read_text() == ""
    assert run_sweeps([*argv[:-4], "--status", str(status)]) == 0  # no deadline: it finishes
    assert json.loads(status.read_text()) == {str(tmp_path / "sc"): "done"}


class _InFlight(Scripted):
    """Scripted, counting the calls in flight at once."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.now = self.most = 0
        self.prompts: list[str] = []

    async def generate(self, request):
        self.now += 1
        self.most = max(self.most, self.now)
        self.prompts.append(request.prompt_text())
        try:
            return await super().generate(request)
        finally:
            self.now -= 1


@pytest.mark.parametrize(("scope", "most"), [("sweep", 1), ("strategy", 2)])
def test_concurrency_scope_strategy_runs_labels_side_by_side_each_in_dataset_order(tmp_path, scope, most):
    """concurrency 1 per label (cheatsheet's setting: a memory grown in dataset order) must not
    serialise the labels behind one another; per sweep it does."""
    from reasoning.benchmarks.datasets import load_items

    backend = _InFlight(responder=lambda req, i: "\\boxed{1}", latency=0.02)
    sweep, _ = make_sweep(tmp_path, backend, strategies=[{"name": "greedy"}, {"name": "self-consistency"}],
                          n=[2], reuse=False, concurrency=1, concurrency_scope=scope)
    run(sweep.run())
    assert backend.most == most
    order = [next(i for i, item in enumerate(load_items("gsm8k", 4)) if item.problem in p) for p in backend.prompts]
    assert sorted(order) == [0, 0, 1, 1, 2, 2, 3, 3]
    firsts = [order.index(k) for k in range(4)]
    assert firsts == sorted(firsts)  # each label starts its problems in dataset order
    if scope == "strategy":
        assert order[:2] == [0, 0]  # both labels begin with the first problem


def test_run_sweeps_engine_arguments_keep_their_types():
    """``--engine gpu_memory_utilization=0.45`` must reach vLLM as a float (it was the string "0.45",
    only integers were converted), booleans as booleans, other words as strings."""
    from reasoning.benchmarks.run_sweeps import engine_kwargs

    assert engine_kwargs(["max_num_seqs=1024", "gpu_memory_utilization=0.45", "enforce_eager=true",
                          "dtype=bfloat16", " kv_cache_dtype = auto"]) == {
        "max_num_seqs": 1024, "gpu_memory_utilization": 0.45, "enforce_eager": True,
        "dtype": "bfloat16", "kv_cache_dtype": "auto"}
    for bad in ("max_num_seqs", "=3"):
        with pytest.raises(ConfigError, match="expected KEY=VALUE"):
            engine_kwargs([bad])


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "benchmarks" / "sweeps").glob("*.y*ml")),
                         ids=lambda p: p.name)
def test_every_shipped_sweep_file_loads_and_names_only_options_its_strategies_take(path):
    """A typo in a shipped sweep file (an option its strategy does not have, a wrong type) would
    otherwise surface only on the GPU host, after the payload went over."""
    from reasoning.strategies.registry import get, options_of

    config = SweepConfig.from_file(path)
    for spec in config.strategies:
        cls = get(spec.name)
        unknown = set(spec.options) - set(options_of(cls)) - {"n"}
        assert not unknown, f"{spec.key}: {sorted(unknown)} are not options of {spec.name}"
        try:
            cls(**{k: v for k, v in spec.options.items() if k != "n" or cls.size_option in (None, "n")})
        except ValidationError as bad:  # a file the run makes first (a calibrated policy) may be missing here
            assert all("not found" in error["msg"] for error in bad.errors()), str(bad)


def test_a_row_keeps_an_outcomes_scalars_and_short_lists_of_them_only():
    from reasoning.benchmarks.sweep import SHORT_LIST, _scalars

    info = {"route": "a", "visible": 3, "entry": None, "retrieved": ["7", "2"], "similarity": [0.9, 0.5],
            "long": list(range(SHORT_LIST + 1)), "samples": [{"text": "x"}], "votes": {"4": 2}}
    assert _scalars(info) == {"route": "a", "visible": 3, "entry": None, "retrieved": ["7", "2"],
                              "similarity": [0.9, 0.5]}
