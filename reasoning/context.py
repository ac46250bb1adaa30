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
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .budget import Budget, Ledger, Usage
from .errors import BudgetExhausted
from .trace import Trace
from .types import Completion, ConfidenceStop, GenerationRequest, Message

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


@dataclass(frozen=True, slots=True)
class Prefix:
    """A partial answer to continue (``ctx.extend``): the assistant text so far, split into the
    steps that produced it, and, on backends that work in token ids, the exact ids of prompt +
    text, so a continuation re-reads the shared part from the prefix cache instead of
    re-tokenizing it. ``trace_id`` is the trace node that produced the newest step: traces
    refer to a prefix by (node, length), never by copying its ids."""

    steps: tuple[str, ...] = ()
    token_ids: tuple[int, ...] | None = None
    trace_id: int | None = None
    complete: bool = False  # the last step ended the solution (end of sequence), not a step delimiter

    @property
    def text(self) -> str:
        return "".join(self.steps)

    @property
    def depth(self) -> int:
        return len(self.steps)

    def then(self, step: str, token_ids: tuple[int, ...] | None, trace_id: int | None, complete: bool) -> Prefix:
        return Prefix((*self.steps, step), token_ids, trace_id, complete)


@dataclass(slots=True)
class Sample:
    """One candidate solution: text, its extracted answer, and where it came from. A sample
    drawn by ``ctx.extend`` carries ``prefix``: the prefix it continued plus its own text."""

    text: str
    answer: str | None
    completion: Completion | None = None
    score: float | None = None
    trace_id: int | None = None  # id of the trace node of the call that produced it
    info: dict[str, Any] = field(default_factory=dict)
    prefix: Prefix | None = None


@dataclass(frozen=True, slots=True)
class Sampling:
    """Default sampling settings; a strategy overrides per call."""

    max_tokens: int = 1024
    temperature: float = 0.7
    top_p: float = 1.0
    min_tokens: int = 64  # a call shrunk below this is refused instead (too short to answer)


GENERATOR = "generator"
VERIFIER = "verifier"
SHAREABLE = ("tokens", "completion_tokens", "uncached_tokens", "calls", "usd", "flops")
INTEGER_LIMITS = ("tokens", "completion_tokens", "uncached_tokens", "calls")


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
        memo: dict[Any, Any] | None = None,
        affinity: str | None = None,
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
        # Per-problem memo shared by every context of one solve (e.g. a process reward's step
        # scores), so strategies and verifiers keep no per-problem state on ``self``.
        self.memo: dict[Any, Any] = {} if memo is None else memo
        # Set on every request of this solve (GenerationRequest.affinity): a backend with
        # several replicas serves one problem from one of them (its prefix cache).
        self.affinity = affinity or affinity_key(problem)

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
            memo=self.memo,
            affinity=self.affinity,
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
        top_logprobs: int = 0,
        confidence_stop: ConfidenceStop | None = None,
    ) -> GenerationRequest:
        """Build a request; ``prompt`` None means the problem's own chat prompt."""
        if isinstance(prompt, GenerationRequest):
            return prompt
        common = dict(
            top_logprobs=top_logprobs,
            confidence_stop=confidence_stop,
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
        role: str | None = None, stop_early: Callable[[list[Sample]], bool] | None = None,
        _prefix: Prefix | None = None, **options: Any
    ) -> list[Sample]:
        """Sample up to ``n`` completions within the budget (maybe fewer, maybe none), from the
        backend of ``role`` (default: this context's role).

        ``stop_early(finished)`` is called with the samples finished so far each time one
        finishes; once it returns True, the samples still running are aborted (on backends with
        ``Capabilities.early_stop``; elsewhere every sample runs to its end) and only their
        partial tokens are charged. Aborted samples (finish_reason "cancelled") and samples
        stopped by a ``confidence_stop`` (finish_reason "confidence") come back with no answer:
        a cut trace's last number is not its answer."""
        if role is not None and role != self.role:
            return await self.using(role).generate(prompt, name=name, min_tokens=min_tokens, stop_early=stop_early,
                                                   _prefix=_prefix, **options)
        request = self.request(prompt, **options)
        if stop_early is not None:
            request = request.replace(stop_early=self._completion_predicate(stop_early))
        ledger = self.ledger
        floor = self.sampling.min_tokens if min_tokens is None else min_tokens
        try:
            if ledger.seconds_left() <= 0:
                ledger.mark_deadline()
                raise BudgetExhausted(ledger.stopped_by or "seconds")
            reservation = ledger.reserve(self.backend.call_shape(request), request.n, request.max_tokens, floor)
        except BudgetExhausted as refused:
            node = self.trace.add("generate", name, self.parent, request=_traced(request, _prefix), error=str(refused))
            self.trace.close(node)
            return []
        asked = (request.n, request.max_tokens)
        request = request.replace(n=reservation.n, max_tokens=reservation.max_tokens,
                                  affinity=request.affinity or self.affinity)
        info = {"backend": self.backend.name, "role": self.role}
        if reservation.shrunk_by:
            info["shrunk"] = {"by": reservation.shrunk_by, "asked_n": asked[0], "asked_max_tokens": asked[1]}
        node = self.trace.add("generate", name, self.parent, request=_traced(request, _prefix), info=info)
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
        cached = response.cached_prompt_tokens if isinstance(response.cached_prompt_tokens, int) else 0
        actual = Usage(
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            calls=response.calls,
            usd=response.usd,
            # A prompt token read from the prefix cache is not recomputed.
            flops=flops_per_token * max(0, response.prompt_tokens - cached + response.completion_tokens),
            cached_prompt_tokens=cached,
        )
        charged = ledger.commit(reservation, actual)
        self._charged(charged)
        node.completions = [c.to_dict() for c in response.completions]
        node.usage = charged.to_dict()
        node.info.update(response.info)
        if reservation.anomalies:  # out-of-bounds usage, charged at the reservation instead
            node.info["usage_anomaly"] = {"reported": reservation.anomalies, "reserved": reservation.amount.to_dict()}
        self.trace.close(node)
        if _prefix is None:
            samples = [Sample(c.text, self._answer(c, c.text), c, trace_id=node.id) for c in response.completions]
        else:
            # Ids only where the backend takes them back (else continuations go by text).
            prompt_ids = (request.prompt_token_ids or response.prompt_token_ids) if self.backend.capabilities.token_ids else None
            samples = []
            for c in response.completions:
                ids = (*prompt_ids, *c.token_ids) if prompt_ids is not None and c.token_ids is not None else None
                longer = _prefix.then(c.text, ids, node.id, complete=c.stop_reason == "eos")
                samples.append(Sample(longer.text, self._answer(c, longer.text), c, trace_id=node.id, prefix=longer))
        if self.vote_key is not None:
            for sample in samples:
                if sample.answer is not None:
                    sample.info["vote_key"] = self.vote_key(self.problem, sample.answer)
        return samples

    def _answer(self, completion: Completion, text: str) -> str | None:
        if completion.finish_reason in ("cancelled", "confidence"):
            return None
        return self.extract(text)

    def _completion_predicate(self, stop_early: Callable[[list[Sample]], bool]) -> Callable[[Sequence[Completion]], bool]:
        """The strategy's predicate over samples, as the backend sees it (over completions)."""
        seen: list[Sample] = []

        def decided(finished: Sequence[Completion]) -> bool:
            for c in finished[len(seen):]:
                seen.append(Sample(c.text, self._answer(c, c.text), c))
                if self.vote_key is not None and seen[-1].answer is not None:
                    seen[-1].info["vote_key"] = self.vote_key(self.problem, seen[-1].answer)
            return bool(stop_early(list(seen)))

        return decided

    def _charged(self, usage: Usage | None) -> None:
        if usage is not None:
            self.usage_by_role.setdefault(self.role, Usage()).add(usage)

    # -- continuing a prefix ----------------------------------------------------
    async def extend(
        self, prefix: Prefix, *, n: int = 1, stop: Sequence[str] = (), max_tokens: int | None = None,
        name: str = "extend", **options: Any,
    ) -> list[Sample]:
        """Continue ``prefix`` ``n`` times, each until a ``stop`` string (kept in the text and
        token ids), the end of the solution, or ``max_tokens``. Each sample's ``prefix`` is the
        longer prefix, and its answer is extracted from the whole text so far.

        On backends that take token ids (vLLM, Local, Scripted) the request is the prefix's exact
        ids, so the shared part is served from the prefix cache; elsewhere (OpenAI-compatible
        servers, litellm) the prefix text is sent as the assistant turn to continue
        (``continue_final_message``; vLLM serve honours it, some providers do not).
        """
        backend = self.backend
        options.setdefault("min_tokens", 1)  # a short step is a step, not a refused call
        if prefix.token_ids is not None and backend.capabilities.token_ids:
            prompt: PromptInput = GenerationRequest(prompt_token_ids=prefix.token_ids, **self._sampling(n, max_tokens, stop, options))
        elif prefix.steps:
            prompt = GenerationRequest(messages=(*self.messages, Message("assistant", prefix.text)),
                                       continue_final_message=True, **self._sampling(n, max_tokens, stop, options))
        else:
            prompt = GenerationRequest(messages=self.messages, **self._sampling(n, max_tokens, stop, options))
        samples = await self.generate(prompt, name=name, min_tokens=options.pop("min_tokens"),
                                      _prefix=prefix)
        return samples

    def _sampling(self, n: int, max_tokens: int | None, stop: Sequence[str], options: dict[str, Any]) -> dict[str, Any]:
        temperature, top_p = options.pop("temperature", None), options.pop("top_p", None)
        sampling = {
            "n": n,
            "max_tokens": max_tokens or self.sampling.max_tokens,
            "temperature": self.sampling.temperature if temperature is None else temperature,
            "top_p": self.sampling.top_p if top_p is None else top_p,
            "stop": tuple(stop),
            "seed": options.pop("seed", None),
            "logprobs": options.pop("logprobs", False),
            "include_stop": True,
        }
        unknown = set(options) - {"min_tokens"}
        if unknown:
            raise TypeError(f"extend() got unexpected options: {', '.join(sorted(unknown))}")
        return sampling

    # -- verification ----------------------------------------------------------
    async def verify(self, samples: list[Sample], verifier: Verifier) -> list[float]:
        """Score samples with ``verifier``, which may itself call a model, within budget: the
        ``verifier`` role's backend when one is given, else the generator's."""
        async with self.span("verify", verifier=verifier.name) as sub:
            scores = await verifier.score(sub.using(VERIFIER), samples)
        for sample, score in zip(samples, scores, strict=True):
            sample.score = score
        return scores


def _traced(request: GenerationRequest, prefix: Prefix | None) -> dict[str, Any]:
    """The request as the trace keeps it: a continuation names its prefix (trace node, tokens,
    steps) instead of copying it, so a deep search's trace grows with what it generates."""
    if prefix is None or not prefix.steps:
        return request.to_dict()
    data = request.to_dict(prompt_token_ids=False)  # not even copied: the prefix can be long
    if request.continue_final_message and data.get("messages"):
        data["messages"] = data["messages"][:-1]  # the base prompt; the assistant text is the prefix
    data["prefix"] = {"node": prefix.trace_id, "steps": prefix.depth, "chars": len(prefix.text),
                      "tokens": len(prefix.token_ids) if prefix.token_ids is not None else None}
    return data


def affinity_key(problem: Problem) -> str:
    """The routing key of a problem's requests: a short hash of its text (and id), the same in
    every run, so a re-run or another strategy on the same problem finds the same replica."""
    digest = hashlib.blake2b(f"{problem.id}\0{problem.text}".encode(), digest_size=8).hexdigest()
    return f"problem-{digest}"


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
