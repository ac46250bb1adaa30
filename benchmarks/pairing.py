"""Paired alternating rounds: framework / raw throughput with a 95 % bootstrap interval.

On one device, throughput drifts by 10-20 % between rounds (clocks, temperature, neighbours),
so one framework round against one raw round says little. The benchmarks here run short
rounds in ABBA order (round 0: raw then framework, round 1: framework then raw, ...), so that
neither side always runs on the warmer device, and pair the two runs of each round: the ratio
framework / raw within a round cancels the drift both share.

``paired_ratio`` reports those per-round ratios, their mean and median, and a percentile
bootstrap interval for the mean: ``resamples`` times, draw as many rounds as there are, with
replacement (``random.Random(seed)``, seed 0 by default, so a report is reproducible from its
rounds), take the mean of the drawn ratios; the interval's ends are the (1 - level) / 2 and
(1 + level) / 2 quantiles of those means, each the smallest resampled mean at or above that
share of them (the inverted empirical distribution: no interpolation). The bootstrap treats
rounds as independent draws; with few rounds (under ~8) it is too narrow (it cannot see
variation that the rounds happened not to show), so the report says how many there were.

The target of issue 19: the interval's upper end at or above 0.97 (the interval includes or
exceeds it) on each path.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from typing import Any

RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95
TARGET = 0.97


def first_in_round(index: int) -> str:
    """Which side runs first in round ``index`` (0-based) of the ABBA order: "raw", then "framework"."""
    return "raw" if index % 2 == 0 else "framework"


def bootstrap_interval(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = SEED,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (see the module docstring)."""
    if not values:
        raise ValueError("no values to bootstrap")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(resamples))

    def quantile(q: float) -> float:
        return means[min(resamples - 1, max(0, math.ceil(q * resamples) - 1))]

    return quantile((1 - level) / 2), quantile((1 + level) / 2)


def paired_ratio(framework: Sequence[float], raw: Sequence[float], *, resamples: int = RESAMPLES,
                 seed: int = SEED, level: float = LEVEL, target: float = TARGET) -> dict[str, Any]:
    """Per-round framework / raw ratios (round i pairs ``framework[i]`` with ``raw[i]``), their
    mean and median, and the bootstrap interval of the mean; JSON-ready."""
    if len(framework) != len(raw):
        raise ValueError(f"{len(framework)} framework rounds but {len(raw)} raw rounds: rounds come in pairs")
    if not framework:
        raise ValueError("no rounds to pair")
    if any(r <= 0 for r in raw):
        raise ValueError(f"raw throughput must be > 0 in every round, got {list(raw)}")
    ratios = [f / r for f, r in zip(framework, raw, strict=True)]
    low, high = bootstrap_interval(ratios, resamples=resamples, seed=seed, level=level)
    mean = math.fsum(ratios) / len(ratios)
    return {
        "rounds": len(ratios),
        "order": [first_in_round(i) + " first" for i in range(len(ratios))],
        "ratios": [round(x, 4) for x in ratios],
        "mean": round(mean, 4),
        "median": round(statistics.median(ratios), 4),
        "interval": [round(low, 4), round(high, 4)],
        "level": level,
        "method": f"percentile bootstrap of the mean over rounds, {resamples} resamples, random.Random({seed})",
        "target": target,
        "target_met": high >= target,  # the interval includes or exceeds the target
    }


def loop_cpu_per_sample(rounds: dict[str, list[dict]], samples: int, *, raw: str = "raw") -> dict[str, float]:
    """Median over rounds of each side's event-loop thread CPU time per sample, in ms, and the
    framework's excess over ``raw``. Each round's figures carry ``loop_cpu_s``: ``time.thread_time()``
    of the thread running the event loop, read before and after the phase. That thread runs
    everything done on the loop: the framework's own Python work (requests, traces, answer
    extraction, voting) and, on both sides, the client's work (the vLLM frontend's output
    handling in process, or the ``openai`` client's HTTP and JSON parsing against a server)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    figures = {side: round(statistics.median(r["loop_cpu_s"] for r in per) * 1000 / samples, 4)
               for side, per in rounds.items()}
    figures["framework_minus_raw"] = round(figures["framework"] - figures[raw], 4)
    return figures


def describe(pairing: dict[str, Any], label: str = "framework / raw") -> str:
    """One line for a printout."""
    low, high = pairing["interval"]
    verdict = "meets" if pairing["target_met"] else "misses"
    return (f"{label} = {pairing['mean']:.3f} (mean of {pairing['rounds']} paired rounds; "
            f"{pairing['level']:.0%} interval {low:.3f}-{high:.3f}; {verdict} the {pairing['target']} target)")
