"""``reasoning-bench sweep``: strategies x budgets x datasets, compared at matched compute.

A sweep is a grid. Each *cell* is one (dataset, strategy, point), where a point is either a
sample count (``--n 1,2,4``) or a per-problem budget (``--budget-grid tokens=1000,2000``; any
ledger limit: tokens, completion_tokens, usd, flops, calls). Two ways to fill a cell:

- **Sample reuse** (strategies implementing ``reasoning.strategy.SampleReuse`` — self-
  consistency, best-of-N, GenRM best-of-N — unless ``reuse: false``): per problem, the
  strategy draws one pool of N candidates (N = the largest n, or ``pool``), scored by its
  verifier; every point is then evaluated on random subsets of that pool without new model
  calls (majority@k / best-of-k averaged over ``subsets`` random k-subsets, as
  search-and-learn does). A point is charged what a direct run at k would pay, in
  expectation (``PoolCost``): on a backend with native ``n`` the candidates come from one
  request whose prompt (and call) is paid once whatever k is, so that fixed part F is charged
  in full at every k and only the rest (completions, verification) as k/N of the pool's:
  cost(k) = F + k·(pool − F)/N. With fan-out every candidate pays its own prompt and call,
  F = 0. A budget point b gets, per problem, the largest k whose cost fits b (capped at N,
  marked ``capped``): with ``budget_mode: expected`` (default) the expected cost above; with
  ``worst-case`` the cost had every completion run to its ``max_tokens``, which is what the
  ledger reserves before a direct run's call, so pooled and direct strategies are held alike.
- **Direct**: every other strategy runs once per problem and point, the point's budget enforced
  by the ledger (strategies with an ``n`` option get ``n = max_n`` so that the budget binds; an
  n point sets ``n`` itself).

FLOPs budgets: a direct run is held by the ledger, which counts 2·params·tokens; a pooled point
uses the sweep's own FLOPs (with the attention term, ``benchmarks.compute``), so the two modes
agree on tokens but not exactly on FLOPs. Rows also carry effective FLOPs when the model's shape
is known: ``eflops`` as Kinetics' official cost model computes them (attention + KV-cache reads,
the prompt's KV read once for all samples of a request; no weight reads, no prefill) and
``eflops_extended``, this project's variant (prefill, every sample's own prompt-KV reads, weight
reads over a decode batch of 64). Seconds are not a sweep axis (they depend on load
and on the cache).

Every backend call goes through a disk cache (``reasoning.backends.cache``) keyed by model,
prompt, sampling parameters and seed: re-running a sweep, extending N, or adding a strategy
costs only the new samples. Results are appended per problem to ``DIR/problems.jsonl``
(fsync'd), so an interrupted sweep resumes where it stopped. At the end ``DIR/sweep.jsonl``
holds one row per cell (accuracy, 95 % bootstrap CI over problems, mean usage per problem
incl. FLOPs and effective FLOPs, and the empirical saturation rule: ``gain_per_doubling`` to the
next point and ``saturation_point``, the first point from which every further doubling of the
x axis gains less than ``saturation_threshold``), ``DIR/coverage.json`` the pass@k coverage
curves with their power-law fits, ``DIR/ttspm.json`` (n grids) per dataset and strategy the
TTSPM fit of accuracy vs n, F(N) = F_max·(1 − (1 − p)^N), with its saturation point N*, the
first N whose next sample gains less than ``ttspm_epsilon`` (``benchmarks.scaling_models``; not
the empirical rule), and ``DIR/report.html`` the plots and tables.

``--ray [ADDRESS]`` fills the jobs on Ray workers (``benchmarks/distributed.py``: each builds the
backend behind the same cache file and runs ``Sweep.solve_job``); rows come back here and are
written as above, so a distributed sweep resumes like a local one. Sweeps have no run budget.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reasoning import Budget, Problem, asolve
from reasoning.aio import gather_all
from reasoning.backends.base import Backend
from reasoning.backends.cache import cache_scope
from reasoning.budget import LIMITS, Usage
from reasoning.context import Context, Sample, Sampling
from reasoning.errors import ConfigError
from reasoning.strategy import Outcome, SampleReuse, Strategy

from .compute import H100_INTENSITY, KINETICS_INTENSITY, ComputeModel, ModelShape
from .datasets import Item, load_items
from .estimators import MIN_FIT_POINTS, bootstrap_ci, coverage_curve, fit_coverage, saturation, subset_mean
from .run import _Appender, check_resume, grade_item, read_rows, solve_options, unpack
from .scaling_models import MIN_POINTS, fit_ttspm

BUDGET_KINDS = tuple(limit for limit in LIMITS if limit != "seconds")  # seconds are not comparable across runs


class StrategySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    options: dict[str, Any] = {}
    label: str | None = None  # how it is called in tables and plots (default: the name)
    # This strategy's own sample-count points (a subset of the sweep's n is typical: a
    # costly verifier need not draw the largest pool). Only with an n grid.
    n: list[int] | None = None
    # The option an n point (or, on a budget grid, max_n) sets when the strategy runs
    # directly; default: the strategy's ``size_option`` ("n" for self-consistency, "max_n"
    # for early-stop-sc, "paths" for parallel-thinking; on a budget grid a value given in
    # ``options`` wins). A strategy without one runs with its own options: once on an n
    # grid, at every point of a budget grid.
    n_option: str | None = None

    @field_validator("n")
    @classmethod
    def _positive(cls, values: list[int] | None) -> list[int] | None:
        if values is not None and (not values or any(v < 1 for v in values)):
            raise ValueError("a strategy's n points must be a non-empty list of integers >= 1")
        return sorted(set(values)) if values is not None else None

    @property
    def key(self) -> str:
        return self.label or self.name


class SweepConfig(BaseModel):
    """A sweep, from the command line or a YAML/TOML file (same field names)."""

    model_config = ConfigDict(extra="forbid")

    datasets: list[str] = Field(min_length=1)
    limit: int | None = Field(default=None, ge=1)
    strategies: list[StrategySpec] = Field(min_length=1)
    n: list[int] = []  # sample-count points
    budget_grid: dict[str, list[float]] = {}  # one limit -> per-problem budget points
    backend: str = "local"
    api_base: str | None = None
    max_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=0.7, ge=0)
    reuse: bool = True
    pool: int | None = Field(default=None, ge=1)  # pool size for budget grids with reuse
    max_n: int = Field(default=64, ge=1)  # n given to direct strategies on a budget grid
    subsets: int = Field(default=32, ge=1)  # random subsets per (problem, k)
    bootstrap: int = Field(default=1000, ge=100)
    saturation_threshold: float = Field(default=0.01, ge=0)  # the empirical rule: accuracy gain per doubling
    ttspm_epsilon: float = Field(default=0.01, gt=0)  # TTSPM's N*: accuracy gain per extra sample
    coverage: bool = True
    # FLOPs/byte for effective FLOPs: Kinetics' (eflops; their B200 figure, 562.5) and the
    # extended model's (eflops_extended: an H100's 295, weight reads shared by decode_batch).
    intensity: float = Field(default=KINETICS_INTENSITY, gt=0)
    extended_intensity: float = Field(default=H100_INTENSITY, gt=0)
    decode_batch: int = Field(default=64, ge=1)
    x_axis: Literal["tokens", "completion_tokens", "uncached_tokens", "usd", "flops", "eflops", "eflops_extended",
                    "n"] = "tokens"
    # How a pooled strategy's k is matched to a budget point: its expected cost at k, or its
    # worst case (every completion at max_tokens: what a direct run's ledger reserves).
    budget_mode: Literal["expected", "worst-case"] = "expected"
    concurrency: int = Field(default=32, ge=1)
    # "sweep": at most `concurrency` problems in flight over the whole sweep; "strategy": that
    # many per strategy label, so labels run side by side while each solves its problems in
    # dataset order (with concurrency 1: a memory that grows over the run, e.g. cheatsheet,
    # sees every earlier problem of its own label, as in a sequential run).
    concurrency_scope: Literal["sweep", "strategy"] = "sweep"
    seed: int = 0
    out: str
    cache: str | None = None  # default: OUT/generations.sqlite

    @field_validator("n")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError("every n must be >= 1")
        return sorted(set(values))

    @field_validator("budget_grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[float]]) -> dict[str, list[float]]:
        if len(grid) > 1:
            raise ValueError(f"one budget kind per sweep, got {', '.join(grid)}")
        for kind, values in grid.items():
            if kind not in BUDGET_KINDS:
                raise ValueError(f"unknown budget kind {kind!r}; use one of {', '.join(BUDGET_KINDS)}")
            if not values or any(v <= 0 for v in values):
                raise ValueError(f"budget points for {kind!r} must be positive")
        return {kind: sorted(set(values)) for kind, values in grid.items()}

    @model_validator(mode="after")
    def _one_grid(self) -> SweepConfig:
        if bool(self.n) == bool(self.budget_grid):
            raise ValueError("give exactly one of n (sample counts) or budget_grid (per-problem budgets)")
        keys = [s.key for s in self.strategies]
        if len(set(keys)) != len(keys):
            raise ValueError("two strategies share a label; give them distinct `label`s")
        if self.budget_grid and any(s.n for s in self.strategies):
            raise ValueError("a strategy's own n points need an n grid, not a budget grid")
        return self

    @property
    def budget_kind(self) -> str | None:
        return next(iter(self.budget_grid), None)

    def points(self, strategy: str | None = None) -> list[dict[str, float]]:
        """The grid's points, or one strategy's (its own n points when it has them)."""
        spec = next((s for s in self.strategies if s.key == strategy), None)
        if self.n:
            return [{"n": n} for n in (spec.n if spec and spec.n else self.n)]
        kind = self.budget_kind
        return [{kind: value} for value in self.budget_grid[kind]]

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> SweepConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"sweep config not found: {path}")
        text = path.read_text(encoding="utf-8")
        import tomllib

        import yaml

        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as bad:
            raise ConfigError(f"{path}: cannot parse ({bad})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sweep fields")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)


def point_key(point: dict[str, float]) -> str:
    ((kind, value),) = point.items()
    return f"{kind}={value:g}"


# -- the two ways to fill cells ----------------------------------------------------------
class _DrawPool(Strategy):
    """Draws a reusable strategy's pool of candidates; the answer is chosen later, per subset."""

    name = "pool"
    inner: SampleReuse
    size: int

    async def run(self, ctx: Context) -> Outcome:
        samples = await self.inner.draw(ctx, self.size)
        return Outcome(None, samples=samples, info={"pool_samples": samples})

    def describe(self) -> dict[str, Any]:
        return {"strategy": "pool", "of": self.inner.describe(), "size": self.size}


def _under_shared_span(node: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> bool:
    """Whether a trace node lies under a span marked ``shared=True`` (see ``PoolCost``)."""
    parent = node.get("parent")
    while parent is not None and parent in by_id:
        up = by_id[parent]
        if up["kind"] == "span" and (up.get("info") or {}).get("shared") is True:
            return True
        parent = up.get("parent")
    return False


def _usage_costs(nodes: list[dict[str, Any]], backend: Backend, compute: ComputeModel | None) -> dict[str, float]:
    """The cost kinds a sweep records (``Sweep._costs``) of some generate nodes of a trace."""
    total = {kind: float(sum(node["usage"].get(kind, 0) or 0 for node in nodes))
             for kind in ("tokens", "completion_tokens", "uncached_tokens", "usd", "calls")}
    if compute is not None:
        total.update(compute.of_trace(nodes, backend.capabilities.native_n))
    else:
        total["flops"] = float(sum(node["usage"].get("flops", 0) or 0 for node in nodes))
    return total


@dataclass(frozen=True)
class PoolCost:
    """What a direct run at k would pay, derived from one pool of N candidates.

    ``fixed`` is what one batched request pays whatever its n: its prompt (tokens, USD,
    prefill FLOPs), the call and, in Kinetics' eFLOPs, the prompt's KV read once per decode step
    for all its samples (``ComputeModel.shared``), on backends with native n; and every call
    made under a span marked ``shared=True`` (calls a strategy makes once per problem whatever
    the number of candidates, e.g. PlanSearch's observations), in full. Everything else
    (completion tokens, verification, more calls) grows with the candidates, so at k it is k/N
    of the pool's. ``worst`` is the pool's cost had every completion used its whole ``max_tokens``.
    """

    n: int
    fixed: dict[str, float]
    pool: dict[str, float]
    worst: dict[str, float]

    @classmethod
    def of(cls, result, samples: list[Sample], pool: dict[str, float], backend: Backend,
           compute: ComputeModel | None) -> PoolCost:
        trace = result.trace.to_list()
        by_id = {node["id"]: node for node in trace}
        fixed = dict.fromkeys(pool, 0.0)
        # The request that produced most of the pool: with native n its prompt was paid once.
        served: dict[int, int] = {}
        for sample in samples:
            if sample.trace_id is not None:
                served[sample.trace_id] = served.get(sample.trace_id, 0) + 1
        if served and backend.capabilities.native_n:
            node = by_id[max(served, key=served.get)]
            usage = node.get("usage") or {}
            if len(node.get("completions") or []) > 1 and usage.get("calls", 0) >= 1:
                prompt, cached = float(usage.get("prompt_tokens", 0)), float(usage.get("cached_prompt_tokens", 0))
                fixed.update(tokens=prompt, completion_tokens=0.0, uncached_tokens=prompt - cached, calls=1.0,
                             usd=prompt * backend.prices()[0])
                if compute is not None:
                    lengths = [c["completion_tokens"] for c in node.get("completions") or []]
                    fixed.update(compute.shared(prompt, lengths, cached))
                else:
                    fixed["flops"] = 2.0 * (backend.params or 0) * (prompt - cached)
                fixed = {kind: min(value, pool.get(kind, 0.0)) for kind, value in fixed.items() if kind in pool}
        shared = [node for node in trace if node["kind"] == "generate" and node.get("usage")
                  and _under_shared_span(node, by_id)]
        if shared:  # made once per problem: a direct run at any k pays them in full
            part = _usage_costs(shared, backend, compute)
            fixed = {kind: min(fixed.get(kind, 0.0) + part.get(kind, 0.0), pool.get(kind, 0.0)) for kind in pool}
        # Worst case: every completion of every call at its max_tokens.
        extra = 0.0
        extra_flops = 0.0
        for node in trace:
            if node["kind"] != "generate" or not node.get("usage") or not node.get("request"):
                continue
            asked = node["request"].get("n", 1) * node["request"].get("max_tokens", 0)
            got = node["usage"].get("completion_tokens", 0)
            extra += max(0, asked - got)
            if compute is not None:
                usage = node["usage"]
                lengths = [c["completion_tokens"] for c in node.get("completions") or []]
                longest = [node["request"].get("max_tokens", 0)] * node["request"].get("n", 1)
                native = backend.capabilities.native_n
                p, c = usage.get("prompt_tokens", 0), usage.get("cached_prompt_tokens", 0)
                extra_flops += compute.call(p, longest, not native, c)["flops"] - compute.call(p, lengths, not native, c)["flops"]
        worst = dict(pool)
        for kind in ("tokens", "completion_tokens", "uncached_tokens"):
            if kind in worst:
                worst[kind] += extra
        if "usd" in worst:
            worst["usd"] += extra * backend.prices()[1]
        if "flops" in worst:
            worst["flops"] += extra_flops if compute is not None else 2.0 * (backend.params or 0) * extra
        return cls(len(samples), fixed, dict(pool), worst)

    def at(self, k: int, *, worst_case: bool = False) -> dict[str, float]:
        """Expected (or worst-case) cost of a direct run at k: F + k·(pool − F)/N."""
        total = self.worst if worst_case else self.pool
        if k <= 0 or self.n == 0:
            return dict.fromkeys(total, 0.0)
        return {kind: self.fixed.get(kind, 0.0) + k * (value - self.fixed.get(kind, 0.0)) / self.n
                for kind, value in total.items()}

    def largest_k(self, kind: str, limit: float, *, worst_case: bool = False) -> int:
        """The largest k whose cost on ``kind`` fits ``limit`` (may exceed N: the caller caps)."""
        if worst_case:
            # The ledger still grants one sample with a shortened max_tokens when the prompt
            # fits: the same sample whenever its actual cost fits.
            return self._largest_k(kind, limit, self.worst) or min(1, self._largest_k(kind, limit, self.pool))
        return self._largest_k(kind, limit, self.pool)

    def _largest_k(self, kind: str, limit: float, costs: dict[str, float]) -> int:
        total = costs.get(kind, 0.0)
        fixed = self.fixed.get(kind, 0.0)
        if self.n == 0:
            return 0
        unit = (total - fixed) / self.n
        if unit <= 0:
            if total <= 0:
                raise ConfigError(f"cannot sweep {kind} budgets: the backend reports no {kind} usage")
            return self.n if limit >= fixed else 0  # nothing grows with k (cannot happen for tokens)
        if limit < fixed + unit:
            return 0
        # a small tolerance: k·unit rebuilt from floats must not lose the last candidate
        return int((limit - fixed) / unit + 1e-9)


class Sweep:
    def __init__(self, config: SweepConfig, backend: Backend, *, progress: Any | None = None, ray: Any = None) -> None:
        from reasoning.strategies.registry import get, options_of

        self.config = config
        self.backend = backend
        self.progress = progress
        self.ray = ray  # distributed.RayOptions: fill the jobs on Ray workers
        self.out = Path(config.out)
        self.compute: ComputeModel | None = None
        self.strategies: dict[str, Strategy] = {}
        # The option an n point sets, per strategy (None: the strategy has no sample count).
        self.size_option: dict[str, str | None] = {}
        for spec in config.strategies:
            option = spec.n_option or get(spec.name).size_option
            self.size_option[spec.key] = option if option in options_of(get(spec.name)) else None
            self.strategies[spec.key] = self._create(spec)

    def _create(self, spec: StrategySpec, **overrides: Any) -> Strategy:
        from reasoning.strategies import create
        from reasoning.verifiers import make_verifier

        options = {**spec.options, **overrides}
        if isinstance(options.get("verifier"), str):  # a verifier by name, as on the command line
            options["verifier"] = make_verifier(options["verifier"])
        if isinstance(options.get("memory"), str) and not Path(options["memory"]).is_absolute():
            # a memory that grows over the run (cheatsheet, sleep-time's notes) lives with the
            # sweep's rows, so a resume elsewhere (another machine, another working directory)
            # continues it instead of starting an empty one
            options["memory"] = str(self.out / options["memory"])
        return create(spec.name, **options)

    # -- setup ---------------------------------------------------------------------
    def reusing(self, key: str) -> bool:
        strategy = self.strategies[key]
        return self.config.reuse and isinstance(strategy, SampleReuse) and strategy.reusable

    def pool_size(self, key: str) -> int:
        c = self.config
        if c.n:
            return int(max(p["n"] for p in c.points(key)))
        if c.pool:
            return c.pool
        # Enough candidates for the largest budget at a quarter of max_tokens each, at most 64.
        kind, top = c.budget_kind, max(c.budget_grid[c.budget_kind])
        if kind in ("tokens", "completion_tokens", "uncached_tokens"):
            return int(min(64, max(1, math.ceil(top / (c.max_tokens / 4)))))
        if kind == "calls":
            return int(min(64, top))
        return 64

    def strategy_for(self, key: str, point: dict[str, float]) -> Strategy:
        spec = next(s for s in self.config.strategies if s.key == key)
        option = self.size_option[key]
        if option is None:
            return self.strategies[key]
        if "n" not in point and option in spec.options:
            return self.strategies[key]  # on a budget grid an explicit option wins over max_n
        value = int(point["n"]) if "n" in point else self.config.max_n
        return self._create(spec, **{option: value})

    def _check_identity(self) -> None:
        """A resumed sweep must mean the same thing: same backend and sampling."""
        check_resume(self.out, self.config, ("backend", "max_tokens", "temperature", "reuse", "subsets", "seed", "budget_mode"), "sweep")

    async def _load_compute(self) -> None:
        model_path = getattr(self.backend, "model_path", None)  # local and vLLM backends know their folder
        model_dir = model_path() if callable(model_path) else None
        if model_dir and (Path(model_dir) / "config.json").is_file():
            self.compute = ComputeModel(ModelShape.from_dir(model_dir, self.backend.params), self.config.intensity,
                                        self.config.extended_intensity, self.config.decode_batch)

    def _check_budget_kind(self) -> None:
        """A budget the backend cannot measure would be silently unlimited (or divide by zero)."""
        kind = self.config.budget_kind
        if kind == "usd" and self.backend.prices() == (0.0, 0.0):
            raise ConfigError(f"cannot sweep usd budgets on {self.backend.name}: it has no prices (a local model costs $0)")
        if kind == "flops" and not self.backend.params and self.compute is None:
            raise ConfigError(f"cannot sweep flops budgets on {self.backend.name}: its parameter count is unknown")

    # -- run -----------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        self._check_identity()
        unpack(self.out / "problems.jsonl")  # a stored, compressed folder resumes as a plain one
        done = read_done_rows(self.out / "problems.jsonl")
        items = {name: load_items(name, self.config.limit) for name in self.config.datasets}
        jobs = self._jobs(items, done)
        total_units = sum(len(points) for _, _, points, _ in jobs)
        task = self.progress.add_task("sweep", total=total_units) if self.progress else None
        started = time.monotonic()
        cluster = workers = None
        if self.ray is not None and self.config.concurrency_scope != "sweep":
            raise ConfigError("concurrency_scope: strategy is not supported with --ray (each worker has its own gate)")
        if self.ray is not None and jobs:  # the workers load the model; the model's shape comes from one
            cluster, workers = await self._ray_workers()
        elif self.ray is None:
            if jobs:
                await self.backend.load()
            await self._load_compute()
        writer = _Appender(self.out / "problems.jsonl")
        gates: dict[str, asyncio.Semaphore] = {}

        def gate(key: str) -> asyncio.Semaphore:  # FIFO: jobs start in the order they were listed
            scope = key if self.config.concurrency_scope == "strategy" else ""
            return gates.setdefault(scope, asyncio.Semaphore(self.config.concurrency))

        def write(rows: list[dict[str, Any]], points: list[dict[str, float]]) -> None:
            for row in rows:
                writer.write(row)
                done.add(row_key(row))
            if task is not None:
                self.progress.advance(task, len(points))

        async def one(dataset: str, key: str, points: list[dict[str, float]], item: Item) -> None:
            async with gate(key):
                rows = await self.solve_job(dataset, key, points, item)
            write(rows, points)

        async def returned(job: tuple, rows: list[dict[str, Any]]) -> None:
            write(rows, job[2])

        try:
            self._check_budget_kind()
            if cluster is None:
                await gather_all(one(*job) for job in jobs)
            else:
                from .distributed import dispatch

                await dispatch(cluster, workers, "run_job", jobs, self.config.concurrency, returned)
        finally:
            writer.close()
            if cluster is not None:
                cluster.close()
        report = self.summarise(items, time.monotonic() - started)
        return report

    async def solve_job(self, dataset: str, key: str, points: list[dict[str, float]], item: Item) -> list[dict[str, Any]]:
        """The rows of one job: a pooled strategy's every point, or a direct one's one point."""
        if self.reusing(key):
            return await self._pooled(dataset, key, points, item)
        return [await self._direct(dataset, key, points[0], item)]

    async def _ray_workers(self) -> tuple[Any, list[Any]]:
        """The Ray cluster and its ``distributed.SweepWorker`` actors, ``concurrency`` jobs at a time each."""
        from .distributed import RayCluster, SweepWorker, gpus_per_worker

        cluster = RayCluster(self.ray.address)
        try:
            gpus = gpus_per_worker(self.ray.generator, getattr(self.backend, "inner", self.backend))
            count = self.ray.workers or cluster.default_workers(gpus)
            cache = str(Path(self.config.cache or self.out / "generations.sqlite").resolve())
            workers = cluster.workers(SweepWorker, count, self.config.concurrency, gpus, self.config,
                                      self.ray.generator, cache)
            self.compute = await cluster.aget(workers[0].compute.remote())  # Ctrl-C need not wait for the load
        except BaseException:
            cluster.close()
            raise
        return cluster, workers

    def _jobs(self, items: dict[str, list[Item]], done: set[tuple]) -> list[tuple[str, str, list[dict], Item]]:
        """Units of work not finished yet: one per (problem, pooled strategy) covering all its
        points, one per (problem, direct strategy, point)."""
        jobs = []
        for dataset, dataset_items in items.items():
            for key in self.strategies:
                points = self.config.points(key)
                if self.config.n and not self.reusing(key) and self.size_option[key] is None:
                    points = points[:1]  # n would not change it: one run, at its own settings
                for item in dataset_items:
                    todo = [p for p in points if (dataset, key, point_key(p), item.id) not in done]
                    if not todo:
                        continue
                    if self.reusing(key):
                        jobs.append((dataset, key, points, item))  # one pool serves every point
                    else:
                        jobs.extend((dataset, key, [p], item) for p in todo)
        return jobs

    async def _solve(self, strategy: Strategy, item: Item, budget: Budget | None):
        with cache_scope():  # repeated asks within this problem get new samples, a new problem starts over
            return await asolve(
                Problem(item.problem, item.id, item.metadata), strategy, self.backend, budget,
                sampling=Sampling(max_tokens=self.config.max_tokens, temperature=self.config.temperature),
                **solve_options(item.kind),
            )

    def _costs(self, result) -> dict[str, float]:
        usage: Usage = result.usage
        costs = {
            "tokens": float(usage.tokens),
            "completion_tokens": float(usage.completion_tokens),
            "uncached_tokens": float(usage.uncached_tokens),
            "usd": usage.usd,
            "calls": float(usage.calls),
        }  # no seconds: wall time depends on load and on the cache, not on the method
        if self.compute is not None:
            native = self.backend.capabilities.native_n
            costs.update(self.compute.of_trace(result.trace.to_list(), native))  # flops, eflops, eflops_extended
        else:
            costs["flops"] = usage.flops  # 2 x params x tokens when the backend knows params
        return costs

    async def _direct(self, dataset: str, key: str, point: dict[str, float], item: Item) -> dict[str, Any]:
        budget = None if "n" in point else Budget(**{k: v for k, v in point.items()})
        result = await self._solve(self.strategy_for(key, point), item, budget)
        correct, _ = await grade_item(item, result.answer, [])
        return {
            "dataset": dataset, "strategy": key, "point": point_key(point), "id": item.id,
            "correct": float(bool(correct)), "answer": result.answer, "mode": "direct",
            "cost": self._costs(result), "n": None, "stopped_by": result.stopped_by,
            "info": _scalars(result.info),  # e.g. route / fallback / stop reason, for analysis
        }

    async def _pooled(self, dataset: str, key: str, points: list[dict[str, float]], item: Item) -> list[dict[str, Any]]:
        strategy = self.strategies[key]
        size = self.pool_size(key)
        result = await self._solve(_DrawPool(strategy, size), item, None)
        samples: list[Sample] = _pool_samples(result)
        pool_cost = self._costs(result)
        verdicts: dict[str | None, bool] = {}

        async def correct(answer: str | None) -> bool:
            if answer not in verdicts:
                verdicts[answer] = bool((await grade_item(item, answer, []))[0]) if answer is not None else False
            return verdicts[answer]

        for sample in samples:  # grade each distinct answer once, for coverage and choices
            await correct(sample.answer)
        rng = random.Random(f"{self.config.seed}:{dataset}:{key}:{item.id}")
        chosen: dict[int, float] = {}

        def accuracy_at(k: int) -> float:
            if k not in chosen:
                if k < 1 or not samples:
                    chosen[k] = 0.0
                else:
                    chosen[k] = subset_mean(
                        samples, k, lambda subset: float(verdicts.get(strategy.choose(subset).answer, False)),
                        draws=self.config.subsets, rng=rng,
                    )
            return chosen[k]

        # choose() may return an answer no single sample wrote verbatim (never for our
        # strategies), so grade whatever the full pool chooses too.
        if samples:
            await correct(strategy.choose(samples).answer)
        n_pool = len(samples)
        costs = PoolCost.of(result, samples, pool_cost, self.backend, self.compute)
        worst = self.config.budget_mode == "worst-case"
        rows = []
        for point in points:
            capped = False
            if "n" in point:
                k = min(int(point["n"]), n_pool)
                capped = int(point["n"]) > n_pool
            else:
                ((kind, limit),) = point.items()
                affordable = costs.largest_k(kind, limit, worst_case=worst)
                k = min(affordable, n_pool)
                capped = n_pool > 0 and affordable > n_pool
            rows.append({
                "dataset": dataset, "strategy": key, "point": point_key(point), "id": item.id,
                "correct": accuracy_at(k), "mode": "reuse", "n": k, "pool": n_pool, "capped": capped,
                "pool_correct": sum(verdicts.get(s.answer, False) for s in samples),
                "cost": costs.at(k),
                # what the point's cost is derived from, so tables can be re-derived exactly
                "pool_cost": pool_cost, "fixed_cost": costs.fixed,
            })
        return rows

    # -- summary -------------------------------------------------------------------
    def summarise(self, items: dict[str, list[Item]], wall: float) -> dict[str, Any]:
        return summarise_dir(self.out, self.config, items, wall)


SHORT_LIST = 16  # a row keeps a list of at most this many scalars (cheatsheet's retrieved ids, similarities)


def _scalars(info: dict[str, Any]) -> dict[str, Any]:
    """The JSON scalars of a strategy's Outcome.info, and its short lists of scalars (which
    entries a problem retrieved, with their similarities); drops samples, tallies, histories."""

    def scalar(v: Any) -> bool:
        return isinstance(v, (str, int, float, bool)) or v is None

    return {k: v for k, v in info.items()
            if scalar(v) or (isinstance(v, (list, tuple)) and len(v) <= SHORT_LIST and all(map(scalar, v)))}


def _pool_samples(result) -> list[Sample]:
    """The candidates of a pool draw (with their scores), as ``_DrawPool`` handed them over."""
    return list(result.info.get("pool_samples") or [])


def row_key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return (row["dataset"], row["strategy"], row["point"], str(row["id"]))


def read_done_rows(path: Path) -> set[tuple]:
    # A pooled row without ``fixed_cost`` was charged k/N of its pool's prompt and call (before
    # direct-run accounting): it is redone, from the cache, when the sweep is resumed.
    return {row_key(row) for row in read_rows(path) if row.get("mode") != "reuse" or "fixed_cost" in row}


def summarise_dir(out: Path, config: SweepConfig, items: dict[str, list[Item]] | None = None, wall: float = 0.0) -> dict[str, Any]:
    """Aggregate ``problems.jsonl`` into ``sweep.jsonl`` and ``coverage.json``."""
    rows = read_rows(out / "problems.jsonl")
    latest: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        latest[row_key(row)] = row  # a re-run of a problem replaces the earlier row
    expected = {name: len(found) for name, found in items.items()} if items else {}
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in latest.values():
        cells.setdefault((row["dataset"], row["strategy"], row["point"]), []).append(row)
    order = {point_key(p): i for i, p in enumerate(sorted(
        {point_key(p): p for s in config.strategies for p in config.points(s.key)}.values(),
        key=lambda p: next(iter(p.values()))))}
    table = []
    for (dataset, strategy, point), members in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1], order.get(kv[0][2], 1e9))):
        values = [float(r["correct"]) for r in members]
        low, high = bootstrap_ci(values, resamples=config.bootstrap, seed=config.seed)
        kinds = sorted({k for r in members for k in r["cost"]})
        cost = {k: sum(r["cost"].get(k, 0.0) for r in members) / len(members) for k in kinds}
        ns = [r["n"] for r in members if r.get("n") is not None]
        table.append({
            "dataset": dataset, "strategy": strategy, "point": point,
            "budget": _point_value(point), "budget_kind": point.split("=")[0],
            "accuracy": sum(values) / len(values), "ci95": [low, high],
            "n_problems": len(members), "complete": len(members) >= expected.get(dataset, len(members)),
            "mode": members[0]["mode"], "mean_n": sum(ns) / len(ns) if ns else None,
            "capped": sum(bool(r.get("capped")) for r in members),
            "usage": cost,
        })
    _mark_saturation(table, config)
    with (out / "sweep.jsonl").open("w", encoding="utf-8") as handle:
        for row in table:
            handle.write(json.dumps(row) + "\n")
    coverage = _coverage(latest.values(), config) if config.coverage else {}
    (out / "coverage.json").write_text(json.dumps(coverage, indent=2))
    ttspm = _ttspm(table, config)
    if config.n:
        (out / "ttspm.json").write_text(json.dumps(ttspm, indent=2))
    summary = {"cells": table, "coverage": coverage, "ttspm": ttspm, "wall_seconds": wall, "out": str(out)}
    return summary


def _point_value(point: str) -> float:
    return float(point.split("=", 1)[1])


def x_value(row: dict[str, Any], axis: str) -> float:
    """The x coordinate of a sweep row: mean compute per problem on ``axis``."""
    if axis == "n":
        return row["mean_n"] if row["mean_n"] is not None else row["budget"]
    return row["usage"].get(axis, 0.0)


def _curves(table: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The table's rows per (dataset, strategy), in table order."""
    curves: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in table:
        curves.setdefault((row["dataset"], row["strategy"]), []).append(row)
    return curves


def _mark_saturation(table: list[dict[str, Any]], config: SweepConfig) -> None:
    """The empirical rule, per curve: ``gain_per_doubling`` from each point to the next (on
    ``x_axis``) and ``saturation_point`` on the first point from which every further doubling
    gains less than ``saturation_threshold``. Not TTSPM's N* (``_ttspm``)."""
    for members in _curves(table).values():
        xs = [x_value(r, config.x_axis) for r in members]
        usable = [i for i, x in enumerate(xs) if x > 0]
        for row in members:
            row["gain_per_doubling"], row["saturation_point"] = None, False
        if len(usable) < MIN_FIT_POINTS:  # "saturated" from two points would be a guess
            continue
        gains, point = saturation([xs[i] for i in usable], [members[i]["accuracy"] for i in usable], config.saturation_threshold)
        for position, index in enumerate(usable):
            members[index]["gain_per_doubling"] = gains[position]
        if point is not None:
            members[usable[point]]["saturation_point"] = True


def _ttspm(table: list[dict[str, Any]], config: SweepConfig) -> dict[str, Any]:
    """Per (dataset, strategy) of an n grid: the TTSPM fit of accuracy vs the sample count
    (a pooled point's mean k), with N* for ``ttspm_epsilon``; None for a curve with fewer than
    three sample counts (a strategy that runs once, at its own settings)."""
    if not config.n:
        return {}
    found: dict[str, Any] = {}
    for (dataset, strategy), members in sorted(_curves(table).items()):
        ns = [r["mean_n"] if r["mean_n"] is not None else r["budget"] for r in members]
        fit = fit_ttspm(ns, [r["accuracy"] for r in members], config.ttspm_epsilon)
        found.setdefault(dataset, {})[strategy] = fit.to_dict() if fit else None
    return found


def format_ttspm(fit: dict[str, float] | None) -> str:
    if not fit:
        return f"no TTSPM fit: fewer than {MIN_POINTS} sample counts"
    return (f"TTSPM F(N) = {fit['f_max']:.3f}·(1 − (1 − {fit['p']:.3f})^N)  (R² = {fit['r2']:.3f}); "
            f"N* = {fit['n_star']} (next sample gains < {fit['epsilon']:g})")


def _coverage(rows, config: SweepConfig) -> dict[str, Any]:
    """Per (dataset, pooled strategy): coverage@k for k = 1..N and its power-law fit."""
    pools: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
    for row in rows:
        if row.get("mode") == "reuse" and row.get("pool"):
            pools.setdefault((row["dataset"], row["strategy"]), {})[str(row["id"])] = (row["pool"], row["pool_correct"])
    found: dict[str, Any] = {}
    for (dataset, strategy), per_problem in sorted(pools.items()):
        top = max(n for n, _ in per_problem.values())
        ks = list(range(1, top + 1))
        curve = coverage_curve(list(per_problem.values()), ks)
        fit = fit_coverage(ks, curve)
        found.setdefault(dataset, {})[strategy] = {
            "k": ks, "coverage": curve, "problems": len(per_problem),
            "fit": fit.to_dict() if fit else None,
        }
    return found


def format_fit(fit: dict[str, float] | None) -> str:
    if not fit:
        return f"no fit: too few points (fewer than {MIN_FIT_POINTS} strictly between 0 and 1)"
    return f"coverage(k) ≈ exp({fit['a']:.3f} · k^{fit['b']:.3f})  (R² = {fit['r2']:.3f} over {fit['points']} points)"

