"""benchmarks.pairing: paired per-round ratios and their percentile bootstrap interval."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reasoning.benchmarks.pairing import bootstrap_interval, describe, first_in_round, loop_cpu_per_sample, paired_ratio


def test_rounds_alternate_abba():
    assert [first_in_round(i) for i in range(4)] == ["raw", "framework", "raw", "framework"]


def test_three_rounds_against_the_exact_bootstrap_distribution():
    # Ratios 1, 2, 3: the mean of 3 draws with replacement is 1 in 1 of 27 resamples (3.7 %) and
    # 3 in 1 of 27, so the 2.5 % and 97.5 % quantiles are exactly 1 and 3.
    pairing = paired_ratio([10.0, 40.0, 90.0], [10.0, 20.0, 30.0])
    assert pairing["ratios"] == [1.0, 2.0, 3.0]
    assert pairing["mean"] == 2.0 and pairing["median"] == 2.0
    assert pairing["interval"] == [1.0, 3.0]
    assert pairing["order"] == ["raw first", "framework first", "raw first"]


def test_four_rounds_one_outlier():
    # Ratios 1, 1, 1, 2: k draws of the 2 out of 4 is Binomial(4, 1/4): P(k=0) = 0.316, so the low
    # end is 1; P(k<=2) = 0.949 < 0.975 <= P(k<=3) = 0.996, so the high end is the mean at k=3: 1.75.
    pairing = paired_ratio([5.0, 5.0, 5.0, 10.0], [5.0, 5.0, 5.0, 5.0])
    assert pairing["mean"] == 1.25 and pairing["median"] == 1.0
    assert pairing["interval"] == [1.0, 1.75]
    assert pairing["target_met"] is True  # 1.75 >= 0.97


def test_the_target_is_met_only_when_the_interval_reaches_it():
    low = paired_ratio([90.0, 91.0, 92.0, 93.0], [100.0] * 4)
    assert low["interval"][1] < 0.97 and low["target_met"] is False
    assert "misses the 0.97 target" in describe(low)
    assert paired_ratio([96.0, 98.0, 96.0, 98.0], [100.0] * 4)["target_met"] is True


def test_the_seed_fixes_the_interval_and_another_seed_may_move_it():
    values = [0.91, 1.02, 0.87, 0.99, 0.95, 1.04, 0.89]
    assert bootstrap_interval(values, seed=0) == bootstrap_interval(values, seed=0)
    assert bootstrap_interval(values, resamples=50, seed=1) != bootstrap_interval(values, resamples=50, seed=2)


def test_bad_rounds_are_refused():
    with pytest.raises(ValueError, match="rounds come in pairs"):
        paired_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no rounds"):
        paired_ratio([], [])
    with pytest.raises(ValueError, match="raw throughput must be > 0"):
        paired_ratio([1.0], [0.0])


ratios = st.floats(min_value=0.05, max_value=20.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(ratios, min_size=1, max_size=12), st.lists(st.floats(1.0, 1e5), min_size=12, max_size=12))
def test_the_interval_contains_the_mean(values, raws):
    raw = raws[: len(values)]
    pairing = paired_ratio([v * r for v, r in zip(values, raw)], raw, resamples=2000)
    low, high = pairing["interval"]
    assert low - 1e-4 <= pairing["mean"] <= high + 1e-4  # 1e-4: the report rounds to 4 places
    assert min(pairing["ratios"]) - 1e-4 <= low <= high <= max(pairing["ratios"]) + 1e-4


@settings(max_examples=40, deadline=None)
@given(ratios, st.lists(st.floats(1.0, 1e5), min_size=1, max_size=12))
def test_a_constant_ratio_gives_a_zero_width_interval(ratio, raw):
    low, high = paired_ratio([ratio * r for r in raw], raw, resamples=500)["interval"]
    assert math.isclose(low, high, rel_tol=1e-9) and math.isclose(low, round(ratio, 4), rel_tol=1e-9, abs_tol=1e-4)


def test_loop_cpu_per_sample_is_the_median_per_sample_in_ms():
    rounds = {"raw": [{"loop_cpu_s": 0.2}, {"loop_cpu_s": 0.4}, {"loop_cpu_s": 0.3}],
              "framework": [{"loop_cpu_s": 0.8}, {"loop_cpu_s": 0.6}, {"loop_cpu_s": 1.0}]}
    assert loop_cpu_per_sample(rounds, 100) == {"raw": 3.0, "framework": 8.0, "framework_minus_raw": 5.0}


def test_the_results_table_shows_the_interval_and_still_reads_older_runs(tmp_path):
    import json

    from reasoning.benchmarks.results_tables import vllm_runs

    old = {"settings": {"rounds": 2, "warmup_rounds": 1, "skip_sync_llm": True},
           "tokens_per_s": {"raw_async": 100.0, "framework": 90.0}, "paired_ratios": [0.9, 0.92],
           "ratio_framework_to_raw_async": 0.91}
    new = {**old, "settings": {**old["settings"], "rounds": 4},
           "pairing": paired_ratio([90.0, 95.0, 99.0, 97.0], [100.0] * 4)}
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    table = vllm_runs(("old.json", "new.json"))(tmp_path)
    assert "0.910 (paired: 0.900, 0.920)" in table
    low, high = new["pairing"]["interval"]
    assert f"0.953 (95% interval {low:.3f}-{high:.3f}, 4 paired rounds)" in table
