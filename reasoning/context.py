"""The small world a strategy sees: generate, verify, budget, trace.

Strategies never touch backends, ledgers or timers directly. ``ctx.generate`` reserves
the worst case in the ledger (shrinking or refusing the call), enforces the deadline by
cancelling the in-flight call, commits what the backend reported (usage out of the
reservation's bounds is charged at the reservation and flagged ``usage_anomaly``), records a
trace node and extracts answers with the one shared extractor. A refused or cancelled call
returns an empty list, so a strategy finishes with its best answer so far without special cases.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .budget import Budget, Ledger, Usage
from .errors import BudgetExhausted
from .trace import Trace
from .types import Completion, GenerationRequest, Message

if TYPE_CHECKING:
    from .backends.base import Backend
    from .strategy import Verifier

Extractor = Callable[[str], "str | None"]
# (problem, extracted answer) -> the key votes are counted on, when answers that differ as
# text are the same answer for this problem (e.g. two valid expressions of one puzzle).
VoteKey = Callable[["Problem", str], str]
PromptInput = str | Sequence[Message] | GenerationRequest | None


@dataclass(slots=True)
class Problem:
    """What a strategy may know about the task (never the gold answer)."""

    text: str
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Sample:
    """One candidate solution: text, its extracted answer, and where it came from."""

    text: str
    answer: str | None
    completion: Completion | None = None
    score: float | None = None
    trace_id: int | None = None  # id of the trace node of the call that produced it
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sampling:
    """Default sampling settings; a strategy overrides per call."""

    max_tokens: int = 1024
    temperature: float = 0.7
    top_p: float = 1.0
    min_tokens: int = 64  # a call shrunk below this is refused instead (too short to answer)


GENERATOR = "generator"
VERIFIER = "verifier"
SHAREABLE = ("tokens", "completion_tokens", "calls", "usd", "flops")
INTEGER_LIMITS = ("tokens", "completion_tokens", "calls")


class Context:
    """``backend`` is one backend serving every role, or a mapping role -> backend that must
    include ``"generator"``; a role not in it is served by the generator."""

    def __init__(
        self,
        problem: Problem,
        backend: Backend | Mapping[str, Backend],
        ledger: Ledger,
        trace: Trace,
        *,
        messages: Sequence[Message],
        extract: Extractor,
        sampling: Sampling = Sampling(),
        parent: int | None = None,
        vote_key: VoteKey | None = None,
        role: str = GENERATOR,
        usage_by_role: dict[str, Usage] | None = None,
    ) -> None:
        self.problem = problem
        self.backends = roles_of(backend)
        self.ledger = ledger
        self.trace = trace
        self.messages = tuple(messages)  # the problem as a chat prompt
        self.extract = extract
        self.sampling = sampling
        self.parent = parent
        self.vote_key = vote_key
        self.role = role
        # What each role's calls were charged, shared by every context derived from this one.
        self.usage_by_role: dict[str, Usage] = {} if usage_by_role is None else usage_by_role

    @property
    def backend(self) -> Backend:
        """The backend of this context's role."""
        return self.backend_for(self.role)

    def backend_for(self, role: str) -> Backend:
        return self.backends.get(role) or self.backends[GENERATOR]

    @property
    def budget(self) -> Ledger:
        """Deprecated name of ``ledger`` (it is a ledger, not a Budget)."""
        return self.ledger

    # -- structure -------------------------------------------------------------
    def _derive(self, *, ledger: Ledger | None = None, parent: int | None = None, role: str | None = None) -> Context:
        return Context(
            self.problem,
            self.backends,
            ledger or self.ledger,
            self.trace,
            messages=self.messages,
            extract=self.extract,
            sampling=self.sampling,
            parent=self.parent if parent is None else parent,
            vote_key=self.vote_key,
            role=role or self.role,
            usage_by_role=self.usage_by_role,
        )

    def using(self, role: str) -> Context:
        """This context with its calls going to ``role``'s backend (the generator's if none)."""
        return self._derive(role=role)

    @asynccontextmanager
    async def span(self, name: str, **info: Any):
        """Group the calls made inside under one trace node."""
        node = self.trace.add("span", name, self.parent, info=info)
        try:
            yield self._derive(parent=node.id)
        finally:
            self.trace.close(node)

    def slice(self, budget: Budget, name: str = "slice") -> Context:
        """A child context with its own limits, also bound by all of this one's."""
        node = self.trace.add("span", name, self.parent, info={"budget": budget.limits()})
        return self._derive(ledger=self.ledger.child(budget), parent=node.id)

    def share(self, part: float | Budget, *, split: int = 1, limits: Sequence[str] = SHAREABLE,
              keep_calls: int | None = None, name: str = "share") -> Context:
        """A child context with ``part`` (a fraction) of what is left of each finite limit in
        ``limits``, divided ``split`` ways (token and call counts rounded down), or with a
        given Budget. Calls are shared like the rest unless ``keep_calls`` says how many this
        context keeps (the child then gets all the others, and at least one if any is left)."""
        budget = part if isinstance(part, Budget) else self.share_of(part, split=split, limits=limits,
                                                                     keep_calls=keep_calls)
        return self.slice(budget, name=name)

    def share_of(self, part: float, *, split: int = 1, limits: Sequence[str] = SHAREABLE,
                 keep_calls: int | None = None) -> Budget:
        """The Budget ``share`` gives a child (for callers that slice it several times)."""
        if not 0 <= part <= 1 or split < 1:
            raise ValueError(f"share needs 0 <= part <= 1 and split >= 1, got {part}, {split}")
        shares: dict[str, float] = {}
        for limit in limits:
            left = self.ledger.remaining(limit)
            if not math.isfinite(left):
                continue
            left = max(0.0, left)
            if limit == "calls" and keep_calls is not None:
                mine = max(min(1.0, left), left - keep_calls)
            else:
                mine = part * left
            each = mine / split
            shares[limit] = math.floor(each) if limit in INTEGER_LIMITS else each
        return Budget(**shares)

    # -- generation ------------------------------------------------------------
    def request(
        self,
        prompt: PromptInput = None,
        *,
        n: int = 1,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        logprobs: bool = False,
    ) -> GenerationRequest:
        """Build a request; ``prompt`` None means the problem's own chat prompt."""
        if isinstance(prompt, GenerationRequest):
            return prompt
        common = dict(
            n=n,
            max_tokens=max_tokens or self.sampling.max_tokens,
            temperature=self.sampling.temperature if temperature is None else temperature,
            top_p=self.sampling.top_p if top_p is None else top_p,
            stop=tuple(stop),
            seed=seed,
            logprobs=logprobs,
        )
        if prompt is None:
            return GenerationRequest(messages=self.messages, **common)
        if isinstance(prompt, str):
            return GenerationRequest(messages=(Message("user", prompt),), **common)
        return GenerationRequest(messages=tuple(prompt), **common)

    async def generate(
        self, prompt: PromptInput = None, *, name: str = "generate", min_tokens: int | None = None,
        role: str | None = None, **options: Any
    ) -> list[Sample]:
        """Sample up to ``n`` completions within the budget (maybe fewer, maybe none), from the
        backend of ``role`` (default: this context's role)."""
        if role is not None and role != self.role:
            return await self.using(role).generate(prompt, name=name, min_tokens=min_tokens, **options)
        request = self.request(prompt, **options)
        ledger = self.ledger
        floor = self.sampling.min_tokens if min_tokens is None else min_tokens
        try:
            if ledger.seconds_left() <= 0:
                ledger.mark_deadline()
                raise BudgetExhausted(ledger.stopped_by or "seconds")
            reservation = ledger.reserve(self.backend.call_shape(request), request.n, request.max_tokens, floor)
        except BudgetExhausted as refused:
            node = self.trace.add("generate", name, self.parent, request=request.to_dict(), error=str(refused))
            self.trace.close(node)
            return []
        asked = (request.n, request.max_tokens)
        request = request.replace(n=reservation.n, max_tokens=reservation.max_tokens)
        info = {"backend": self.backend.name, "role": self.role}
        if reservation.shrunk_by:
            info["shrunk"] = {"by": reservation.shrunk_by, "asked_n": asked[0], "asked_max_tokens": asked[1]}
        node = self.trace.add("generate", name, self.parent, request=request.to_dict(), info=info)
        try:
            response = await _within(self.backend.generate(request), ledger.seconds_left())
        except TimeoutError:
            # The provider saw the call; its tokens are unknown, so only the call is counted.
            self._charged(ledger.commit(reservation, Usage(calls=reservation.amount.calls)))
            ledger.mark_deadline()
            node.error = "cancelled at the deadline"
            node.usage = {"calls": reservation.amount.calls}
            self.trace.close(node)
            return []
        except BaseException as failed:
            ledger.release(reservation)
            node.error = f"{type(failed).__name__}: {failed}"
            self.trace.close(node)
            raise
        flops_per_token = 2.0 * self.backend.params if self.backend.params else 0.0
        actual = Usage(
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            calls=response.calls,
            usd=response.usd,
            flops=flops_per_token * (response.prompt_tokens + response.completion_tokens),
        )
        charged = ledger.commit(reservation, actual)
        self._charged(charged)
        node.completions = [c.to_dict() for c in response.completions]
        node.usage = charged.to_dict()
        node.info.update(response.info)
        if reservation.anomalies:  # out-of-bounds usage, charged at the reservation instead
            node.info["usage_anomaly"] = {"reported": reservation.anomalies, "reserved": reservation.amount.to_dict()}
        self.trace.close(node)
        samples = [Sample(c.text, self.extract(c.text), c, trace_id=node.id) for c in response.completions]
        if self.vote_key is not None:
            for sample in samples:
                if sample.answer is not None:
                    sample.info["vote_key"] = self.vote_key(self.problem, sample.answer)
        return samples

    def _charged(self, usage: Usage | None) -> None:
        if usage is not None:
            self.usage_by_role.setdefault(self.role, Usage()).add(usage)

    # -- verification ----------------------------------------------------------
    async def verify(self, samples: list[Sample], verifier: Verifier) -> list[float]:
        """Score samples with ``verifier``, which may itself call a model, within budget: the
        ``verifier`` role's backend when one is given, else the generator's."""
        async with self.span("verify", verifier=verifier.name) as sub:
            scores = await verifier.score(sub.using(VERIFIER), samples)
        for sample, score in zip(samples, scores, strict=True):
            sample.score = score
        return scores


def roles_of(backend: Backend | Mapping[str, Backend]) -> dict[str, Backend]:
    """Role -> backend; a single backend serves every role."""
    if isinstance(backend, Mapping):
        roles = dict(backend)
        if GENERATOR not in roles:
            raise ValueError(f"backends need a {GENERATOR!r} role; got {', '.join(roles) or 'none'}")
        return roles
    return {GENERATOR: backend}


async def _within(awaitable, seconds: float):
    if math.isinf(seconds):
        return await awaitable
    async with asyncio.timeout(max(0.0, seconds)):
        return await awaitable
