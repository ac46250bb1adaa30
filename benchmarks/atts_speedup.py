"""ATTS against the target model's own self-consistency, at matched accuracy (issue 17).

    python -m reasoning.benchmarks.atts_speedup --dataset gsm8k --limit 8 --draft local \\
        --target local:qwen2.5-coder-1.5b-instruct --n 2 --sc-n 1,2,4 --calibration runs/atts.json --out runs/atts-speedup

Every problem is solved, one at a time (so each problem's seconds are its latency), by
self-consistency on the target model alone at each ``--sc-n``, and by ``atts`` (draft + target)
with ``--n`` samples. Per method: accuracy, mean seconds per problem, mean target-model decoded
tokens, mean FLOPs (2 x params x tokens, each model its own). The speed-up is reported against
the cheapest self-consistency point whose accuracy is at least ATTS's (matched accuracy); when
none is, against the most accurate point, and the summary says the accuracies do not match.
ATTS's paper reports up to 56.7x (a 1.5B-8B draft against a 32B-70B target on GPUs, fully
asynchronous); on a CPU with a 0.5B/1.5B pair the ratio of the two models' decode speeds bounds
what verification can save, which is the point of measuring it here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reasoning import Sampling, asolve
from reasoning.context import Problem
from reasoning.errors import ConfigError, ReasoningError
from reasoning.strategies.atts import ATTS
from reasoning.strategies.self_consistency import SelfConsistency

from .datasets import load_items
from .provenance import command


async def measure(items, draft, target, *, n: int, sc_ns: Sequence[int], sampling: Sampling,
                  atts_options: dict[str, Any]) -> dict[str, Any]:
    from .run import grade_item

    methods: dict[str, tuple[Any, dict[str, Any]]] = {
        f"self-consistency n={k} (target)": (SelfConsistency(n=k), {"generator": target}) for k in sc_ns}
    methods[f"atts n={n}"] = (ATTS(n=n, **atts_options), {"generator": draft, "draft": draft, "target": target})
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
    for backend in (draft, target):
        await backend.load()
    for item in items:
        for name, (strategy, roles) in methods.items():
            started = time.perf_counter()
            result = await asolve(Problem(item.problem, item.id, item.metadata), strategy, backends=roles,
                                  sampling=sampling)
            seconds = time.perf_counter() - started
            correct = bool((await grade_item(item, result.answer, []))[0])
            target_role = "target" if name.startswith("atts") else "generator"
            usage = result.usage_by_role.get(target_role)
            rows[name].append({"id": item.id, "correct": correct, "seconds": seconds,
                               "target_completion_tokens": usage.completion_tokens if usage else 0,
                               "flops": result.usage.flops, "tokens": result.usage.tokens,
                               "rejection_rate": (result.info or {}).get("rejection_rate")})
    summary = {name: _mean_row(r) for name, r in rows.items()}
    atts_name = f"atts n={n}"
    atts = summary[atts_name]
    sc = [(name, s) for name, s in summary.items() if name != atts_name]
    matched = [(name, s) for name, s in sc if s["accuracy"] >= atts["accuracy"] - 1e-12]
    against, versus = (min(matched, key=lambda x: x[1]["seconds"]) if matched
                       else max(sc, key=lambda x: (x[1]["accuracy"], -x[1]["seconds"])))
    return {
        "methods": summary, "rows": rows, "matched_accuracy": bool(matched), "against": against,
        "speedup_seconds": versus["seconds"] / atts["seconds"] if atts["seconds"] else None,
        "flops_ratio": versus["flops"] / atts["flops"] if atts["flops"] else None,
        "target_decode_ratio": (versus["target_completion_tokens"] / atts["target_completion_tokens"]
                                if atts["target_completion_tokens"] else None),
    }


def _mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    count = len(rows)
    rates = [r["rejection_rate"] for r in rows if r["rejection_rate"] is not None]
    return {"problems": count, "accuracy": sum(r["correct"] for r in rows) / count,
            "seconds": sum(r["seconds"] for r in rows) / count,
            "target_completion_tokens": sum(r["target_completion_tokens"] for r in rows) / count,
            "flops": sum(r["flops"] for r in rows) / count, "tokens": sum(r["tokens"] for r in rows) / count,
            "rejection_rate": sum(rates) / len(rates) if rates else None}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasoning.benchmarks.atts_speedup",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--draft", default="local", help="the draft model's backend spec")
    parser.add_argument("--target", default="local:qwen2.5-coder-1.5b-instruct", help="the target's backend spec")
    parser.add_argument("--n", type=int, default=2, help="ATTS samples")
    parser.add_argument("--sc-n", default="1,2,4", help="self-consistency sample counts on the target")
    parser.add_argument("--turns", type=int, default=16, help="ATTS steps per sample (a step is a paragraph)")
    parser.add_argument("--draft-tokens", type=int, default=64)
    parser.add_argument("--target-tokens", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=0.4)
    parser.add_argument("--calibration", help="ATTS calibration JSON (default: online)")
    parser.add_argument("--max-tokens", type=int, default=384, help="self-consistency's tokens per sample")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--out", required=True, help="folder for summary.json")
    return parser


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    from reasoning.backends import from_spec

    sc_ns = [int(k) for k in args.sc_n.split(",") if k.strip()]
    if not sc_ns or min(sc_ns) < 1 or args.n < 1 or args.limit < 1:
        raise ConfigError("--sc-n, --n and --limit must be positive")
    items = load_items(args.dataset, args.offset + args.limit)[args.offset:]
    draft, target = from_spec(args.draft), from_spec(args.target)
    options = {"turns": args.turns, "draft_tokens": args.draft_tokens, "target_tokens": args.target_tokens,
               "alpha": args.alpha, "calibration": args.calibration}
    try:
        result = await measure(items, draft, target, n=args.n, sc_ns=sc_ns,
                               sampling=Sampling(max_tokens=args.max_tokens, temperature=args.temperature),
                               atts_options=options)
    finally:
        for backend in (draft, target):
            await backend.aclose()
    result["command"] = command("atts_speedup", args.argv)
    result["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = argv
    try:
        result = asyncio.run(_main(args))
    except (ReasoningError, ValueError) as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 2
    print("| method | accuracy | s/problem | target decoded tokens | FLOPs/problem | rejection rate |")
    print("|---|---|---|---|---|---|")
    for name, s in result["methods"].items():
        rate = "" if s["rejection_rate"] is None else f"{s['rejection_rate']:.2f}"
        print(f"| {name} | {s['accuracy']:.3f} | {s['seconds']:.1f} | {s['target_completion_tokens']:.0f} | "
              f"{s['flops']:.3g} | {rate} |")
    matched = "matched accuracy" if result["matched_accuracy"] else "accuracies do NOT match"
    ratios = ", ".join(f"{result[key]:.2f}x {what}" for key, what in (("speedup_seconds", "seconds"),
                       ("flops_ratio", "FLOPs"), ("target_decode_ratio", "target decoded tokens"))
                       if result[key] is not None)
    print(f"vs {result['against']} ({matched}): {ratios or 'no ratio (ATTS used nothing)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
