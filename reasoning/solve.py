"""Entry points: ``asolve`` (async, primary), ``asolve_many``, and their sync facades."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, field_serializer

from . import telemetry
from .backends.base import Backend
from .budget import Budget, Ledger, Usage
from .context import GENERATOR, Context, Extractor, Problem, Sampling, VoteKey
from .errors import ConfigError
from .strategy import Outcome, Strategy
from .trace import Trace
from .types import Message

T = TypeVar("T")
# How long past the deadline a strategy may take to wrap up (vote, pick) before it is
# cancelled outright; its calls are already cancelled at the deadline itself.
DEADLINE_GRACE_S = 0.5


class Result(BaseModel):
    """The outcome of one problem, with everything needed to audit it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    problem_id: str | None = None
    answer: str | None
    text: str | None = None
    usage: Usage
    stopped_by: str | None = None
    strategy: dict[str, Any]
    trace: Trace
    info: dict[str, Any] = {}
    # What each role's calls were charged ({"generator": ...} with a single backend).
    usage_by_role: dict[str, Usage] = {}
    # The problem ledger's reservations, commits, releases and refusals over time
    # (``Ledger.event_log``: seconds since the ledger started, kind, amounts in EVENT_FIELDS order).
    ledger_events: list[list[Any]] = []

    @field_serializer("usage_by_role")
    def _usage_by_role(self, usage: dict[str, Usage]) -> dict[str, dict[str, float]]:
        return {role: u.to_dict() for role, u in usage.items()}

    @field_serializer("usage")
    def _usage(self, usage: Usage) -> dict[str, float]:
        return usage.to_dict()

    @field_serializer("trace")
    def _trace(self, trace: Trace) -> list[dict[str, Any]]:
        return trace.to_list()


def _default_extractor() -> Extractor:
    from reasoning.answers import extract_answer

    return extract_answer


def require_prices(backend: Backend, *budgets: Budget | None) -> None:
    """Refuse a ``usd`` limit on a model whose price is unknown: it would be silently unlimited."""
    if not backend.priced and any(b is not None and b.usd is not None for b in budgets):
        raise ConfigError(
            f"a usd budget needs the model's price, and {backend.name} has none known (not in litellm's cost "
            "table): give one with --price PROMPT,COMPLETION (USD per token) or the backend's "
            "usd_per_token=(prompt, completion), or budget tokens instead"
        )


def problem_messages(problem: Problem, prompt: str = "solve_math") -> tuple[Message, ...]:
    from reasoning.prompts import load_prompt

    return load_prompt(prompt).render(problem=problem.text)


async def asolve(
    problem: str | Problem,
    strategy: Strategy,
    backend: Backend | None = None,
    budget: Budget | None = None,
    *,
    backends: Mapping[str, Backend] | None = None,
    run_ledger: Ledger | None = None,
    prompt: str = "solve_math",
    sampling: Sampling | None = None,
    extract: Extractor | None = None,
    vote_key: VoteKey | None = None,
) -> Result:
    """Solve one problem with ``strategy`` on ``backend`` within ``budget``.

    ``backends`` gives roles their own models (``{"generator": a, "verifier": b}``; with
    ``backend`` too, that one is the generator); every call is charged to the one ledger.
    ``run_ledger`` makes this problem's ledger a child of a run-wide one (``--run-budget``).
    Backend errors that retries could not fix propagate; budget limits never raise, they
    end the strategy early and show in ``result.stopped_by``. A ``usd`` limit on a backend
    with no known price raises ConfigError (see ``require_prices``).
    """
    roles = role_backends(backend, backends)
    for each in dict.fromkeys(roles.values()):
        require_prices(each, budget, *(ledger.budget for ledger in run_ledger.chain()) if run_ledger else ())
    if isinstance(problem, str):
        problem = Problem(problem)
    ledger = run_ledger.child(budget, events=True) if run_ledger else Ledger(budget, events=True)
    trace = Trace()
    ctx = Context(
        problem,
        roles,
        ledger,
        trace,
        messages=problem_messages(problem, prompt),
        extract=extract or _default_extractor(),
        sampling=sampling or Sampling(),
        vote_key=vote_key,
    )
    root = trace.add("span", strategy.name, None, info=strategy.describe())
    ctx.parent = root.id
    try:
        seconds = ledger.seconds_left()
        if seconds == float("inf"):
            outcome = await strategy.run(ctx)
        else:
            async with asyncio.timeout(seconds + DEADLINE_GRACE_S):
                outcome = await strategy.run(ctx)
    except TimeoutError:
        ledger.mark_deadline()
        outcome = Outcome(None, info={"error": "strategy did not finish by the deadline"})
    trace.close(root)
    result = Result(
        problem_id=problem.id,
        answer=outcome.answer,
        text=outcome.text,
        usage=ledger.usage(),
        stopped_by=ledger.stopped_by,
        strategy=strategy.describe(),
        trace=trace,
        info=outcome.info,
        usage_by_role=ctx.usage_by_role,
        ledger_events=ledger.event_log(),
    )
    if telemetry.active():  # OpenTelemetry export, from the finished trace (reasoning/telemetry.py)
        telemetry.record(result, budget=budget, run_budget=run_ledger.budget if run_ledger else None)
    return result


def role_backends(backend: Backend | None, backends: Mapping[str, Backend] | None) -> dict[str, Backend]:
    """The role -> backend map of a solve: ``backend`` is the generator unless ``backends`` names one."""
    roles = dict(backends or {})
    if backend is not None:
        if roles.get(GENERATOR, backend) is not backend:
            raise ConfigError("give the generator either as backend= or as backends['generator'], not both")
        roles[GENERATOR] = backend
    if GENERATOR not in roles:
        raise ConfigError(f"no backend: pass backend=... or backends={{'{GENERATOR}': ...}}")
    return roles


async def asolve_many(
    problems: Iterable[str | Problem],
    strategy: Strategy,
    backend: Backend | None,
    budget: Budget | None = None,
    *,
    run_budget: Budget | None = None,
    run_ledger: Ledger | None = None,
    concurrency: int = 16,
    on_result: Callable[[int, Result], Awaitable[None] | None] | None = None,
    **options: Any,
) -> list[Result | None]:
    """Solve problems concurrently (at most ``concurrency`` at once).

    ``run_budget`` caps the whole run: once it is spent, remaining problems return with
    ``stopped_by`` naming it. ``on_result(index, result)`` is called as each finishes.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    items = list(problems)
    run_ledger = run_ledger or Ledger(run_budget, label="run:")
    gate = asyncio.Semaphore(concurrency)
    results: list[Result | None] = [None] * len(items)

    async def one(index: int, problem: str | Problem) -> None:
        async with gate:
            result = await asolve(problem, strategy, backend, budget, run_ledger=run_ledger, **options)
        results[index] = result
        if on_result is not None:
            maybe = on_result(index, result)
            if asyncio.iscoroutine(maybe):
                await maybe

    tasks = [asyncio.create_task(one(i, p)) for i, p in enumerate(items)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return results


# -- sync facade ----------------------------------------------------------------
class _LoopThread:
    """One background event loop for all sync calls, so backends that hold loop-bound
    resources (HTTP pools, semaphores) keep working across calls, even from Jupyter."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def run(self, coro: Awaitable[T]) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="reasoning-loop", daemon=True).start()
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise


_RUNNER = _LoopThread()


def run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine from sync code on the framework's background loop."""
    return _RUNNER.run(coro)


def solve(problem: str | Problem, strategy: Strategy, backend: Backend | None = None, budget: Budget | None = None,
          **options: Any) -> Result:
    """Sync facade of ``asolve``."""
    return run_sync(asolve(problem, strategy, backend, budget, **options))


def solve_many(
    problems: Sequence[str | Problem], strategy: Strategy, backend: Backend | None = None, budget: Budget | None = None,
    **options: Any
) -> list[Result | None]:
    """Sync facade of ``asolve_many``."""
    return run_sync(asolve_many(problems, strategy, backend, budget, **options))
