"""Several sweep files at once over one backend: one engine load, one full GPU.

    python -m benchmarks.run_sweeps benchmarks/sweeps/sc_vs_genrm_gsm8k.yaml ... \\
        --backend vllm:/root/model --root /root/sweeps --deadline-s 480

Each file is a ``SweepConfig`` (YAML/TOML); ``--backend`` replaces every file's backend and
``--root`` puts each sweep's ``out`` (and its cache, when relative) under one folder. All
sweeps run concurrently, so a batching engine (vLLM) always has work. At ``--deadline-s``
the unfinished work is cancelled: every finished problem is already on disk, the rows and
coverage are summarised as they stand, and running the same command again resumes (cached
samples cost nothing). This is how the GPU results in RESULTS.md were made, in calls of at
most ten minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from reasoning.backends import from_spec
from reasoning.backends.cache import CachedBackend

from .sweep import Sweep, SweepConfig, format_fit, summarise_dir, x_value


def _configs(args: argparse.Namespace) -> list[SweepConfig]:
    configs = []
    for path in args.configs:
        config = SweepConfig.from_file(path, backend=args.backend)
        out = Path(args.root) / config.out if args.root else Path(config.out)
        cache = config.cache
        if cache and args.root and not Path(cache).is_absolute():
            cache = str(Path(args.root) / cache)
        configs.append(config.model_copy(update={"out": str(out), "cache": cache}))
    return configs


async def main_async(args: argparse.Namespace) -> int:
    configs = _configs(args)
    inner = from_spec(configs[0].backend)
    await inner.load()
    # One cache object per file: sweeps that name the same cache file share its rows.
    caches: dict[str, CachedBackend] = {}
    sweeps = []
    for config in configs:
        path = str(Path(config.cache) if config.cache else Path(config.out) / "generations.sqlite")
        if path not in caches:
            caches[path] = CachedBackend(inner, path)
        sweeps.append(Sweep(config, caches[path]))
    started = time.monotonic()
    tasks = [asyncio.ensure_future(sweep.run()) for sweep in sweeps]
    done, pending = await asyncio.wait(tasks, timeout=args.deadline_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    failures = [task.exception() for task in done if task.exception() is not None]
    status = {}
    for config, task in zip(configs, tasks):
        summary = summarise_dir(Path(config.out), config)  # what is on disk, finished or not
        status[config.out] = "done" if task in done and task.exception() is None else "resume later"
        print(f"\n== {config.out} ({status[config.out]}, {time.monotonic() - started:.0f} s)")
        for row in summary["cells"]:
            ci = row["ci95"]
            print(f"{row['dataset']:9} {row['strategy'][:40]:40} {row['point']:14} acc {row['accuracy']:.3f} "
                  f"[{ci[0]:.3f}, {ci[1]:.3f}] n={row['n_problems']:4} {config.x_axis} {x_value(row, config.x_axis):,.0f}"
                  f"{'  SATURATED' if row['saturation_point'] else ''}")
        for dataset, strategies in summary["coverage"].items():
            for strategy, data in strategies.items():
                print(f"coverage {dataset}/{strategy}: @1 {data['coverage'][0]:.3f} @{data['k'][-1]} "
                      f"{data['coverage'][-1]:.3f}; {format_fit(data['fit'])}")
    for cache in caches.values():
        print(f"cache {cache.path}: {cache.hits} reused, {cache.misses} generated")
    if args.status:
        Path(args.status).write_text(json.dumps(status, indent=2))
    await inner.aclose()
    for failure in failures:
        print(f"error: {type(failure).__name__}: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+", help="sweep files (YAML or TOML)")
    parser.add_argument("--backend", help="replaces every file's backend")
    parser.add_argument("--root", help="folder for every sweep's out (and relative caches)")
    parser.add_argument("--deadline-s", type=float, default=None, help="stop (resumably) after this many seconds")
    parser.add_argument("--status", help="write {out: done | resume later} here")
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
