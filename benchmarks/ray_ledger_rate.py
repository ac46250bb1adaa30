"""How fast the Ray ledger actor reserves and commits, and what two Ray workers gain over one.

Two measurements on a local Ray cluster (``ray.init(num_cpus=...)``, no dashboard):

1. **Ledger rate**: reserve + commit pairs per second, as a worker makes them
   (``distributed.ActorUpstream``: the reservation waits for the actor's answer, the commit is
   sent without waiting; a barrier at the end waits for the last commit): from one caller and
   from several callers (worker actors) at once, with the run journal (``journal.jsonl``, each
   reservation fsync'd, as ``reasoning-bench run`` keeps it) and without; next to the same pairs
   on an in-process ``Ledger``.
2. **Speed-up**: ``run_benchmark`` with ``--ray`` on 1 and on 2 workers (greedy, the same
   problems, ``--concurrency`` per worker) against the stub server in a child process with a fixed
   latency per request, so that the work is waiting, not CPU, and the figure means something on a
   2-core machine. Timed from the moment the workers are ready (``RunProgress.begin``) to the last
   problem written; worker start-up is reported apart.

    python -m reasoning.benchmarks.ray_ledger_rate --out benchmarks/results/ray_ledger_cpu_DATE.json

Needs the ``ray`` extra. docs/scaling.md reads the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reasoning import Budget, Ledger, Usage
from reasoning.budget import CallShape

from .distributed import ActorUpstream, RayCluster
from .grading_speed import git_version
from .provenance import command
from .run import RunProgress

SHAPE = CallShape(200, False, False)
CHARGED = Usage(prompt_tokens=200, completion_tokens=100, calls=1)


def local_pairs(pairs: int) -> float:
    """Seconds for ``pairs`` reserve + commit pairs on an in-process run ledger (with a journal-less
    child per 16 pairs, as problems come and go)."""
    run = Ledger(Budget(tokens=10**12), label="run:")
    start = time.perf_counter()
    for i in range(pairs):
        if i % 16 == 0:
            problem = run.child(Budget(tokens=10**9))
        problem.commit(problem.reserve(SHAPE, 1, 512), CHARGED)
    return time.perf_counter() - start


class Caller:
    """A worker's side of the ledger: reserve + commit pairs through ``ActorUpstream``."""

    def __init__(self, actor: Any) -> None:
        self.upstream = ActorUpstream(actor, f"caller:{os.getpid()}")

    def pairs(self, count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            handle, *_ = self.upstream.reserve(SHAPE, 1, 512, 1)
            self.upstream.commit(handle, CHARGED)
        self.upstream.barrier()
        return time.perf_counter() - start


def actor_rate(cluster: RayCluster, pairs: int, callers: int, journal: bool) -> dict[str, Any]:
    ray = cluster.ray
    with tempfile.TemporaryDirectory() as folder:
        actor = cluster.ledger("tokens=1000000000000", str(Path(folder) / "journal.jsonl") if journal else None, Usage())
        handle = cluster.actors[-1]
        ray.get(actor.ping.remote())
        if callers == 1:
            seconds = Caller(actor).pairs(pairs)
            wall = seconds
        else:
            remote = ray.remote(Caller).options(num_cpus=0)
            made = [remote.remote(actor) for _ in range(callers)]
            ray.get([c.pairs.remote(10) for c in made])  # warm: actors started, connections made
            start = time.perf_counter()
            ray.get([c.pairs.remote(pairs) for c in made])
            wall = time.perf_counter() - start
            for c in made:
                ray.kill(c)
        totals = ray.get(actor.totals.remote())
        ray.get(actor.close.remote())
        ray.kill(handle)
        cluster.actors.remove(handle)
    done = pairs * callers
    assert totals["used"]["calls"] >= done and totals["open"] == 0
    return {"callers": callers, "journal": journal, "pairs": done, "seconds": wall, "pairs_per_s": done / wall,
            "ms_per_pair_per_caller": wall / pairs * 1000}


class Timed(RunProgress):
    """Notes when solving begins (the workers are ready) and when the last problem is written."""

    def begin(self) -> None:
        self.began = time.monotonic()

    def changed(self) -> None:
        if self.finished and self.finished == self.todo:
            self.ended = time.monotonic()


def speedup_run(base_url: str, workers: int, problems: int, concurrency: int, folder: Path) -> dict[str, Any]:
    from reasoning.strategies import create

    from .distributed import BackendSpec, RayOptions
    from .run import RunConfig, run_benchmark

    spec = BackendSpec("openai:stub-model", base_url)
    config = RunConfig(dataset="gsm8k", limit=problems, strategy="greedy", backend=spec.spec, api_base=base_url,
                       max_tokens=64, concurrency=concurrency, out=str(folder / f"w{workers}"))
    progress = Timed()
    started = time.monotonic()
    summary = asyncio.run(run_benchmark(config, create("greedy"), spec.build(), progress=progress,
                                        ray=RayOptions(workers=workers, generator=spec)))
    assert summary["n_problems"] == problems and summary["usage"]["calls"] == problems
    return {"workers": workers, "problems": problems, "concurrency_per_worker": concurrency,
            "startup_s": progress.began - started, "solve_s": progress.ended - progress.began,
            "problems_per_s": problems / (progress.ended - progress.began), "wall_s": summary["wall_seconds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=2000, help="reserve + commit pairs per caller")
    parser.add_argument("--callers", type=int, default=4, help="the most callers at once")
    parser.add_argument("--problems", type=int, default=48, help="problems of each speed-up run")
    parser.add_argument("--latency", type=float, default=0.25, help="the stub's seconds per request")
    parser.add_argument("--concurrency", type=int, default=4, help="problems in flight per worker")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--note", default="", help="a remark stored with the figures (e.g. machine load)")
    args = parser.parse_args(argv)

    import ray

    from .stub_server import stub_process

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report: dict[str, Any] = {
        "command": command("ray_ledger_rate", argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "ray": ray.__version__,
        "code_version": git_version(),
        "load_average_1min_before": load_before,
        "note": args.note,
    }
    seconds = local_pairs(args.pairs * 10)
    report["in_process"] = {"pairs": args.pairs * 10, "seconds": seconds, "pairs_per_s": args.pairs * 10 / seconds}
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    cluster = RayCluster(None)
    try:
        report["actor"] = [actor_rate(cluster, args.pairs, callers, journal)
                           for journal in (True, False) for callers in sorted({1, 2, args.callers})]
        with stub_process("--latency", str(args.latency)) as base_url, tempfile.TemporaryDirectory() as folder:
            report["stub_latency_s"] = args.latency
            report["speedup"] = [speedup_run(base_url, workers, args.problems, args.concurrency, Path(folder))
                                 for workers in (1, 2)]
        one, two = report["speedup"]
        report["speedup_2_vs_1"] = one["solve_s"] / two["solve_s"]
    finally:
        cluster.close()
        ray.shutdown()
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
