"""Per-problem latency of strategies, one problem at a time (no cache, no batching across problems).

ParaThinker reports 8 parallel paths cost only 7.1 % more latency than one path, because its
paths decode in one batch and the summary is short. This measures the same for our
prompt-level version, and for every other registered strategy, against self-consistency at
equal width: each strategy is built with its size option (``n``, ``paths``, ``max_n``, ...) at
``--paths`` P, and each problem is solved alone, so that wall time is latency, not throughput.

    python -m reasoning.benchmarks.latency --backend vllm:/root/model --dataset gsm8k --limit 30 --paths 8
    python -m reasoning.benchmarks.latency --backend vllm:/root/model --strategies all --limit 10 \
        --max-seconds-per-strategy 25 --max-seconds-per-strategy dvts=45 --out latency_all.json

(docs/vllm.md "Strategy latency" has the GPU commands and their expected length.)

``--strategies``: ``all`` (every registered strategy, in registry order after the three
below), or a comma-separated list of names; default ``greedy,self-consistency,parallel-thinking``
(the stored run's three). ``parallel-thinking`` is measured twice: with the options published
with RESULTS.md's first latency run (one batched call of identical paths, clipped, labelled:
label ``parallel-thinking paths=P``, as in the stored JSON) and with its defaults (one hinted
path group per path: ``parallel-thinking paths=P, default options``); its synthesis is
bound by ``--max-tokens`` as every path is (``synthesis_tokens``; 512 in the stored run).
``deepconf`` runs online (its default: label ``deepconf n=P``) on a backend that stops traces
while they run (vLLM built with ``confidence_stop=1``); on any other it is measured in its
offline mode (every trace in full, then the confidence filter), labelled ``deepconf n=P,
offline``, rather than recorded as an error. At P up to its warm-up (16 by default) the two are
the same work: online's warm-up is clipped to P, so it samples all P traces in full in one call
and has none left to stop. (Building the engine with ``confidence_stop=1`` would move the whole
vLLM engine to its Model Runner V1, and every other strategy of the run with it.)

``--role NAME=SPEC[@API_BASE]`` (repeatable, as for ``reasoning-bench run``): another model under
a role name, for the strategies that need several (``atts``: ``draft`` and ``target``;
``cascade``: ``small`` and ``large``). A role whose spec is ``--backend``'s, or another role's,
shares that backend (one engine, loaded once). Without them those strategies get no figure and
their ``reason`` says which roles they need.

Per strategy: p50 and p95 seconds per problem (linear interpolation between order statistics,
as numpy's default), median and mean, mean completion tokens, tokens and calls per problem,
the ids of the problems timed (in order), and ``vs_sc``: its p50 / p95 over self-consistency's
**on the same problems** (``problems``: those both timed; problems are solved in order, so with
a cut strategy that is the first k). Parallel thinking's latency is split into phases from
each problem's trace: until the first path's call ends, until the last one ends, the gap
before the synthesis call starts (voting, the prompt) and the synthesis call itself.

``--max-seconds-per-strategy`` S (or NAME=S for one strategy; repeatable): a strategy's
problems stop once S seconds are spent on it, and a problem still running then is cancelled
(its engine request aborted) and not counted: its ``status`` says so, and its p95 is then
biased low (the slow problems are the ones left out). The baselines (``greedy``,
``self-consistency``) are never cut by the plain S, only by their own NAME=S: every ratio needs
self-consistency's time on the same problems. A strategy that gets no figure (cut before its
first problem, an error, roles not given) is recorded with its ``status`` and a plain
``reason``, and the run goes on. The JSON (``--out``) is rewritten after every strategy, so a
run cut off loses only the strategy in progress. Warm-up: the first problem of each strategy is
solved twice and its first time dropped (the warm-up counts against the strategy's seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
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
from .provenance import command

DEFAULT_STRATEGIES = "greedy,self-consistency,parallel-thinking"
SC = "self-consistency"
# The baselines every ratio needs: a plain --max-seconds-per-strategy never cuts them.
BASELINES = ("greedy", SC)
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


def variants(names: list[str], paths: int, max_tokens: int,
             stops_traces: bool = True) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, registry name, options) of each strategy to measure, at width ``paths``;
    ``stops_traces``: the backend can stop traces while they run (else deepconf is offline)."""
    out = []
    for name in names:
        size = available()[name].size_option
        if name == "deepconf" and not stops_traces:
            out.append((f"{name} {size}={paths}, offline", name, {"n": paths, "mode": "offline"}))
        elif name == "parallel-thinking":  # its synthesis is bound by --max-tokens too (512: the stored run's)
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


def summary(seconds: list[float], tokens: list[int], completion: list[int], calls: list[float],
            ids: list[str] | None = None) -> dict[str, Any]:
    return {
        "problems": len(seconds),
        "p50_s": percentile(seconds, 0.5), "p95_s": percentile(seconds, 0.95),
        "median_s": statistics.median(seconds), "mean_s": statistics.fmean(seconds),
        "mean_completion_tokens": statistics.fmean(completion), "mean_tokens": statistics.fmean(tokens),
        "mean_calls": statistics.fmean(calls), "seconds": seconds, **({} if ids is None else {"ids": ids}),
    }


async def measure_one(strategy: Any, items: list, backend: Any, sampling: Sampling, deadline: float | None,
                      phases: bool, roles: dict[str, Any] | None = None) -> dict[str, Any]:
    """One strategy over ``items`` (in order, one at a time): its summary, ``status`` and
    (``phases``) parallel-thinking phases; ``roles``: the other models, by role name."""
    seconds, tokens, completion, calls, split, ids = [], [], [], [], [], []
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
                solve = asolve(Problem(item.problem, item.id), strategy, backend, sampling=sampling,
                               backends=roles or None)
                result = await (solve if left is None else asyncio.wait_for(solve, left))
            except TimeoutError:
                result = None
                break
            elapsed = time.perf_counter() - began
        if result is None:
            status = f"cut at {deadline:g} s after {len(seconds)} of {len(items)} problems"
            break
        seconds.append(elapsed)
        ids.append(str(item.id))
        tokens.append(result.usage.tokens)
        completion.append(result.usage.completion_tokens)
        calls.append(result.usage.calls)
        if phases and (found := parallel_thinking_phases(result.trace)) is not None:
            split.append(found)
    if not seconds:
        return {"problems": 0, "status": status}
    report = {**summary(seconds, tokens, completion, calls, ids), "status": status}
    if split:
        report["phases"] = {key: {"p50_s": percentile([p[key] for p in split], 0.5),
                                  "p95_s": percentile([p[key] for p in split], 0.95),
                                  "mean_s": statistics.fmean(p[key] for p in split),
                                  "seconds": [p[key] for p in split]}
                            for key in split[0]}
    return report


def same_problems(figures: dict[str, Any], sc: dict[str, Any]) -> tuple[list[float], list[float]]:
    """A strategy's seconds and self-consistency's on the problems both timed, in the
    strategy's order: matched by id where both runs stored (distinct) ids, else the first k of each (a run
    solves its problems in order, one at a time, and a cut one stops, so its k timed problems
    are the first k)."""
    if "ids" in figures and "ids" in sc and len(set(figures["ids"])) == len(figures["ids"]) \
            and len(set(sc["ids"])) == len(sc["ids"]):
        theirs = dict(zip(sc["ids"], sc["seconds"], strict=True))
        pairs = [(mine, theirs[i]) for i, mine in zip(figures["ids"], figures["seconds"], strict=True) if i in theirs]
    else:
        k = min(len(figures["seconds"]), len(sc["seconds"]))
        pairs = list(zip(figures["seconds"][:k], sc["seconds"][:k]))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def ratio_to_sc(figures: dict[str, Any], sc: dict[str, Any]) -> dict[str, Any] | None:
    """p50 and p95 of the strategy over self-consistency's on the same problems, and how many
    (``problems``); None when they timed no problem in common."""
    mine, theirs = same_problems(figures, sc)
    if not mine:
        return None
    return {"problems": len(mine), "p50": percentile(mine, 0.5) / percentile(theirs, 0.5),
            "p95": percentile(mine, 0.95) / percentile(theirs, 0.95)}


def ratios(report: dict[str, Any], paths: int) -> None:
    """Each strategy's p50 / p95 over self-consistency's on the same problems (``vs_sc``), and
    the stored run's ``parallel_thinking_over_sc`` (median and mean, the same problems), where
    both were measured."""
    sc = report["strategies"].get(f"{SC} n={paths}")
    if not sc or not sc.get("problems"):
        return
    for figures in report["strategies"].values():
        if figures.get("problems") and (found := ratio_to_sc(figures, sc)) is not None:
            figures["vs_sc"] = found
    pt = report["strategies"].get(f"parallel-thinking paths={paths}")
    if pt and pt.get("problems"):
        mine, theirs = same_problems(pt, sc)
        if mine:
            report["parallel_thinking_over_sc"] = {"median": statistics.median(mine) / statistics.median(theirs),
                                                   "mean": statistics.fmean(mine) / statistics.fmean(theirs),
                                                   "problems": len(mine)}


def no_figure_reason(status: str) -> str:
    """Why a strategy has no figure, in plain words, from its ``status``."""
    if (cut := re.match(r"cut at (\S+) s after 0 of", status)):
        return (f"cut: not one problem finished within its {cut[1]} s (the warm-up solve counts); "
                "give it a longer NAME=SECONDS")
    if (roles := re.search(r"names roles with no backend: ([^;]+);", status)):
        return f"not run: needs the roles {roles[1]} (--role NAME=SPEC), not given"
    if "no backend" in status and "--role" in status:
        return "not run: needs roles not given (--role NAME=SPEC): " + status.removeprefix("error: ").split(";")[0]
    if "deepconf online needs a backend that stops traces" in status:
        return ("not run: online DeepConf needs an engine that stops traces (vllm:PATH?confidence_stop=1); "
                "since fixed: on any other backend it is measured offline")
    return status.split(";")[0]


def deadline_for(name: str, given: dict[str | None, float]) -> float | None:
    """The seconds ``name`` may take: its own NAME=SECONDS, else (not for the baselines) the plain one."""
    if name in given:
        return given[name]
    return None if name in BASELINES else given.get(None)


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


def build_roles(backend_spec: str, backend: Any, given: list[str]) -> dict[str, Any]:
    """``--role NAME=SPEC[@API_BASE]`` -> {name: backend}: a spec already built (``--backend``'s
    or another role's) shares that backend."""
    from .cli import _parse_roles

    built: dict[tuple[str, str | None], Any] = {(backend_spec, None): backend}
    roles = {}
    for name, (spec, base) in _parse_roles(given).items():
        if (spec, base) not in built:
            built[spec, base] = from_spec(spec) if base is None else from_spec(spec, api_base=base)
        roles[name] = built[spec, base]
    return roles


async def measure(args: argparse.Namespace) -> dict:
    backend = from_spec(args.backend)
    roles = build_roles(args.backend, backend, args.role)
    chosen = variants(strategy_names(args.strategies), args.paths, args.max_tokens,
                      stops_traces=backend.capabilities.confidence_stop)
    engines = list(dict.fromkeys([backend, *roles.values()]))
    items = load_items(args.dataset, args.limit)
    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.7)
    report: dict = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "backend": backend.describe(),
                    "machine": platform.platform(), "dataset": args.dataset, "problems": len(items),
                    "paths": args.paths, "max_tokens": args.max_tokens,
                    "max_seconds_per_strategy": {name or "*": seconds for name, seconds in args.deadlines.items()},
                    "baselines_uncut": list(BASELINES),
                    "command": command("latency", args.argv), "strategies": {}}
    if roles:
        report["roles"] = {name: role.describe() for name, role in roles.items()}
    try:
        for engine in engines:
            await engine.load()
        for label, name, options in chosen:
            try:
                strategy = create(name, **options)
                figures = await measure_one(strategy, items, backend, sampling, deadline_for(name, args.deadlines),
                                            phases=name == "parallel-thinking", roles=roles)
                figures["options"] = strategy.describe()
            except Exception as failed:  # noqa: BLE001 - recorded (roles not given, ...); one failure must not end a GPU call
                figures = {"problems": 0, "status": f"error: {type(failed).__name__}: {failed}"}
            if not figures.get("problems"):
                figures["reason"] = no_figure_reason(figures["status"])
            report["strategies"][label] = figures
            ratios(report, args.paths)
            write(report, args.out)
            if figures.get("problems"):
                print(f"{label:44} p50 {figures['p50_s']:7.3f} s  p95 {figures['p95_s']:7.3f} s  "
                      f"tokens {figures['mean_tokens']:8.1f}  calls {figures['mean_calls']:5.1f}  {figures['status']}",
                      flush=True)
            else:
                print(f"{label:44} {figures['reason']}", flush=True)
    finally:
        for engine in engines:
            await engine.aclose()
    for label, figures in report["strategies"].items():
        if "vs_sc" in figures:
            print(f"{label:44} vs self-consistency on the same {figures['vs_sc']['problems']} problems: "
                  f"p50 {figures['vs_sc']['p50']:.2f}x  p95 {figures['vs_sc']['p95']:.2f}x")
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
                             "NAME=SECONDS for one strategy (repeatable); the baselines (greedy, "
                             "self-consistency) only by their own NAME=SECONDS")
    parser.add_argument("--role", action="append", default=[], metavar="NAME=SPEC[@API_BASE]",
                        help="another model under a role name, repeatable, SPEC as for --backend (atts: "
                             "draft, target; cascade: small, large); a spec given twice is one backend")
    parser.add_argument("--out", help="write the report as JSON here (after every strategy)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.deadlines = deadlines(args.max_seconds_per_strategy, parser)
    report = asyncio.run(measure(args))
    write(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
