"""``reasoning-bench run --ray`` and ``sweep --ray``: problems spread over Ray workers.

What runs where:

- **Workers** (``SolveWorker``, ``SweepWorker``: one Ray actor each, ``--ray-workers`` of them)
  build their backends from the same specs the command line gave (``BackendSpec``), once, and
  solve problems as the driver hands them over, ``--concurrency`` at a time each. An in-process
  vLLM engine per worker (one GPU each, or ``tensor_parallel_size x pipeline_parallel_size x
  data_parallel_size`` GPUs) is data parallelism across GPUs and nodes; HTTP backends share their
  endpoints.
- **The run budget** lives in one ledger actor (``LedgerService``), placed on the driver's
  node: it holds the run ledger and its ``journal.jsonl`` exactly as a local run does. A worker's
  problem ledgers hang under a local root whose ``upstream`` is that actor
  (``reasoning.budget.Upstream``): every reservation fits the problem's limits locally, then is
  granted (maybe smaller) or refused by the actor before the call; commits and releases follow
  the call. Per-problem limits never leave the worker.
- **Results** come back to the driver, which grades them and writes ``results.jsonl`` /
  ``traces.jsonl`` (or the sweep's ``problems.jsonl``) with the local run's own writer, so an
  interrupted distributed run resumes like a local one, locally or on Ray.

A worker that dies (its process killed, its node lost) loses nothing finished: the driver wrote
every result it received, and re-queues the problems that were on the dead worker (Ray restarts
the actor, up to ``MAX_RESTARTS`` times; a problem is tried at most ``MAX_ATTEMPTS`` times). The
dead worker's reservations were never committed nor released, so the ledger actor keeps them
held, charged at their worst case like the calls the local journal finds in flight after a kill
-9: it cannot prove them unused. Its committed calls stay charged; nothing is counted twice in
the results, since a problem's row is written once, from the attempt that finished.

Ray is an optional extra (``pip install 'reasoning-tts[ray]'``), imported only here and only
with ``--ray``. Every node needs the same version of this package installed.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasoning import Budget, Ledger, Problem, Usage
from reasoning.backends.base import Backend
from reasoning.budget import CallShape, Reservation
from reasoning.errors import BudgetExhausted, ConfigError

# A worker actor Ray restarts after its process died, and the tries one problem gets.
MAX_RESTARTS = 3
MAX_ATTEMPTS = 3
REST_S = 1.0  # how long a worker that died gets no jobs (Ray restarts it meanwhile)
INSTALL_HINT = "--ray needs Ray: pip install 'reasoning-tts[ray]'"


@dataclass(frozen=True)
class BackendSpec:
    """How to build a backend anywhere: what ``--backend`` (or ``--role``) said, plus options."""

    spec: str
    api_base: str | None = None
    api_key: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Backend:
        from reasoning.backends import from_spec

        return from_spec(self.spec, api_base=self.api_base, api_key=self.api_key, **self.options)


@dataclass(frozen=True)
class RayOptions:
    """``--ray [ADDRESS]`` and ``--ray-workers``: where and on how many workers to solve."""

    address: str | None = None  # None: this process's Ray, else a new local cluster
    workers: int | None = None  # None: one per GPU (vLLM on GPUs) or per CPU of the cluster
    generator: BackendSpec | None = None
    roles: dict[str, BackendSpec] = field(default_factory=dict)


# -- the ledger actor --------------------------------------------------------------------
class LedgerService:
    """The run ledger of a distributed run (the body of the ledger actor; also usable in one
    process). Each reservation is numbered and remembered with its owner (the worker that asked)
    until it is committed or released; ``totals`` reports what is held."""

    def __init__(self, run_budget: str = "", journal_path: str | None = None, charged: dict | None = None) -> None:
        from .run import RunJournal

        self.journal = RunJournal(Path(journal_path)) if journal_path else None
        self.ledger = Ledger(Budget.parse(run_budget), label="run:", journal=self.journal)
        carried = Usage.from_dict(charged or {})
        self.ledger.used.add(carried)  # earlier attempts spent this already
        if self.journal is not None:
            self.journal.start(carried)
        self.open: dict[int, tuple[Reservation, str]] = {}
        self._ids = itertools.count(1)
        self.reserves = 0

    def seconds_left(self) -> float:
        return self.ledger.seconds_left()

    def reserve(self, shape: CallShape, n: int, max_tokens: int, min_tokens: int,
                owner: str = "") -> tuple[int | None, int, int, str | None]:
        """``(number, n, max_tokens, shrunk_by)`` of what was granted, or ``(None, 0, 0, limit)``."""
        self.reserves += 1
        try:
            reservation = self.ledger.reserve(shape, n, max_tokens, min_tokens)
        except BudgetExhausted as refused:
            return None, 0, 0, refused.limit
        number = next(self._ids)
        self.open[number] = (reservation, owner)
        return number, reservation.n, reservation.max_tokens, reservation.shrunk_by

    def commit(self, number: int, charged: Usage) -> None:
        reservation, _ = self.open.pop(number)
        self.ledger.commit(reservation, charged)

    def release(self, number: int) -> None:
        reservation, _ = self.open.pop(number)
        self.ledger.release(reservation)

    def ping(self) -> bool:
        """Answered after every call the same caller sent before (a barrier)."""
        return True

    def owners(self) -> list[str]:
        """The workers holding open reservations now (calls in flight), one entry per reservation."""
        return [owner for _, owner in self.open.values()]

    def totals(self) -> dict[str, Any]:
        """What the run ledger charged (used) and holds (reserved, calls in flight or lost)."""
        return {"used": self.ledger.used.to_dict(), "reserved": self.ledger.reserved.to_dict(),
                "open": len(self.open), "reserves": self.reserves}

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


def _granted(answer: tuple[int | None, int, int, str | None]) -> tuple[int, int, int, str | None]:
    number, n, max_tokens, why = answer
    if number is None:
        raise BudgetExhausted(why or "run")
    return number, n, max_tokens, why


class ServiceUpstream:
    """``reasoning.budget.Upstream`` over a ``LedgerService`` in this process (tests, one machine)."""

    def __init__(self, service: LedgerService, owner: str = "") -> None:
        self.service, self.owner = service, owner

    def reserve(self, shape: CallShape, n: int, max_tokens: int, min_tokens: int) -> tuple[int, int, int, str | None]:
        return _granted(self.service.reserve(shape, n, max_tokens, min_tokens, self.owner))

    def commit(self, handle: object, charged: Usage) -> None:
        self.service.commit(handle, charged)

    def release(self, handle: object) -> None:
        self.service.release(handle)


class ActorUpstream:
    """``reasoning.budget.Upstream`` over the ledger actor. A reservation waits for the actor's
    answer (one round trip, blocking this process's event loop for it); commits and releases
    are sent without waiting: Ray runs one caller's calls to an actor in order, and
    ``barrier()`` waits until all sent so far are done."""

    def __init__(self, actor: Any, owner: str) -> None:
        self.actor, self.owner = actor, owner

    def reserve(self, shape: CallShape, n: int, max_tokens: int, min_tokens: int) -> tuple[int, int, int, str | None]:
        import ray

        return _granted(ray.get(self.actor.reserve.remote(shape, n, max_tokens, min_tokens, self.owner)))

    def commit(self, handle: object, charged: Usage) -> None:
        self.actor.commit.remote(handle, charged)

    def release(self, handle: object) -> None:
        self.actor.release.remote(handle)

    def barrier(self) -> None:
        import ray

        ray.get(self.actor.ping.remote())


def worker_root(run_budget: str, upstream: Any, seconds_left: float) -> Ledger:
    """A worker's root ledger: the run's limits (its own usage can only be less than the run's,
    so these checks never refuse what the actor would grant), answering to ``upstream``, with the
    run's deadline (``seconds_left`` as the actor saw it)."""
    budget = Budget.parse(run_budget).model_copy(update={"seconds": None})
    root = Ledger(budget, label="run:", upstream=upstream)
    if math.isfinite(seconds_left):
        root.deadline = time.monotonic() + max(0.0, seconds_left)
    return root


# -- workers ---------------------------------------------------------------------------
def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class SolveWorker:
    """One worker of ``run --ray`` (the body of its actor): its backends, built once from their
    specs, and a root ledger answering to the ledger actor. ``solve`` is called from Ray's
    threads (the actor's ``max_concurrency``); every problem runs on the one background event
    loop of this process (``reasoning.solve.run_sync``), where an in-process engine lives."""

    def __init__(self, generator: BackendSpec, roles: dict[str, BackendSpec], strategy: Any, budget: str,
                 run_budget: str, sampling: Any, ledger: Any) -> None:
        from reasoning.solve import run_sync

        self.backend = generator.build()
        self.roles = {name: spec.build() for name, spec in roles.items()}
        self.strategy, self.budget, self.sampling = strategy, Budget.parse(budget), sampling
        self.upstream = ActorUpstream(ledger, _owner())
        import ray

        seconds = ray.get(ledger.seconds_left.remote())
        self.root = worker_root(run_budget, self.upstream, seconds)
        for each in dict.fromkeys([self.backend, *self.roles.values()]):
            run_sync(each.load())  # before any problem: a load must not eat a seconds budget

    def pid(self) -> int:
        return os.getpid()

    def check_budget(self, items: list[Any], floor: int) -> None:
        """``check_budget_fits_a_prompt`` with this worker's backend (it counts prompts exactly)."""
        from .run import check_budget_fits_a_prompt

        check_budget_fits_a_prompt(items, self.backend, self.budget, floor)

    def solve(self, item: Any) -> Any:
        """Solve one dataset item; returns its ``Result`` once the ledger actor has every commit."""
        from reasoning import asolve
        from reasoning.solve import run_sync

        from .run import solve_options

        result = run_sync(asolve(Problem(item.problem, item.id, item.metadata), self.strategy, self.backend,
                                 self.budget, run_ledger=self.root, sampling=self.sampling,
                                 backends=self.roles or None, **solve_options(item.kind)))
        self.upstream.barrier()
        return result

    def close(self) -> None:
        from reasoning.solve import run_sync

        for each in dict.fromkeys([self.backend, *self.roles.values()]):
            run_sync(each.aclose())


class SweepWorker:
    """One worker of ``sweep --ray``: the sweep's backend behind the generation cache at the
    driver's cache path (one shared SQLite file on one machine or a shared filesystem; a per-node
    path otherwise: then each node caches alone), and a ``Sweep`` that fills one job at a time."""

    def __init__(self, config: Any, generator: BackendSpec, cache: str) -> None:
        from reasoning.backends.cache import CachedBackend
        from reasoning.solve import run_sync

        from .sweep import Sweep

        self.backend = CachedBackend(generator.build(), cache)
        self.sweep = Sweep(config, self.backend)
        run_sync(self.backend.load())
        run_sync(self.sweep._load_compute())

    def compute(self) -> Any:
        """The model's FLOPs model as this worker loaded it (None when its shape is unknown)."""
        return self.sweep.compute

    def run_job(self, dataset: str, key: str, points: list[dict[str, float]], item: Any) -> list[dict[str, Any]]:
        from reasoning.solve import run_sync

        return run_sync(self.sweep.solve_job(dataset, key, points, item))

    def close(self) -> None:
        from reasoning.solve import run_sync

        run_sync(self.backend.aclose())


# -- the driver --------------------------------------------------------------------------
def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


class RayCluster:
    """Connects to Ray (``address``: an existing cluster; None: the Ray this process already
    joined, else a new local one, shut down again at ``close``) and starts actors on it."""

    def __init__(self, address: str | None) -> None:
        ray = _ray()
        self.started = False
        if not ray.is_initialized():
            try:
                ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as failed:
                raise ConfigError(f"--ray {address or ''}: cannot start or join a Ray cluster: {failed}") from None
            self.started = address is None
        self.ray = ray
        self.actors: list[Any] = []

    def default_workers(self, gpus_per_worker: int) -> int:
        resources = self.ray.cluster_resources()
        if gpus_per_worker and resources.get("GPU", 0) >= gpus_per_worker:
            return int(resources["GPU"] // gpus_per_worker)
        return max(1, int(resources.get("CPU", 1)))

    def ledger(self, run_budget: str, journal_path: str | None, charged: Usage) -> Any:
        """The ledger actor, on this (the driver's) node, where the run folder and its journal are."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = self.ray.get_runtime_context().get_node_id()
        # Named: workers find it by its name, and so can tools looking at a run from outside
        # (ray.get_actor(name).totals.remote()).
        name = f"reasoning-ledger-{uuid.uuid4().hex[:12]}"
        actor_class = self.ray.remote(LedgerService).options(
            name=name, num_cpus=0, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
        actor = actor_class.remote(run_budget, journal_path, charged.to_dict())
        self.actors.append(actor)
        return NamedActor(name, actor)

    def workers(self, cls: type, count: int, concurrency: int, gpus: int, *args: Any) -> list[Any]:
        """``count`` actors of ``cls(*args)``, ``concurrency`` calls at once each (threads), one CPU
        (and ``gpus`` GPUs) each, restarted by Ray when their process dies."""
        actor_class = self.ray.remote(cls).options(num_cpus=1, num_gpus=gpus, max_restarts=MAX_RESTARTS,
                                                   max_concurrency=concurrency)
        # Small arguments travel inside the actor's creation (a restart reuses them); the ledger
        # goes by name (NamedActor), as Ray cannot promise to restart an actor given a handle.
        made = [actor_class.remote(*args) for _ in range(count)]
        self.actors.extend(made)
        return made

    def get(self, ref: Any) -> Any:
        """``ray.get`` that raises a worker's own error (ConfigError, BackendError...) as itself."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as failed:
            raise _cause(failed) from None

    async def aget(self, refs: Any) -> Any:
        """``get`` awaited on the event loop instead of blocking it, so an interrupt (Ctrl-C:
        asyncio cancels the run's task) ends the wait at once, not after a worker's model load."""
        many = isinstance(refs, list)
        futures = [asyncio.wrap_future(ref.future()) for ref in (refs if many else [refs])]
        try:
            values = await asyncio.gather(*futures)
        except self.ray.exceptions.RayTaskError as failed:
            raise _cause(failed) from None
        return values if many else values[0]

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors.clear()
        if self.started:
            self.ray.shutdown()


class NamedActor:
    """A named actor's handle that travels by its name: a worker looks the actor up where it runs.
    (Ray warns that a restartable actor given a handle in its arguments may fail to restart.)"""

    def __init__(self, name: str, handle: Any = None) -> None:
        self.name, self._handle = name, handle

    def __getstate__(self) -> dict[str, str]:
        return {"name": self.name}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.name, self._handle = state["name"], None

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        if self._handle is None:
            import ray

            self._handle = ray.get_actor(self.name)
        return getattr(self._handle, attribute)


def _cause(failed: BaseException) -> BaseException:
    cause = getattr(failed, "cause", None)
    return cause if isinstance(cause, BaseException) else failed


def gpus_per_worker(spec: BackendSpec, backend: Backend) -> int:
    """GPUs one worker's in-process vLLM engine takes (TP x PP x DP); 0 for other backends."""
    options = getattr(backend, "engine_options", None)
    if spec.spec.partition(":")[0] != "vllm" or not isinstance(options, dict):
        return 0
    return int(options.get("tensor_parallel_size") or 1) * int(options.get("pipeline_parallel_size") or 1) * int(
        options.get("data_parallel_size") or 1)


async def dispatch(cluster: RayCluster, workers: list[Any], method: str, jobs: Iterable[tuple],
                   concurrency: int, on_done: Callable[[tuple, Any], Awaitable[None]]) -> None:
    """Hand ``jobs`` (argument tuples of ``method``) to ``workers``, ``concurrency`` in flight on
    each; ``on_done(job, value)`` as each finishes. A job whose worker died goes back in the queue
    and that worker rests ``REST_S`` while Ray restarts it (the others take the jobs meanwhile); a
    job lost with its worker ``MAX_ATTEMPTS`` times raises. A job that raised raises here, as its
    own error."""
    ray = cluster.ray
    # The worker is being restarted: the job did not run, or its result was lost with the worker.
    restarting = tuple(getattr(ray.exceptions, name) for name in ("ActorUnavailableError",) if hasattr(ray.exceptions, name))
    # The worker's process died while it had the job (the job ran, maybe partly).
    died = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError)
    queue = deque(jobs)
    attempts: dict[int, int] = {}
    free = {index: concurrency for index in range(len(workers))}
    resting: dict[int, float] = {}  # worker -> when it may have jobs again
    running: dict[asyncio.Future, tuple[tuple, int]] = {}
    try:
        while queue or running:
            now = time.monotonic()
            ready = [i for i in free if free[i] and resting.get(i, 0.0) <= now]
            while queue and ready:  # one at a time, round robin
                for index in list(ready):
                    if not queue:
                        break
                    job = queue.popleft()
                    ref = getattr(workers[index], method).remote(*job)
                    running[asyncio.wrap_future(ref.future())] = (job, index)
                    free[index] -= 1
                    if not free[index]:
                        ready.remove(index)
            waking = [t - now for t in resting.values() if t > now]
            if not running:
                await asyncio.sleep(min(waking, default=REST_S))
                continue
            finished, _ = await asyncio.wait(running, timeout=min(waking, default=None),
                                             return_when=asyncio.FIRST_COMPLETED)
            for future in finished:
                job, index = running.pop(future)
                free[index] += 1
                try:
                    value = future.result()
                except restarting + died as lost:
                    resting[index] = time.monotonic() + REST_S
                    if not isinstance(lost, restarting):
                        attempts[id(job)] = attempts.get(id(job), 0) + 1
                        if attempts[id(job)] >= MAX_ATTEMPTS:
                            raise
                    queue.appendleft(job)
                    continue
                except ray.exceptions.RayTaskError as failed:
                    raise _cause(failed) from None
                await on_done(job, value)
    finally:
        for future in running:
            future.cancel()
