"""TTSPM (Wang et al. 2025): F(N) = F_max·(1 − (1 − p)^N), fitted to (N, accuracy) points, and its
saturation point N*, the first N whose next sample gains less than ε."""

import math

import pytest
from reasoning.benchmarks.scaling_models import fit_ttspm, ttspm, ttspm_saturation
from reasoning.benchmarks.sweep import SweepConfig, _ttspm, format_ttspm

GRID = [1, 2, 4, 8, 16, 32, 64]


def test_saturation_point_by_hand():
    # F_max = 0.8, p = 0.3, ε = 0.01: ΔF(N) = 0.8·0.3·0.7^N = 0.24·0.7^N
    # ΔF(8) = 0.24·0.05764801 = 0.0138355 ≥ 0.01, ΔF(9) = 0.24·0.040353607 = 0.0096849 < 0.01
    # (closed form: ln(0.01/0.24)/ln(0.7) = −3.178054/−0.356675 = 8.910, so N* = 9)
    assert ttspm_saturation(0.8, 0.3, 0.01) == 9
    # F_max = 1, p = 0.5: ΔF(N) = 0.5^(N+1); ΔF(5) = 1/64 = 0.015625, ΔF(6) = 1/128 = 0.0078125
    assert ttspm_saturation(1.0, 0.5, 0.01) == 6
    # a looser threshold saturates earlier: ΔF(3) = 1/16 = 0.0625 ≥ 0.05, ΔF(4) = 1/32 < 0.05
    assert ttspm_saturation(1.0, 0.5, 0.05) == 4
    # at an exact bound the gain must fall *below* ε: with ε = 1/64, ΔF(5) = 1/64 is not below it
    assert ttspm_saturation(1.0, 0.5, 1 / 64) == 6
    # the first sample already gains less than ε: 0.5·0.01 = 0.005 < 0.01
    assert ttspm_saturation(0.5, 0.01, 0.01) == 0
    with pytest.raises(ValueError):
        ttspm_saturation(0.5, 1.0, 0.01)


def test_the_model_by_hand():
    # 0.8·(1 − 0.7^2) = 0.8·0.51 = 0.408
    assert ttspm(2, 0.8, 0.3) == pytest.approx(0.408)
    assert ttspm(0, 0.8, 0.3) == 0.0


def test_a_fit_recovers_known_parameters_from_noisy_points():
    noise = [0.004, -0.003, 0.002, -0.004, 0.003, -0.002, 0.001]  # fixed, ±0.4 points
    accuracy = [ttspm(n, 0.7, 0.25) + e for n, e in zip(GRID, noise, strict=True)]
    fit = fit_ttspm(GRID, accuracy, epsilon=0.01)
    assert fit is not None and fit.points == 7
    assert fit.f_max == pytest.approx(0.7, abs=0.01) and fit.p == pytest.approx(0.25, abs=0.02)
    assert fit.r2 > 0.99 and fit.rmse < 0.005 and fit.f_max_se < 0.01
    # the truth's N*: ΔF(N) = 0.175·0.75^N; ΔF(9) = 0.175·0.0750847 = 0.01314, ΔF(10) = 0.175·0.0563135 = 0.00985
    assert ttspm_saturation(0.7, 0.25, 0.01) == 10
    assert abs(fit.n_star - 10) <= 1 and fit.n_star == ttspm_saturation(fit.f_max, fit.p, 0.01)
    exact = fit_ttspm(GRID, [ttspm(n, 0.7, 0.25) for n in GRID])
    assert (exact.f_max, exact.p, exact.n_star) == (pytest.approx(0.7, abs=1e-6), pytest.approx(0.25, abs=1e-6), 10)


def test_too_few_sample_counts_give_no_fit():
    assert fit_ttspm([1, 2], [0.3, 0.4]) is None
    assert fit_ttspm([1, 1, 2, 2], [0.3, 0.3, 0.4, 0.4]) is None  # two distinct N
    assert fit_ttspm([1, 2, 4], [0.3, 0.4, 0.45]) is not None


def _row(dataset, strategy, n, accuracy, mean_n=True):
    return {"dataset": dataset, "strategy": strategy, "point": f"n={n}", "budget": float(n),
            "mean_n": float(n) if mean_n else None, "accuracy": accuracy}


def test_a_sweep_fits_ttspm_per_curve_of_an_n_grid():
    config = SweepConfig(datasets=["gsm8k"], strategies=[{"name": "self-consistency"}], n=GRID, out="x")
    table = [_row("gsm8k", "self-consistency", n, ttspm(n, 0.8, 0.3)) for n in GRID]
    table += [_row("gsm8k", "greedy", 1, 0.2, mean_n=False)]  # runs once: nothing to fit
    found = _ttspm(table, config)
    sc = found["gsm8k"]["self-consistency"]
    assert sc["f_max"] == pytest.approx(0.8, abs=1e-6) and sc["p"] == pytest.approx(0.3, abs=1e-6)
    assert sc["n_star"] == 9 and sc["epsilon"] == 0.01 and math.isclose(sc["r2"], 1.0)
    assert found["gsm8k"]["greedy"] is None
    assert "N* = 9" in format_ttspm(sc) and "no TTSPM fit" in format_ttspm(None)
    looser = SweepConfig(datasets=["gsm8k"], strategies=[{"name": "self-consistency"}], n=GRID, out="x",
                         ttspm_epsilon=0.05)
    # ΔF(4) = 0.24·0.2401 = 0.0576 ≥ 0.05, ΔF(5) = 0.24·0.16807 = 0.0403 < 0.05
    assert _ttspm(table, looser)["gsm8k"]["self-consistency"]["n_star"] == 5
    budgets = SweepConfig(datasets=["gsm8k"], strategies=[{"name": "self-consistency"}],
                          budget_grid={"tokens": [100, 200, 400]}, out="x")
    assert _ttspm(table, budgets) == {}  # TTSPM's N is a sample count
