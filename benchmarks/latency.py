"""Per-problem latency of strategies, one problem at a time (no cache, no batching across problems).

ParaThinker reports 8 parallel paths cost only 7.1 % more latency than one path, because its
paths decode in one batch and the summary is short. This measures the same for our
prompt-level version: self-consistency n=P (one batched call), parallel-thinking paths=P (the
same batched call, then a synthesis call that must read every path) and one greedy sample, each
problem solved alone so that wall time is latency, not throughput.

    python -m reasoning.benchmarks.latency --backend vllm:/root/model --dataset gsm8k --limit 30 --paths 8

Prints median / mean seconds per problem and tokens, and writes them as JSON (``--out``).
Warm-up: the first problem of each strategy is solved twice and its first time dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime

from reasoning import Problem, asolve
from reasoning.backends import from_spec
from reasoning.context import Sampling
from reasoning.strategies import create

from .datasets import load_items


async def measure(args: argparse.Namespace) -> dict:
    backend = from_spec(args.backend)
    await backend.load()
    items = load_items(args.dataset, args.limit)
    strategies = {
        "greedy": create("greedy"),
        f"self-consistency n={args.paths}": create("self-consistency", n=args.paths),
        # The options published with RESULTS.md's latency (parallel-thinking's defaults before
        # issue 22): the paths are one batched call of the same prompt, as in this docstring.
        f"parallel-thinking paths={args.paths}": create("parallel-thinking", paths=args.paths, groups=1, hints=False,
                                                        path_chars=2000, label_answers=True),
    }
    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.7)
    report: dict = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "backend": backend.describe(),
                    "machine": platform.platform(), "dataset": args.dataset, "problems": len(items), "strategies": {}}
    try:
        for label, strategy in strategies.items():
            seconds, tokens = [], []
            for index, item in enumerate(items):
                runs = 2 if index == 0 else 1  # the first solve of each strategy warms caches and graphs
                for _ in range(runs):
                    started = time.perf_counter()
                    result = await asolve(Problem(item.problem, item.id), strategy, backend, sampling=sampling)
                    elapsed = time.perf_counter() - started
                seconds.append(elapsed)
                tokens.append(result.usage.completion_tokens)
            report["strategies"][label] = {
                "median_s": statistics.median(seconds), "mean_s": statistics.fmean(seconds),
                "mean_completion_tokens": statistics.fmean(tokens), "seconds": seconds,
            }
            print(f"{label:32} median {statistics.median(seconds):6.3f} s  mean {statistics.fmean(seconds):6.3f} s  "
                  f"completion tokens {statistics.fmean(tokens):8.1f}", flush=True)
    finally:
        await backend.aclose()
    sc = report["strategies"][f"self-consistency n={args.paths}"]
    pt = report["strategies"][f"parallel-thinking paths={args.paths}"]
    report["parallel_thinking_over_sc"] = {
        "median": pt["median_s"] / sc["median_s"], "mean": pt["mean_s"] / sc["mean_s"],
    }
    print(f"parallel-thinking / self-consistency latency: median {report['parallel_thinking_over_sc']['median']:.2f}x, "
          f"mean {report['parallel_thinking_over_sc']['mean']:.2f}x")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="local")
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--paths", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args(argv)
    report = asyncio.run(measure(args))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
