"""GenRM best-of-N vs self-consistency at equal generation budgets (Singhi et al. 2025).

For each per-problem budget B (completion tokens, enforced by the ledger) and the first
``--limit`` GSM8K test problems:

  self-consistency     n = B // max_tokens samples, majority vote
  GenRM best-of-N      S solutions x V verification chains with S·(max_tokens + V·verify_max_tokens) <= B,
                       for V in --verifications (S >= 2, else the configuration is skipped)

so every configuration's worst case fits B exactly as the paper's compute C = S·(1 + λV)
(λ = verify_max_tokens / max_tokens) matches SC's n. Every (configuration, problem) pair is
submitted at once so a batching engine (vLLM) stays full. Prints accuracy and mean tokens
used per configuration and writes them as JSON.

    python -m reasoning.benchmarks.genrm_vs_sc --backend vllm:PATH --limit 50 --budgets 2048,4096,8192,16384
    python -m reasoning.benchmarks.genrm_vs_sc --backend local --limit 2 --budgets 512 --max-tokens 128 --verify-max-tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import reasoning as rz
from reasoning.backends import from_spec
from reasoning.strategies import GenRMBestOfN, SelfConsistency
from reasoning.verifiers import ais_equivalent

from .datasets import BUILTIN, DATA_DIR
from .provenance import command


def gsm8k(limit: int) -> list[rz.Problem]:
    """The first ``limit`` GSM8K test problems, gold answer in metadata. Read as plain JSON so
    the script also runs on a GPU host that has vLLM but not the ``datasets`` library."""
    with open(DATA_DIR / BUILTIN["gsm8k"], encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(limit), handle)]
    return [rz.Problem(row["question"], str(row["id"]), {"gold": row["answer"]}) for row in rows]


@dataclass(frozen=True)
class Config:
    method: str
    budget: int
    solutions: int
    verifications: int = 0

    def strategy(self, args: argparse.Namespace) -> rz.Strategy:
        if self.method == "self-consistency":
            return SelfConsistency(n=self.solutions, max_tokens=args.max_tokens)
        return GenRMBestOfN(
            n_solutions=self.solutions, k_verifications=self.verifications,
            max_tokens=args.max_tokens, verify_max_tokens=args.verify_max_tokens,
        )

    @property
    def label(self) -> str:
        if self.method == "self-consistency":
            return f"SC n={self.solutions}"
        return f"GenRM S={self.solutions} V={self.verifications}"


def configs(args: argparse.Namespace) -> list[Config]:
    found = []
    for budget in args.budgets:
        found.append(Config("self-consistency", budget, max(1, budget // args.max_tokens)))
        for v in args.verifications:
            s = budget // (args.max_tokens + v * args.verify_max_tokens)
            if s >= 2:
                found.append(Config("genrm-best-of-n", budget, s, v))
    return found


async def run(args: argparse.Namespace) -> dict:
    items = gsm8k(args.limit)
    backend = from_spec(args.backend)
    await backend.load()
    plan = configs(args)
    sampling = rz.Sampling(max_tokens=args.max_tokens, temperature=args.temperature, min_tokens=16)

    async def one(config: Config, problem: rz.Problem) -> tuple[Config, bool, rz.Usage, str | None]:
        result = await rz.asolve(
            problem, config.strategy(args), backend, rz.Budget(completion_tokens=config.budget), sampling=sampling
        )
        gold = problem.metadata["gold"]
        correct = bool(await ais_equivalent(gold, result.answer)) if result.answer else False
        return config, correct, result.usage, result.stopped_by

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one(c, problem) for c in plan for problem in items))
    wall = time.perf_counter() - started
    await backend.aclose()

    rows = []
    for config in plan:
        mine = [o for o in outcomes if o[0] == config]
        rows.append({
            "method": config.method, "label": config.label, "budget_completion_tokens": config.budget,
            "solutions": config.solutions, "verifications": config.verifications,
            "accuracy": sum(o[1] for o in mine) / len(mine),
            "mean_completion_tokens": sum(o[2].completion_tokens for o in mine) / len(mine),
            "mean_total_tokens": sum(o[2].tokens for o in mine) / len(mine),
            "stopped_by_budget": sum(o[3] is not None for o in mine),
        })
    return {
        "command": command("genrm_vs_sc", args.argv),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "backend": backend.describe(),
        "problems": len(items), "wall_s": round(wall, 1), "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GenRM best-of-N vs self-consistency at equal budgets")
    parser.add_argument("--backend", default="local")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--budgets", type=lambda s: [int(x) for x in s.split(",")], default=[2048, 4096, 8192, 16384])
    parser.add_argument("--verifications", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--max-tokens", type=int, default=512, help="per solution")
    parser.add_argument("--verify-max-tokens", type=int, default=256, help="per verification chain")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    args.argv = argv
    report = asyncio.run(run(args))
    print(f"{report['date']}  {report['backend']}  {report['problems']} GSM8K problems  wall {report['wall_s']} s")
    print(f"{'budget':>7s}  {'configuration':22s} {'accuracy':>8s} {'completion tok':>15s} {'total tok':>10s}")
    for row in report["rows"]:
        print(f"{row['budget_completion_tokens']:7d}  {row['label']:22s} {row['accuracy']:8.3f} "
              f"{row['mean_completion_tokens']:15.0f} {row['mean_total_tokens']:10.0f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
