"""The capacity model (``benchmarks/capacity.py``): its arithmetic on a results folder of round
numbers, worked out by hand; docs/scaling.md's generated blocks against the repository's raw
results; and clear errors on bad input."""

import json
from pathlib import Path

import pytest
from reasoning.benchmarks import capacity

from reasoning.errors import ConfigError


def write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, list):
        path.write_text("".join(json.dumps(row) + "\n" for row in data))
    else:
        path.write_text(json.dumps(data))


@pytest.fixture
def results(tmp_path) -> Path:
    """Every input the model reads, with figures chosen so the expected values are easy sums."""
    root = tmp_path / "results"
    raw = [{"completion_tokens": 100_000, "wall_s": w} for w in (10, 5, 4)]  # 10k, 20k, 25k tok/s: median 20k
    framework = [{"completion_tokens": 100_000, "wall_s": 5, "prompt_tokens": 1_000, "cache": {"cached_prompt_tokens": 800}}]
    write(root / capacity.PLAIN["h200"], {"rounds": {"raw_async": raw, "framework": framework},
                                          "ratio_framework_to_raw_async": 1.25,
                                          "prefix_cache": {"max_running_sequences": 100}})
    # The H100's framework ran at 0.8 x its raw engine: overhead 1/0.8 - 1 = 0.25, the largest.
    write(root / capacity.PLAIN["h100"], {"rounds": {"raw_async": [{"completion_tokens": 1_000, "wall_s": 1}]},
                                          "ratio_framework_to_raw_async": 0.8,
                                          "prefix_cache": {"max_running_sequences": 100}})
    write(root / capacity.OVERHEAD, {"problems": 10, "n": 5, "variants": {"framework (OpenAICompatible)": {"wall_s": 0.5}}})
    (first, spec1), (second, spec2) = capacity.LOGPROBS
    write(root / first, {"options": {"n": 4, "max_tokens": 1_000}, "datasets": {spec1: {"rounds": [
        {"label": "pool", "generated_tokens": 40_000, "wall_s": 10, "problems": [{"prompt_tokens": 100}] * 2},
        {"label": "online-10", "generated_tokens": 20_000, "wall_s": 5, "problems": [{"prompt_tokens": 50}] * 2}]}}})
    write(root / second, {"options": {"n": 16, "max_tokens": 1_000}, "datasets": {spec2: {"rounds": [
        {"label": "pool", "generated_tokens": 80_000, "wall_s": 25, "problems": [{"prompt_tokens": 10}]}]}}})
    write(root / capacity.LATENCY, {"strategies": {"greedy": {"mean_completion_tokens": 300, "mean_s": 0.5}}})
    for index, (one, ray) in enumerate([(10.0, 17.0), (14.0, 21.4)]):  # means 12 and 19.2: 19.2 / 12 / 2
        write(root / capacity.TWO_GPU[index], {"runs": [{"config": "one_gpu", "tokens_per_s": one},
                                                         {"config": "ray2", "tokens_per_s": ray}]})
    sweep = root / capacity.PROFILES["gsm8k"]["self-consistency"][0]
    write(sweep / "sweep.jsonl", [
        {"strategy": "self-consistency", "point": "n=16", "usage": {"tokens": 1, "completion_tokens": 1, "uncached_tokens": 1}},
        {"strategy": "self-consistency", "point": "n=64",
         "usage": {"tokens": 6_500, "completion_tokens": 6_400, "uncached_tokens": 6_420}}])
    write(sweep / "config.json", {"max_tokens": 512})
    return root


def test_the_formulas():
    # (1000 / 500 + 100 / 1000) x 1.1
    assert capacity.gpu_seconds(1_000, 100, 500, 1_000, 0.1) == pytest.approx(2.31)
    assert capacity.gpus_for(7_200, 1, 0.5) == 4  # 7200 / (3600 x 0.5)
    assert capacity.gpus_for(7_201, 1, 0.5) == 5
    assert capacity.gpus_for(1, 24, 1.0) == 1


def test_inputs_are_read_from_the_results(results):
    m = capacity.Model.read(results)
    assert m.plain.tok_s == 20_000 and m.plain.rounds == (10_000, 20_000, 25_000)
    assert m.plain.spread == pytest.approx(0.5)  # the 10k round is 50 % from the median
    assert m.over.charged == pytest.approx(0.25) and m.over.cpu_s_per_sample == pytest.approx(0.01)
    # DeepConf rounds 4k, 4k, 3.2k tok/s through the framework, x 1.25 to the raw engine
    assert m.logprobs.rounds == pytest.approx((5_000, 5_000, 4_000)) and m.logprobs.tok_s == pytest.approx(5_000)
    assert m.eff == pytest.approx(0.8)
    assert m.unloaded == pytest.approx(600) and m.loaded == pytest.approx(200)  # 300 / 0.5; 20k / 100


def test_profiles_read_the_rows_uncached_prompt_right(results):
    sc = capacity.profile(results, "self-consistency")
    assert (sc.samples, sc.prompt, sc.generated, sc.uncached_prompt, sc.longest) == (64, 100, 6_400, 20, 512)
    assert sc.cache_share == pytest.approx(0.8)  # 20 of 100 prompt tokens computed
    dc = capacity.profile(results, "deepconf")
    assert (dc.samples, dc.generated, dc.prompt, dc.uncached_prompt, dc.longest) == (4, 10_000, 50, 50, 1_000)
    assert dc.cache_share is None


def test_sweep_and_proxy_by_hand(results):
    m = capacity.Model.read(results)
    assert m.per_problem(capacity.profile(results, "self-consistency"), 64) == pytest.approx(6_420 / 20_000 * 1.25)
    assert m.per_problem(capacity.profile(results, "self-consistency"), 16) == pytest.approx(1_605 / 20_000 * 1.25)
    # DeepConf at 64 samples: 16 x its 4-sample point, at the logprob rate
    assert m.per_problem(capacity.profile(results, "deepconf"), 64) == pytest.approx(160_800 / 5_000 * 1.25)
    direct = m.sweep(["self-consistency", "deepconf"], points=8, problems=10, samples=64)
    assert direct == pytest.approx({"self-consistency": 80 * 0.40125, "deepconf": 80 * 40.2})
    pooled = m.sweep(["self-consistency", "deepconf"], points=8, problems=10, samples=64, pooled=True)
    assert pooled == pytest.approx({"self-consistency": 4.0125, "deepconf": 402.0})
    assert capacity.gpus_for(sum(direct.values()), 0.1, m.eff) == 12  # 3248.1 / (360 x 0.8) = 11.3
    # one sample count per point: n=1 and n=64; pooled, one 64-sample pool serves both
    one = (100 + 20 / 64) / 20_000 * 1.25
    assert m.sweep(["self-consistency"], 2, 10, [1, 64]) == pytest.approx({"self-consistency": 10 * (one + 0.40125)})
    assert m.sweep(["self-consistency"], 2, 10, [1, 64], pooled=True) == pytest.approx({"self-consistency": 4.0125})
    p = m.proxy(10, "self-consistency", 16)
    assert p["gpus"] == pytest.approx(1.003125) and p["gpus_ceil"] == 2
    assert p["mean_sample_tokens"] == pytest.approx(100)
    assert p["latency_idle_s"] == pytest.approx(100 / 600) and p["latency_loaded_longest_s"] == pytest.approx(512 / 200)
    text = capacity.sweep_table(results, ["self-consistency", "deepconf"], 8, 10, 64, [0.1])
    assert "**12 H200s** with every point its own run, **2** with one" in text  # pooled: 406.0 / 288


def test_a_given_decode_rate_scales_every_rate(results):
    m = capacity.Model.read(results, decode=2_000)  # a tenth of the measured rate
    assert m.plain.tok_s == 2_000 and m.logprobs.tok_s == pytest.approx(500) and m.loaded == pytest.approx(20)
    assert m.proxy(10, "self-consistency", 16)["gpus"] == pytest.approx(10.03125)


def test_the_check_predicts_runs_from_other_runs_rates(results):
    found = {row["run"]: row for row in capacity.checks(results)}
    first, second = (name for name, _ in capacity.LOGPROBS)
    online = found[f"{first} online-10"]  # (20,000 + 100) / 5,000 x 1.25 against 5 s
    assert online["predicted_s"] == pytest.approx(5.025) and online["error"] == pytest.approx(0.005)
    assert found[f"{second} pool"]["predicted_s"] == pytest.approx(80_010 / 5_000 * 1.25)
    framework = found[f"{capacity.PLAIN['h200']} framework round 1"]  # 200 uncached prompt tokens
    assert framework["predicted_s"] == pytest.approx(100_200 / 20_000 * 1.25) and framework["error"] == pytest.approx(0.2525)


@pytest.mark.skipif(not capacity.SCALING_MD.is_file() or not capacity.RESULTS.is_dir(),
                    reason="the doc and raw results ship only in a checkout")
def test_the_docs_blocks_match_the_data(tmp_path, capsys):
    assert capacity.main(["doc", "--check"]) == 0, capsys.readouterr().out
    text = capacity.SCALING_MD.read_text()
    assert {m["name"] for m in capacity.MARKER.finditer(text)} == set(capacity.BLOCKS)
    # an edited figure in a generated block is caught, and --write restores it
    copy = tmp_path / "scaling.md"
    block = next(m for m in capacity.MARKER.finditer(text) if m["name"] == "check")["body"]
    digit = next(i for i, ch in enumerate(block) if ch.isdigit() and i > block.index("\n|---"))
    copy.write_text(text.replace(block, block[:digit] + str((int(block[digit]) + 1) % 10) + block[digit + 1:], 1))
    capsys.readouterr()
    assert capacity.main(["doc", str(copy), "--check"]) == 1
    assert "generated" in capsys.readouterr().out
    assert capacity.main(["doc", str(copy), "--write"]) == 0 and copy.read_text() == text


def test_bad_inputs_give_clear_errors(results, tmp_path, capsys):
    m = capacity.Model.read(results)
    with pytest.raises(ConfigError, match="--strategy: no measured profile of 'beam'"):
        capacity.profile(results, "beam")
    with pytest.raises(ConfigError, match="--dataset"):
        capacity.profile(results, "self-consistency", "aime")
    with pytest.raises(ConfigError, match=r"genrm_rescored_gsm8k/sweep\.jsonl"):  # a profile whose rows are missing
        capacity.profile(results, "genrm-best-of-n")
    with pytest.raises(ConfigError, match="--rps"):
        m.proxy(0, "self-consistency", 16)
    with pytest.raises(ConfigError, match="--samples"):
        m.per_problem(capacity.profile(results, "self-consistency"), 0)
    with pytest.raises(ConfigError, match=r"--samples: give one count or one per point \(3\), got 2"):
        m.sweep(["self-consistency"], 3, 10, [1, 2])
    with pytest.raises(ConfigError, match="--points"):
        m.sweep(["self-consistency"], 0, 10, 64)
    with pytest.raises(ConfigError, match="--hours"):
        capacity.gpus_for(10, 0, 0.5)
    with pytest.raises(ConfigError, match="--efficiency"):
        capacity.gpus_for(10, 1, 1.5)
    with pytest.raises(ConfigError, match="--decode-tok-s"):
        capacity.Model.read(results, decode=-1)
    with pytest.raises(ConfigError, match="--device"):
        capacity.plain_rate(results, "a100")
    (results / capacity.TWO_GPU[0]).unlink()
    with pytest.raises(ConfigError, match=f"no {capacity.TWO_GPU[0]}"):
        capacity.Model.read(results)
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- capacity: nope -->\n<!-- /capacity -->\n")
    assert capacity.main(["--results", str(tmp_path / "missing"), "check"]) == 2
    assert capacity.main(["doc", str(doc), "--check"]) == 2
    assert "unknown capacity block 'nope'" in capsys.readouterr().err


def test_the_cli_answers_both_questions(capsys):
    if not capacity.RESULTS.is_dir():
        pytest.skip("raw results ship only in a checkout")
    assert capacity.main(["proxy", "--rps", "10", "--strategy", "early-stop-sc", "--n", "8"]) == 0
    assert "early-stop-sc n=8 at 10 requests/s" in capsys.readouterr().out
    assert capacity.main(["sweep", "--strategies", "self-consistency", "--hours", "1"]) == 0
    assert "- in 1 h: **" in capsys.readouterr().out


def test_efficiency_is_capped_at_one_and_needs_both_runs_in_every_round(tmp_path):
    for index, runs in enumerate([[{"config": "one_gpu", "tokens_per_s": 10.0}, {"config": "ray2", "tokens_per_s": 25.0}],
                                  [{"config": "one_gpu", "tokens_per_s": 10.0}, {"config": "ray2", "tokens_per_s": 25.0}]]):
        write(tmp_path / capacity.TWO_GPU[index], {"runs": runs})
    assert capacity.efficiency(tmp_path) == 1.0  # 2.5x on two GPUs: a deployment effect, not > 1 per GPU
    write(tmp_path / capacity.TWO_GPU[1], {"runs": [{"config": "one_gpu", "tokens_per_s": 10.0},
                                                    {"config": "ray2", "tokens_per_s": None}]})  # cut by its call
    with pytest.raises(ConfigError, match="ray2 and one_gpu"):
        capacity.efficiency(tmp_path)
