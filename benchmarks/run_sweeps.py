"""Several sweep files at once over one backend: one engine load, one full GPU.

    python -m reasoning.benchmarks.run_sweeps benchmarks/sweeps/sc_vs_genrm_gsm8k.yaml ... \\
        --backend vllm:/root/model --root /root/sweeps --deadline-s 480

Each file is a ``SweepConfig`` (YAML/TOML); ``--backend`` replaces every file's backend and
``--root`` puts each sweep's ``out`` (and its cache, when relative) under one folder. All
sweeps run concurrently, so a batching engine (vLLM) always has work. At ``--deadline-s``
the unfinished work is cancelled: every finished problem is already on disk, the rows and
coverage are summarised as they stand, and running the same command again resumes (cached
samples cost nothing). This is how the GPU results in RESULTS.md were made, in calls of at
most ten minutes.

``--calibrate DATASET:OFFSET:LIMIT:BUDGET:AVERAGE=POLICY`` first learns a compute-optimal
policy (``benchmarks.calibrate.learn_policy``) on problems OFFSET..OFFSET+LIMIT, each under the
per-problem token BUDGET with AVERAGE tokens per problem allowed on average, and writes it to
POLICY (under ``--root``); sweeps whose strategy options name that policy file start once it
exists, the others at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from reasoning.backends import from_spec
from reasoning.backends.cache import CachedBackend
from reasoning.errors import ConfigError

from .sweep import Sweep, SweepConfig, format_fit, format_ttspm, summarise_dir, x_value


def _under_root(root: str | None, path: str) -> str:
    return str(Path(root) / path) if root and not Path(path).is_absolute() else path


def _configs(args: argparse.Namespace) -> list[SweepConfig]:
    configs = []
    for path in args.configs:
        config = SweepConfig.from_file(path, backend=args.backend)
        strategies = [
            spec.model_copy(update={"options": {**spec.options, "policy": _under_root(args.root, spec.options["policy"])}})
            if isinstance(spec.options.get("policy"), str) else spec
            for spec in config.strategies
        ]
        configs.append(config.model_copy(update={
            **({"concurrency": args.concurrency} if args.concurrency else {}),
            "out": _under_root(args.root, config.out),
            "cache": _under_root(args.root, config.cache) if config.cache else None,
            "strategies": strategies,
        }))
    return configs


def engine_kwargs(items: list[str]) -> dict[str, Any]:
    """``--engine KEY=VALUE`` items as vLLM engine arguments: a value that reads as JSON (1024,
    0.45, true, null, a list) is that value, anything else the string (e.g. ``dtype=bfloat16``);
    ``gpu_memory_utilization=0.45`` reached vLLM as the string "0.45" before."""
    engine: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--engine {item!r}: expected KEY=VALUE, e.g. max_num_seqs=1024")
        try:
            engine[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            engine[key.strip()] = raw.strip()
    return engine


def _existing(paths: set[str]) -> set[str]:
    return {path for path in paths if Path(path).is_file()}


def backend_options(configs: list[SweepConfig]) -> dict[str, bool]:
    """A vLLM engine gets the in-engine confidence stop (off by default: its logits processor
    moves vLLM from Model Runner V2 to V1) when a sweep runs ``deepconf`` online; the backend's
    name, so the cache's key, stays the same."""
    online = any(spec.name == "deepconf" and spec.options.get("mode", "online") == "online"
                 for config in configs for spec in config.strategies)
    return {"confidence_stop": True} if online and configs[0].backend.partition(":")[0] == "vllm" else {}


def _needs(config: SweepConfig) -> set[str]:
    return {spec.options["policy"] for spec in config.strategies if isinstance(spec.options.get("policy"), str)}


async def _calibrate(spec: str, root: str | None, backend, config: SweepConfig | None) -> str:
    """Learn and write one policy; returns its path."""
    from reasoning.budget import Budget
    from reasoning.context import Sampling

    from .calibrate import learn_policy
    from .datasets import load_items

    what, _, target = spec.partition("=")
    try:
        dataset, offset, limit, budget, average = what.split(":")
        offset_i, limit_i, budget_i, average_f = int(offset), int(limit), int(budget), float(average)
    except ValueError:
        raise SystemExit(f"--calibrate {spec!r}: expected DATASET:OFFSET:LIMIT:BUDGET:AVERAGE=POLICY") from None
    path = _under_root(root, target)
    if Path(path).is_file():
        return path  # learned in an earlier call
    items = load_items(dataset, offset_i + limit_i)[offset_i:]
    sampling = Sampling(max_tokens=config.max_tokens, temperature=config.temperature) if config else None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    policy = await learn_policy(items, backend, budget=Budget(tokens=budget_i), token_budget=average_f,
                                concurrency=32, sampling=sampling, out=path)
    print(f"policy {path}: {policy.to_dict()}")
    return path


async def main_async(args: argparse.Namespace) -> int:
    configs = _configs(args)
    engine = args.engine  # engine_kwargs, parsed in main
    started = time.monotonic()  # the deadline counts the engine's load too: a call's clock starts here
    inner = from_spec(configs[0].backend, **({"engine_kwargs": engine} if engine else {}), **backend_options(configs))
    await inner.load()
    # One cache object per file: sweeps that name the same cache file share its rows.
    caches: dict[str, CachedBackend] = {}
    sweeps = []
    for config in configs:
        path = str(Path(config.cache) if config.cache else Path(config.out) / "generations.sqlite")
        if path not in caches:
            caches[path] = CachedBackend(inner, path)
        # A sweep that waits for a policy is built once the policy exists (its strategy loads it).
        sweeps.append((config, caches[path], None if _needs(config) - _existing(_needs(config)) else Sweep(config, caches[path])))
    policies: dict[str, asyncio.Future] = {}
    for spec in args.calibrate:
        target = _under_root(args.root, spec.partition("=")[2])
        # The cache and sampling of the first sweep that uses this policy.
        user = next((c for c in configs if target in _needs(c)), None)
        cache = caches[str(Path(user.cache) if user and user.cache else Path(configs[0].out) / "generations.sqlite")]
        policies[target] = asyncio.ensure_future(_calibrate(spec, args.root, cache, user))

    async def after_policies(config: SweepConfig, cache: CachedBackend, sweep: Sweep | None):
        for needed in _needs(config):
            if needed in policies:
                await policies[needed]
        return await (sweep or Sweep(config, cache)).run()

    tasks = [asyncio.ensure_future(after_policies(*entry)) for entry in sweeps]
    left = None if args.deadline_s is None else max(0.0, args.deadline_s - (time.monotonic() - started))
    done, pending = await asyncio.wait(tasks, timeout=left)
    for task in [*pending, *(p for p in policies.values() if not p.done())]:
        task.cancel()
    await asyncio.gather(*pending, *policies.values(), return_exceptions=True)
    failures = [task.exception() for task in done if task.exception() is not None]
    status = {}
    for config, task in zip(configs, tasks):
        finished = task in done and task.exception() is None
        # A finished sweep summarised itself; a stopped one is summarised from what is on disk.
        Path(config.out).mkdir(parents=True, exist_ok=True)  # a sweep still waiting for its policy has none yet
        summary = task.result() if finished else summarise_dir(Path(config.out), config)
        status[config.out] = "done" if finished else "resume later"
        print(f"\n== {config.out} ({status[config.out]}, {time.monotonic() - started:.0f} s)")
        for row in summary["cells"]:
            ci = row["ci95"]
            print(f"{row['dataset']:9} {row['strategy'][:40]:40} {row['point']:14} acc {row['accuracy']:.3f} "
                  f"[{ci[0]:.3f}, {ci[1]:.3f}] n={row['n_problems']:4} {config.x_axis} {x_value(row, config.x_axis):,.0f}"
                  f"{'  plateau (doublings gain < threshold)' if row['saturation_point'] else ''}")
        for dataset, strategies in summary["coverage"].items():
            for strategy, data in strategies.items():
                print(f"coverage {dataset}/{strategy}: @1 {data['coverage'][0]:.3f} @{data['k'][-1]} "
                      f"{data['coverage'][-1]:.3f}; {format_fit(data['fit'])}")
        for dataset, strategies in summary.get("ttspm", {}).items():
            for strategy, fit in strategies.items():
                print(f"ttspm {dataset}/{strategy}: {format_ttspm(fit)}")
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
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="stop (resumably) this many seconds after the command started, the engine's load included; "
                             "leave a minute or more before a hard limit for the summaries and the engine's shutdown")
    parser.add_argument("--concurrency", type=int, help="replaces every file's concurrency (problems in flight per sweep)")
    parser.add_argument("--status", help="write {out: done | resume later} here")
    parser.add_argument("--engine", action="append", default=[], metavar="KEY=VALUE",
                        help="vLLM engine argument, repeatable (e.g. max_num_seqs=1024)")
    parser.add_argument("--calibrate", action="append", default=[], metavar="DATASET:OFFSET:LIMIT:BUDGET:AVERAGE=POLICY",
                        help="learn a compute-optimal policy first (see above); repeatable")
    args = parser.parse_args(argv)
    try:
        args.engine = engine_kwargs(args.engine)
    except ConfigError as bad:
        parser.error(str(bad))  # before any engine loads
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
