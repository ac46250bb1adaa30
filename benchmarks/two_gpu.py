"""The framework's self-consistency on two GPUs: one engine split over both (tensor parallel),
one engine with two replicas (data parallel), two Ray workers with an engine each, against the
same run on one GPU (issue 16).

Every configuration is the real command a user runs, ``reasoning-bench run`` (GSM8K test
problems, ``self-consistency`` with ``--n`` samples, ``--max-tokens``, a ``--run-budget``), in
its own process one after the other, so each starts on free GPUs:

  one_gpu  ``--backend vllm:MODEL`` with ``CUDA_VISIBLE_DEVICES=0``
  tp2      ``--backend 'vllm:MODEL?tp=2'``: each layer split over the two GPUs
  dp2      ``--backend 'vllm:MODEL?dp=2'``: two replicas behind one engine client
  ray2     ``--backend vllm:MODEL --ray --ray-workers 2``: two Ray workers (one GPU each, as
           Ray assigns them), the run budget in one ledger actor

Throughput is generated tokens over ``solve_seconds`` (the run's wall clock after every engine
was loaded: model start-up is not a per-problem cost); the end-to-end figure over
``wall_seconds`` is kept beside it. Scaling is a configuration's throughput over one_gpu's in
the same call; efficiency is that over the GPUs it used. "The run budget held": what the
ledger charged over the whole run (``run_charged``, every call's prompt and completion tokens,
calls still in flight included) against ``--run-budget``. ``--binding-budget B`` adds
``ray2_binding``: the Ray run again under a run budget of B tokens, small enough to stop it, to
show the ledger actor stopping two workers at the limit.

One call is one round: a fresh host's first engine runs slower, and rates vary +-15 % between
rounds on one device, so run a second round with ``--configs`` in the reverse order and compare
within rounds (RESULTS.md reports both rounds and the ratio of their means; the 2026-11-29 rounds
each took one 10-minute call: engines start in 35-105 s).

GPU host (2 GPUs):
    python -m reasoning.benchmarks.two_gpu --model /root/model --root /root/two_gpu \\
        --out $OUT/two_gpu.json --deadline-s 520
CPU check of the plumbing (scripted model, no GPU):
    python -m reasoning.benchmarks.two_gpu --backend scripted --configs one_gpu ray2 --limit 4 \\
        --n 2 --root /tmp/two_gpu --out /tmp/two_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reasoning import Budget

from . import provenance

# name: (GPUs it uses, what it adds to the vLLM spec, extra command-line arguments)
CONFIGS: dict[str, tuple[int, str, list[str]]] = {
    "one_gpu": (1, "", []),
    "tp2": (2, "?tp=2", []),
    "dp2": (2, "?dp=2", []),
    "ray2": (2, "", ["--ray", "--ray-workers", "2"]),
}
GRACE_S = 45.0  # after the deadline's SIGINT: time for the run to write its summary


def config_of(name: str) -> tuple[int, str, list[str]]:
    """A configuration's entry in CONFIGS: a ``*_binding`` run is its base configuration again."""
    return CONFIGS[name.removesuffix("_binding")]


def command(args: argparse.Namespace, name: str, run_budget: str, out: Path) -> tuple[list[str], dict[str, str]]:
    """The ``reasoning-bench run`` of configuration ``name`` and its environment."""
    gpus, suffix, extra = config_of(name)
    backend = args.backend if args.backend != "vllm" else f"vllm:{args.model}{suffix}"
    concurrency = args.concurrency
    if "--ray" in extra:  # --concurrency is per worker: the same problems in flight in all
        concurrency = max(1, concurrency // 2)
    argv = [sys.executable, "-m", "reasoning.benchmarks.cli", "run", "--dataset", args.dataset,
            "--limit", str(args.limit), "--strategy", "self-consistency", "--n", str(args.n),
            "--max-tokens", str(args.max_tokens), "--backend", backend, "--run-budget", run_budget,
            "--concurrency", str(concurrency), "--out", str(out), *extra]
    env = dict(os.environ)
    if args.backend == "vllm":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(gpus))
    return argv, env


def run_config(args: argparse.Namespace, name: str, run_budget: str, deadline: float) -> dict[str, Any]:
    """Run one configuration to its end or the deadline (SIGINT, so it writes its summary)."""
    out = Path(args.root) / name
    shutil.rmtree(out, ignore_errors=True)  # one fresh run each: a resumed one would mix calls
    argv, env = command(args, name, run_budget, out)
    print(f"== {name}: {' '.join(argv[3:])}", flush=True)
    started = time.monotonic()
    # SIGINT at the deadline must reach the run even when this driver runs as a shell's
    # background job (those inherit SIGINT ignored). This driver starts no threads.
    process = subprocess.Popen(argv, env=env, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    try:
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        cut = False
    except subprocess.TimeoutExpired:
        cut = True
        os.killpg(process.pid, signal.SIGINT)
        try:
            code = process.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
    entry: dict[str, Any] = {"config": name, "argv": argv[3:], "returncode": code, "cut_by_deadline": cut,
                             "process_seconds": time.monotonic() - started, "run_budget": run_budget,
                             "gpus": config_of(name)[0]}
    summary_path = out / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        keep = ("accuracy", "n_problems", "n_correct", "complete", "usage", "run_charged", "stopped_by",
                "wall_seconds", "solve_seconds", "ray")
        entry.update({key: summary[key] for key in keep if key in summary})
    return entry


def figures(entries: list[dict[str, Any]]) -> None:
    """Throughput, scaling against one_gpu and whether the run budget held, added in place."""
    for entry in entries:
        tokens = (entry.get("usage") or {}).get("completion_tokens", 0)
        solve, wall = entry.get("solve_seconds"), entry.get("wall_seconds")
        entry["tokens_per_s"] = tokens / solve if solve else None
        entry["end_to_end_tokens_per_s"] = tokens / wall if wall else None
        limit = Budget.parse(entry["run_budget"])
        charged = entry.get("run_charged")
        if charged is None:
            entry["budget_held"] = None
        else:
            checks = {"tokens": charged.get("tokens", 0), "calls": charged.get("calls", 0)}
            entry["budget_held"] = all(checks[key] <= getattr(limit, key) for key in checks
                                       if getattr(limit, key) is not None)
            entry["budget_charged_tokens"] = checks["tokens"]
    base = next((e for e in entries if e["config"] == "one_gpu" and e.get("tokens_per_s")), None)
    for entry in entries:
        if base and entry.get("tokens_per_s") and entry.get("complete") and entry["config"] in CONFIGS:
            entry["scaling"] = entry["tokens_per_s"] / base["tokens_per_s"]
            entry["efficiency"] = entry["scaling"] / entry["gpus"]


def mean_rates(reports: list[dict[str, Any]]) -> dict[str, float]:
    """Per configuration that has a throughput in every round's report: its mean tokens/s over
    the rounds, in the first round's order (the scaling RESULTS.md and the capacity model use)."""
    rounds = [{run["config"]: run.get("tokens_per_s") for run in report["runs"]} for report in reports]
    return {name: sum(r[name] for r in rounds) / len(rounds) for name in rounds[0]
            if all(r.get(name) for r in rounds)}


def gpu_names() -> list[str]:
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="/root/model", help="HF folder for vLLM")
    parser.add_argument("--backend", default="vllm", help="vllm (default), or another spec for a CPU check")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=200, help="problems in flight (Ray: split over workers)")
    parser.add_argument("--run-budget", default="tokens=6000000", help="every configuration's run budget")
    parser.add_argument("--binding-budget", type=int, default=0,
                        help="also run ray2 under a run budget of this many tokens (0: not)")
    parser.add_argument("--root", required=True, help="folder for the runs' output folders")
    parser.add_argument("--out", required=True, help="the report (JSON)")
    parser.add_argument("--deadline-s", type=float, default=0, help="stop (SIGINT) whatever runs after this (0: none)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.deadline_s if args.deadline_s else float("inf")
    Budget.parse(args.run_budget)  # a bad budget fails here, not in every run
    plan = [(name, args.run_budget) for name in args.configs]
    if args.binding_budget:
        plan.append(("ray2_binding", f"tokens={args.binding_budget}"))
    report: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "command": provenance.command("two_gpu", argv), "machine": platform.platform(),
                              "gpus": gpu_names(),
                              "dataset": args.dataset, "limit": args.limit, "n": args.n,
                              "max_tokens": args.max_tokens, "runs": []}
    for name, budget in plan:
        if time.monotonic() >= deadline - GRACE_S:
            print(f"deadline: {name} not started", flush=True)
            continue
        report["runs"].append(run_config(args, name, budget, deadline - GRACE_S))
        figures(report["runs"])
        Path(args.out).write_text(json.dumps(report, indent=2))  # after each: nothing lost to a later cut
        shown = {k: report["runs"][-1].get(k) for k in ("config", "returncode", "n_problems", "accuracy",
                                                          "tokens_per_s", "scaling", "budget_held")}
        print(json.dumps(shown), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
