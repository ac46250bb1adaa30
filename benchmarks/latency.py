"""Per-problem latency of strategies, one problem at a time (no cache, no batching across problems).

ParaThinker reports 8 parallel paths cost only 7.1 % more latency than one path, because its
paths decode in one batch and the summary is short. This measures the same for our
prompt-level version, and for every other registered strategy, against self-consistency at
equal width: each strategy is built with its size option (``n``, ``paths``, ``max_n``, ...) at
``--paths`` P, and each problem is solved alone, so that wall time is latency, not throughput.

    python -m reasoning.benchmarks.latency --backend vllm:/root/model --dataset gsm8k --limit 30 --paths 8
    python -m reasoning.benchmarks.latency --backend vllm:/root/model --strategies all --limit 10 \
        --max-seconds-per-strategy 7 --max-seconds-per-strategy parallel-thinking=25 --out latency_all.json

``--strategies``: ``all`` (every registered strategy, in registry order after the three
below), or a comma-separated list of names; default ``greedy,self-consistency,parallel-thinking``
(the stored run's three). ``parallel-thinking`` is measured twice: with the options published
with RESULTS.md's first latency run (one batched call of identical paths, clipped, labelled:
label ``parallel-thinking paths=P``, as in the stored JSON) and with its defaults (one hinted
path group per path: ``parallel-thinking paths=P, default options``); its synthesis is
bound by ``--max-tokens`` as every path is (``synthesis_tokens``; 512 in the stored run).

Per strategy: p50 and p95 seconds per problem (linear interpolation between order statistics,
as numpy's default), median and mean, mean completion tokens, tokens and calls per problem,
and p50 / p95 over self-consistency's. Parallel thinking's latency is split into phases from
each problem's trace: until the first path's call ends, until the last one ends, the gap
before the synthesis call starts (voting, the prompt) and the synthesis call itself.

``--max-seconds-per-strategy`` S (or NAME=S for one strategy; repeatable): a strategy's
problems stop once S seconds are spent on it, and a problem still running then is cancelled
(its engine request aborted) and not counted: its ``status`` says so, and its p95 is then
biased low (the slow problems are the ones left out). A strategy that raises (e.g. one that
needs a capability the backend lacks) is recorded with its error and the run goes on. The JSON
(``--out``) is rewritten after every strategy, so a run cut off loses only the strategy in
progress. Warm-up: the first problem of each strategy is solved twice and its first time dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

from reasoning import Problem, asolve
from reasoning.backends import from_spec
from reasoning.context import Sampling
from reasoning.strategies import available, create

from .datasets import load_items

DEFAULT_STRATEGIES = "greedy,self-consistency,parallel-thinking"
SC = "self-consistency"
# The options published with RESULTS.md's first latency run (parallel-thinking's defaults
# before issue 22): the paths are one batched call of the same prompt, clipped and labelled.
PUBLISHED_PT = {"groups": 1, "hints": False, "path_chars": 2000, "label_answers": True}


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, linear between order statistics (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def variants(names: list[str], paths: int, max_tokens: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, registry name, options) of each strategy to measure, at width ``paths``."""
    out = []
    for name in names:
        size = available()[name].size_option
        if name == "parallel-thinking":  # its synthesis is bound by --max-tokens too (512: the stored run's)
            out.append((f"{name} paths={paths}", name, {"paths": paths, "synthesis_tokens": max_tokens, **PUBLISHED_PT}))
            out.append((f"{name} paths={paths}, default options", name, {"paths": paths, "synthesis_tokens": max_tokens}))
        else:
            out.append((f"{name} {size}={paths}" if size else name, name, {"n": paths}))
    return out


def strategy_names(spec: str) -> list[str]:
    known = list(available())
    if spec == "all":
        first = DEFAULT_STRATEGIES.split(",")
        return first + [name for name in known if name not in first]
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown strategies: {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def parallel_thinking_phases(trace: Any) -> dict[str, float] | None:
    """Parallel thinking's latency by phase, in seconds from the solve's start (the trace's
    clock): ``first_path_s`` / ``last_path_s`` when the first / last path call ended (one
    batched call: both are that call's end), ``gap_s`` from then to the synthesis call's start,
    ``synthesis_s`` that call's own time. None without a synthesis call."""
    calls = trace.calls()
    paths = [c.ended for c in calls if c.name.startswith("paths-") and c.ended is not None]
    synthesis = next((c for c in calls if c.name == "synthesis" and c.ended is not None), None)
    if not paths or synthesis is None:
        return None
    return {"first_path_s": min(paths), "last_path_s": max(paths), "gap_s": synthesis.started - max(paths),
            "synthesis_s": synthesis.ended - synthesis.started}


def summary(seconds: list[float], tokens: list[int], completion: list[int], calls: list[float]) -> dict[str, Any]:
    return {
        "problems": len(seconds),
        "p50_s": percentile(seconds, 0.5), "p95_s": percentile(seconds, 0.95),
        "median_s": statistics.median(seconds), "mean_s": statistics.fmean(seconds),
        "mean_completion_tokens": statistics.fmean(completion), "mean_tokens": statistics.fmean(tokens),
        "mean_calls": statistics.fmean(calls), "seconds": seconds,
    }


async def measure_one(strategy: Any, items: list, backend: Any, sampling: Sampling, deadline: float | None,
                      phases: bool) -> dict[str, Any]:
    """One strategy over ``items``: its summary, ``status`` and (``phases``) parallel-thinking phases."""
    seconds, tokens, completion, calls, split = [], [], [], [], []
    started = time.perf_counter()
    status = "done"
    for index, item in enumerate(items):
        runs = 2 if index == 0 else 1  # the first solve of each strategy warms caches and graphs
        result = None
        for _ in range(runs):
            result = None
            left = None if deadline is None else deadline - (time.perf_counter() - started)
            if left is not None and left <= 0:
                break
            began = time.perf_counter()
            try:
                solve = asolve(Problem(item.problem, item.id), strategy, backend, sampling=sampling)
                result = await (solve if left is None else asyncio.wait_for(solve, left))
            except TimeoutError:
                result = None
                break
            elapsed = time.perf_counter() - began
        if result is None:
            status = f"cut at {deadline:g} s after {len(seconds)} of {len(items)} problems"
            break
        seconds.append(elapsed)
        tokens.append(result.usage.tokens)
        completion.append(result.usage.completion_tokens)
        calls.append(result.usage.calls)
        if phases and (found := parallel_thinking_phases(result.trace)) is not None:
            split.append(found)
    if not seconds:
        return {"problems": 0, "status": status}
    report = {**summary(seconds, tokens, completion, calls), "status": status}
    if split:
        report["phases"] = {key: {"p50_s": percentile([p[key] for p in split], 0.5),
                                  "p95_s": percentile([p[key] for p in split], 0.95),
                                  "mean_s": statistics.fmean(p[key] for p in split),
                                  "seconds": [p[key] for p in split]}
                            for key in split[0]}
    return report


def ratios(report: dict[str, Any], paths: int) -> None:
    """Each strategy's p50 / p95 over self-consistency's (``vs_sc``), and the stored run's
    ``parallel_thinking_over_sc`` (median and mean), where both were measured."""
    sc = report["strategies"].get(f"{SC} n={paths}")
    if not sc or not sc.get("problems"):
        return
    for figures in report["strategies"].values():
        if figures.get("problems"):
            figures["vs_sc"] = {"p50": figures["p50_s"] / sc["p50_s"], "p95": figures["p95_s"] / sc["p95_s"]}
    pt = report["strategies"].get(f"parallel-thinking paths={paths}")
    if pt and pt.get("problems"):
        report["parallel_thinking_over_sc"] = {"median": pt["median_s"] / sc["median_s"], "mean": pt["mean_s"] / sc["mean_s"]}


def deadlines(given: list[str], parser: argparse.ArgumentParser) -> dict[str | None, float]:
    """``--max-seconds-per-strategy`` values as {strategy name or None (every other): seconds}."""
    out: dict[str | None, float] = {}
    for value in given:
        name, _, seconds = value.rpartition("=")
        try:
            out[name or None] = float(seconds)
        except ValueError:
            parser.error(f"--max-seconds-per-strategy takes SECONDS or NAME=SECONDS, got {value!r}")
        if name and name not in available():
            parser.error(f"--max-seconds-per-strategy: unknown strategy {name!r}")
    return out


def write(report: dict[str, Any], out: str | None) -> None:
    if not out:
        return
    partial = f"{out}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    os.replace(partial, out)


async def measure(args: argparse.Namespace) -> dict:
    chosen = variants(strategy_names(args.strategies), args.paths, args.max_tokens)
    backend = from_spec(args.backend)
    await backend.load()
    items = load_items(args.dataset, args.limit)
    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.7)
    report: dict = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "backend": backend.describe(),
                    "machine": platform.platform(), "dataset": args.dataset, "problems": len(items),
                    "paths": args.paths, "max_tokens": args.max_tokens,
                    "max_seconds_per_strategy": {name or "*": seconds for name, seconds in args.deadlines.items()},
                    "command": "python -m reasoning.benchmarks.latency " + " ".join(args.argv), "strategies": {}}
    try:
        for label, name, options in chosen:
            try:
                strategy = create(name, **options)
                figures = await measure_one(strategy, items, backend, sampling,
                                            args.deadlines.get(name, args.deadlines.get(None)),
                                            phases=name == "parallel-thinking")
                figures["options"] = strategy.describe()
            except Exception as failed:  # noqa: BLE001 - recorded; one strategy's failure must not end a GPU call
                figures = {"problems": 0, "status": f"error: {type(failed).__name__}: {failed}"}
            report["strategies"][label] = figures
            ratios(report, args.paths)
            write(report, args.out)
            if figures.get("problems"):
                print(f"{label:44} p50 {figures['p50_s']:7.3f} s  p95 {figures['p95_s']:7.3f} s  "
                      f"tokens {figures['mean_tokens']:8.1f}  calls {figures['mean_calls']:5.1f}  {figures['status']}",
                      flush=True)
            else:
                print(f"{label:44} {figures['status']}", flush=True)
    finally:
        await backend.aclose()
    for label, figures in report["strategies"].items():
        if "vs_sc" in figures:
            print(f"{label:44} vs self-consistency: p50 {figures['vs_sc']['p50']:.2f}x  p95 {figures['vs_sc']['p95']:.2f}x")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="local")
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--paths", type=int, default=8, help="width P: each strategy's size option (n, paths, ...)")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                        help="'all' or a comma-separated list of registered strategies")
    parser.add_argument("--max-seconds-per-strategy", action="append", default=[], metavar="[NAME=]SECONDS",
                        help="stop a strategy after this many seconds (a problem in flight is cancelled); "
                             "NAME=SECONDS for one strategy (repeatable)")
    parser.add_argument("--out", help="write the report as JSON here (after every strategy)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.deadlines = deadlines(args.max_seconds_per_strategy, parser)
    report = asyncio.run(measure(args))
    write(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
