"""Tree search against itself and against self-consistency, in one process on one engine.

ETS (Hooper et al. 2025) reports 1.8x less KV cache and 1.4x more throughput than REBASE at
matched accuracy. This runs the searches at the same width on the same problems, one after
the other on one vLLM engine (prefix cache reset and engine stats zeroed between them), and
records for each: accuracy, total / uncached tokens, calls, the peak share of KV cache blocks in
use (engine stats), the prefix-cache hit rate, generated tokens per second and wall time; then
self-consistency at about the same uncached compute as the first search.

    python -m reasoning.benchmarks.tree_search --backend vllm:/root/model \\
        --dataset gsm8k:200 --dataset math500:100 --width 8 \\
        --strategy rebase --strategy ets --strategy beam-search --out tree_search.json

``--strategy NAME[:KEY=VALUE,...]`` takes any strategy; its size option (``reasoning-bench
strategies NAME``) is set to ``--width``. The PRM is each strategy's default (the LLM judge on
the same model, through the verifier role). Prints a table and writes the JSON (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from datetime import UTC, datetime
from typing import Any

from reasoning import Budget, Problem, asolve_many
from reasoning.backends import from_spec
from reasoning.context import Sampling
from reasoning.strategies import create, get

from .datasets import load_items
from .provenance import command
from .run import grade_item, solve_options


def _spec(text: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, raw = item.partition("=")
        try:
            options[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip()] = raw  # a plain string
    return name, options


async def measure(backend, items, label: str, strategy, args) -> dict[str, Any]:
    """One strategy over the items: accuracy, compute and engine facts."""
    if hasattr(backend, "reset_prefix_cache"):
        await backend.reset_prefix_cache()
        backend.reset_stats()
    correct, usage_rows = [], []
    sampling = Sampling(max_tokens=args.max_tokens, temperature=args.temperature)

    async def on_result(index: int, result) -> None:
        item = items[index]
        ok, _ = await grade_item(item, result.answer, [])
        correct.append(bool(ok))
        usage_rows.append(result.usage)

    kind = items[0].kind
    started = time.perf_counter()
    await asolve_many([Problem(i.problem, i.id, i.metadata) for i in items], strategy, backend,
                      Budget.parse(args.budget), concurrency=args.concurrency, on_result=on_result, sampling=sampling,
                      **solve_options(kind))
    wall = time.perf_counter() - started
    total = {key: sum(getattr(u, key) for u in usage_rows)
             for key in ("prompt_tokens", "completion_tokens", "cached_prompt_tokens", "calls")}
    total["tokens"] = total["prompt_tokens"] + total["completion_tokens"]
    total["uncached_tokens"] = total["tokens"] - total["cached_prompt_tokens"]
    engine = backend.stats() if hasattr(backend, "stats") else {}
    return {
        "strategy": label, "describe": strategy.describe(), "problems": len(items),
        "accuracy": sum(correct) / len(items) if items else 0.0, "wall_s": round(wall, 2),
        "generated_tokens_per_s": round(total["completion_tokens"] / wall, 1) if wall else None,
        "per_problem": {k: v / len(items) for k, v in total.items()}, "total": total,
        "kv_cache_usage_max": engine.get("kv_cache_usage_max"),
        "prefix_hit_rate": engine.get("engine_prefix_hit_rate"),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    backend = from_spec(args.backend)
    await backend.load()
    report: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "command": command("tree_search", args.argv),
                              "machine": platform.platform(), "backend": backend.describe(), "width": args.width,
                              "datasets": {}}
    try:
        for dataset_spec in args.dataset:
            name, _, limit = dataset_spec.partition(":")
            items = load_items(name, int(limit) if limit else None)
            rows = []
            for spec in args.strategy:
                strategy_name, options = _spec(spec)
                size = get(strategy_name).size_option
                if size:
                    options.setdefault(size, args.width)
                rows.append(await measure(backend, items, spec, create(strategy_name, **options), args))
                print(json.dumps(rows[-1]), flush=True)
            if args.sc_matched and rows:
                # Self-consistency at about the first search's uncached compute per problem.
                pilot = await measure(backend, items[: min(20, len(items))], "self-consistency n=1",
                                      create("self-consistency", n=1), args)
                per_sample = max(1.0, pilot["per_problem"]["uncached_tokens"])
                n = max(1, round(rows[0]["per_problem"]["uncached_tokens"] / per_sample))
                rows.append(await measure(backend, items, f"self-consistency n={n} (matched to {rows[0]['strategy']})",
                                          create("self-consistency", n=n), args))
                print(json.dumps(rows[-1]), flush=True)
            report["datasets"][dataset_spec] = rows
    finally:
        await backend.aclose()
    return report


def markdown_table(report: dict[str, Any]) -> str:
    """The RESULTS.md table of a report (so the prose quotes the JSON, not a copy of it)."""
    lines = []
    for dataset, rows in report["datasets"].items():
        lines += [f"{dataset}, width {report['width']}:", "",
                  "| strategy | accuracy | tokens / problem | uncached / problem | peak KV share | prefix hit | "
                  "gen. tok/s | wall s |", "|---|---|---|---|---|---|---|---|"]
        for row in rows:
            per = row["per_problem"]
            lines.append(f"| {row['strategy'].split(':')[0]} | {row['accuracy']:.3f} | {per['tokens']:,.0f} | "
                         f"{per['uncached_tokens']:,.0f} | {row['kv_cache_usage_max']} | {row['prefix_hit_rate']} | "
                         f"{row['generated_tokens_per_s']:,.0f} | {row['wall_s']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="local")
    parser.add_argument("--dataset", action="append", default=[], help="NAME[:LIMIT], repeatable")
    parser.add_argument("--strategy", action="append", default=[], help="NAME[:KEY=VALUE,...], repeatable")
    parser.add_argument("--width", type=int, default=8, help="each strategy's size option")
    parser.add_argument("--budget", default="", help="per problem, e.g. uncached_tokens=20000")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-sc-matched", dest="sc_matched", action="store_false")
    parser.add_argument("--out", help="JSON file")
    parser.add_argument("--table", metavar="REPORT.json", help="print the markdown table of a saved report and exit")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.table:
        with open(args.table) as handle:
            print(markdown_table(json.load(handle)))
        return 0
    if not args.dataset or not args.strategy:
        parser.error("give at least one --dataset and one --strategy")
    report = asyncio.run(main_async(args))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)
    for dataset, rows in report["datasets"].items():
        print(f"\n{dataset} (width {args.width})")
        for row in rows:
            print(f"  {row['strategy']:<40} acc {row['accuracy']:.3f}  uncached/problem "
                  f"{row['per_problem']['uncached_tokens']:>9.0f}  KV peak {row['kv_cache_usage_max']}  "
                  f"hit {row['prefix_hit_rate']}  {row['generated_tokens_per_s']} tok/s  {row['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
