"""What the HTTP server and the MCP server share: turn a request into a budgeted solve.

``ReasoningService.solve`` validates everything a caller can get wrong (strategy, n,
verifier, budget, upstream model) before any backend call, raising ``RequestRejected``
with an HTTP status and an OpenAI-style ``param``/``code``; then runs ``rz.asolve`` on the
shared backend for that upstream model. Requests run concurrently on one event loop; a
semaphore (``concurrency``) bounds how many solve at once, the rest wait their turn: the
wait counts against the request's ``seconds`` budget and is bounded by ``queue_timeout``
(past either, ``QueueTimeout``: HTTP 504).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from reasoning.backends import Backend, from_spec
from reasoning.budget import LIMITS, Budget
from reasoning.context import Sampling
from reasoning.errors import ConfigError
from reasoning.solve import Result, asolve

from .model_name import ModelName, parse_model_name

# Backends that talk to an API can serve any model name the provider knows.
ROUTABLE_KINDS = ("litellm", "openai")
DEFAULT_BUDGET_CAP = "tokens=200000,seconds=600"
DEFAULT_QUEUE_TIMEOUT = 60.0  # seconds a request may wait for a free slot (--queue-timeout)
DEFAULT_SAMPLING = Sampling()


class RequestRejected(ConfigError):
    """A request the server will not run; maps to ``status`` (a 4xx, or 504 for ``QueueTimeout``)
    with an OpenAI-style error body."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code


class QueueTimeout(RequestRejected):
    """The request waited for a free slot (``--concurrency``) until its ``seconds`` budget or
    the server's ``--queue-timeout`` ran out; nothing was run."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=504, code="queue_timeout")


def merge_budgets(*layers: Budget) -> Budget:
    """Later layers override earlier ones limit by limit."""
    merged: dict[str, float] = {}
    for layer in layers:
        merged.update(layer.limits())
    return Budget(**merged)


def over_cap(budget: Budget, cap: Budget) -> list[str]:
    """The limits of ``budget`` that are missing or larger than ``cap`` allows."""
    return [
        f"{name}={getattr(budget, name)} > cap {limit:g}" if getattr(budget, name) is not None else f"{name} unlimited"
        for name, limit in cap.limits().items()
        if getattr(budget, name) is None or getattr(budget, name) > limit
    ]


def budget_from_request(raw: dict[str, Any] | str | None) -> Budget:
    if raw is None:
        return Budget()
    if isinstance(raw, str):
        return Budget.parse(raw)
    try:
        return Budget(**raw)
    except (TypeError, ValidationError) as bad:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in getattr(bad, "errors", list)())
        raise RequestRejected(
            f"bad budget {raw!r}: {detail or bad}; known limits: {', '.join(LIMITS)}", param="budget", code="invalid_budget"
        ) from None


class BackendPool:
    """One shared backend per upstream model, built on first use and kept."""

    def __init__(self, spec: str, *, api_base: str | None = None, api_key: str | None = None, max_models: int = 32,
                 default: Backend | None = None, options: dict[str, Any] | None = None):
        """``spec`` as for ``--backend``; ``default``: an already built backend to serve it with;
        ``options``: more ``from_spec`` options for every backend built (e.g. ``timeout``)."""
        self.spec = spec
        self.kind, _, rest = spec.partition(":")
        # ``MODEL?OPTIONS`` (e.g. openai:qwen?affinity=off): the model's name is what clients ask
        # for; the options go to every backend built for another upstream model too.
        self.configured_model, _, self.spec_options = rest.partition("?")
        self.api_base = api_base
        self.api_key = api_key
        self.max_models = max_models
        self.options = dict(options or {})
        self.default: Backend = default or from_spec(spec, api_base=api_base, api_key=api_key, **self.options)
        self._by_model: dict[str, Backend] = {self.configured_model: self.default}

    @property
    def routable(self) -> bool:
        return self.kind in ROUTABLE_KINDS

    def model_names(self) -> list[str]:
        """Upstream models worth naming in /v1/models (API backends: the configured one and those used)."""
        return [m for m in self._by_model if m] if self.routable else []

    def get(self, upstream: str | None) -> Backend:
        if not upstream or upstream == self.configured_model:
            return self.default
        if not self.routable:
            raise RequestRejected(
                f"upstream model {upstream!r} cannot be served: this server's backend is {self.spec!r}, which serves "
                "only its own model; omit the part after '/' in the model name",
                status=404, param="model", code="model_not_found",
            )
        backend = self._by_model.get(upstream)
        if backend is None:
            if len(self._by_model) >= self.max_models:
                raise RequestRejected(
                    f"this server already serves {self.max_models} upstream models; not adding {upstream!r}",
                    param="model", code="too_many_models",
                )
            options = f"?{self.spec_options}" if self.spec_options else ""
            backend = from_spec(f"{self.kind}:{upstream}{options}", api_base=self.api_base, api_key=self.api_key,
                                **self.options)
            self._by_model[upstream] = backend
        return backend

    async def aclose(self) -> None:
        for backend in self._by_model.values():
            await backend.aclose()


@dataclass(frozen=True, slots=True)
class SolveRequest:
    problem: str
    strategy: str
    n: int | None = None
    verifier: str | None = None
    budget: dict[str, Any] | str | None = None
    upstream: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    options: dict[str, Any] | None = None  # the strategy's own (plain) options


class ReasoningService:
    def __init__(
        self,
        pool: BackendPool,
        *,
        default_budget: Budget | None = None,
        budget_cap: Budget | None = None,
        max_n: int = 64,
        concurrency: int = 64,
        max_problem_chars: int = 100_000,
        queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT,
    ) -> None:
        """``queue_timeout``: seconds a request may wait for one of the ``concurrency`` slots
        (None: only its own ``seconds`` budget bounds the wait)."""
        if concurrency < 1 or max_n < 1:
            raise ConfigError("concurrency and max n must be >= 1")
        if queue_timeout is not None and not (math.isfinite(queue_timeout) and queue_timeout > 0):
            raise ConfigError(f"the queue timeout must be a positive number of seconds, got {queue_timeout}")
        self.queue_timeout = queue_timeout
        self.pool = pool
        self.cap = budget_cap or Budget()
        # Capped limits the default does not set come from the cap: no request is unlimited on them.
        self.default_budget = merge_budgets(self.cap, default_budget or Budget())
        if problems := over_cap(self.default_budget, self.cap):
            raise ConfigError(f"--default-budget exceeds --budget-cap: {', '.join(problems)}")
        self.max_n = max_n
        self.max_problem_chars = max_problem_chars
        self._gate = asyncio.Semaphore(concurrency)

    def strategy_names(self) -> list[str]:
        from reasoning.strategies import available

        return list(available())

    def strategy_options(self, request: SolveRequest) -> dict[str, Any]:
        """``reasoning.options``, checked against the strategy's declared plain options (its size
        option under the same ``--max-n`` cap as ``n``)."""
        from reasoning.strategies import get

        cls = get(request.strategy)
        declared = cls.options()
        options = dict(request.options or {})
        for key, value in options.items():
            option = declared.get(key)
            if option is None or not option.plain:
                settable = ", ".join(k for k, o in declared.items() if o.plain)
                raise RequestRejected(f"strategy {request.strategy!r} has no option {key!r} settable here; it has: "
                                      f"{settable}", param="reasoning.options", code="unknown_option")
            if key == cls.size_option and isinstance(value, int) and not 1 <= value <= self.max_n:
                raise RequestRejected(f"{key} must be between 1 and {self.max_n}, got {value}", param="reasoning.options",
                                      code="n_over_cap")
        return options

    def strategy_schemas(self) -> dict[str, Any]:
        """Every strategy with the JSON schema of its plain options (from their declared fields)."""
        import inspect
        import sys

        from reasoning.strategies import available

        described = {}
        for name, cls in available().items():
            doc = inspect.getdoc(sys.modules[cls.__module__]) or ""
            described[name] = {
                "description": doc.split("\n")[0],
                "size_option": cls.size_option,
                "options": {"type": "object", "additionalProperties": False, "properties": {
                    key: option.json_schema() for key, option in cls.options().items() if option.plain}},
            }
        return described

    def parse_model(self, model: str) -> ModelName:
        try:
            return parse_model_name(model, frozenset(self.strategy_names()))
        except ConfigError as bad:
            raise RequestRejected(str(bad), status=404, param="model", code="model_not_found") from None

    def plan(self, request: SolveRequest):
        """Everything checked, nothing run: (strategy, backend, budget, sampling)."""
        from reasoning.strategies import create
        from reasoning.verifiers import make_verifier

        if not request.problem.strip():
            raise RequestRejected("the problem (last user message) is empty", param="messages")
        if len(request.problem) > self.max_problem_chars:
            raise RequestRejected(f"the problem is longer than {self.max_problem_chars} characters", param="messages")
        if request.strategy not in self.strategy_names():
            raise RequestRejected(
                f"unknown strategy {request.strategy!r}; available: {', '.join(self.strategy_names())}",
                param="strategy", code="unknown_strategy",
            )
        if request.n is not None and not 1 <= request.n <= self.max_n:
            raise RequestRejected(f"n must be between 1 and {self.max_n}, got {request.n}", param="n", code="n_over_cap")
        options = self.strategy_options(request)
        try:
            verifier = make_verifier(request.verifier) if request.verifier else None
            strategy = create(request.strategy, n=request.n, verifier=verifier, **options)
        except ConfigError as bad:
            raise RequestRejected(str(bad), param="reasoning") from None
        try:
            asked = budget_from_request(request.budget)
        except RequestRejected:
            raise
        except ConfigError as bad:
            raise RequestRejected(str(bad), param="budget", code="invalid_budget") from None
        budget = merge_budgets(self.default_budget, asked)
        if problems := over_cap(budget, self.cap):
            raise RequestRejected(
                f"budget over this server's cap ({self.cap}): {', '.join(problems)}", param="budget", code="budget_over_cap"
            )
        overrides: dict[str, Any] = {}
        if request.max_tokens is not None:
            if request.max_tokens < 1:
                raise RequestRejected("max_tokens must be >= 1", param="max_tokens")
            overrides["max_tokens"] = request.max_tokens
            overrides["min_tokens"] = min(DEFAULT_SAMPLING.min_tokens, request.max_tokens)
        if request.temperature is not None:
            if not 0 <= request.temperature <= 2:
                raise RequestRejected("temperature must be between 0 and 2", param="temperature")
            overrides["temperature"] = request.temperature
        sampling = Sampling(**overrides)
        backend = self.pool.get(request.upstream)
        return strategy, backend, budget, sampling

    async def solve(self, request: SolveRequest) -> Result:
        strategy, backend, budget, sampling = self.plan(request)
        budget = await self._wait_for_slot(budget)
        try:
            return await asolve(request.problem, strategy, backend, budget, sampling=sampling)
        finally:
            self._gate.release()

    async def _wait_for_slot(self, budget: Budget) -> Budget:
        """Acquire a slot of the gate; return ``budget`` less the seconds spent waiting."""
        limits = [limit for limit in (budget.seconds, self.queue_timeout) if limit is not None]
        started = time.monotonic()
        try:
            async with asyncio.timeout(min(limits, default=None)):
                await self._gate.acquire()
        except TimeoutError:
            raise QueueTimeout(
                f"the server is busy: no free slot within {time.monotonic() - started:.1f} s (the request's seconds "
                f"budget or the server's queue timeout); retry later"
            ) from None
        if budget.seconds is None:
            return budget
        left = budget.seconds - (time.monotonic() - started)
        if left <= 0:
            self._gate.release()
            raise QueueTimeout("the server is busy: the request's seconds budget ran out while it waited for a slot")
        return merge_budgets(budget, Budget(seconds=left))

    async def aclose(self) -> None:
        await self.pool.aclose()


def trace_summary(result: Result) -> dict[str, Any]:
    """A short account of the backend calls: how many, and n/tokens of each."""
    calls = [
        {"name": node.name, "n": (node.request or {}).get("n"), "tokens": node.usage.get("tokens"),
         "error": node.error}
        for node in result.trace.calls()
    ]
    return {"calls": len(calls), "per_call": calls[:50]}
