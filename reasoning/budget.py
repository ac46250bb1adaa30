"""Compute budgets that are enforced, not just counted.

A ``Budget`` is a set of limits. A ``Ledger`` enforces one budget over time: before every
backend call it *reserves* the worst case (prompt bound + n x max_tokens, the calls, the
USD and FLOPs that implies); a call that does not fit is shrunk (fewer samples, then fewer
max_tokens) or refused. After the call the actual usage is *committed* and the rest of the
reservation released. Ledgers nest: a child ledger (a slice handed to a sub-strategy) checks
its own limits and every ancestor's, and its usage counts in all of them.

Invariant (property-tested): recorded usage never exceeds any limit of any ledger in the
chain, whatever backends report: a reported amount below zero, not a number, or above what
the reservation allowed is charged at the reservation's worst case instead (and flagged, see
``charge``).

A ledger made with ``events=True`` (each problem's, in ``asolve``) also keeps an event log over
time, for viewers (``reasoning-bench view``): see ``Ledger.events`` and ``event_log``.

A root ledger may answer to an ``Upstream``: a ledger held in another process (``reasoning-bench
run --ray`` keeps the run budget in one actor that every worker asks). A reservation then fits
this process's chain first, and the upstream grants it (perhaps smaller) or refuses it before
anything is held here; commits and releases are passed on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from .errors import BudgetExhausted, ConfigError

# The limits a Budget may set, in the order they are checked and reported.
LIMITS = ("tokens", "completion_tokens", "uncached_tokens", "calls", "usd", "flops", "seconds")


class Budget(BaseModel):
    """Limits for one problem, one run, or one slice of a strategy. ``None`` = unlimited.

    tokens counts prompt + completion tokens; seconds is wall time, enforced by cancelling
    in-flight calls at the deadline.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)
    # Tokens the model computed: prompt tokens served from the prefix cache do not count.
    uncached_tokens: int | None = Field(default=None, ge=0)
    calls: int | None = Field(default=None, ge=0)
    # Not nan or inf (no limit is None): an infinite limit would read as a bound yet hold nothing.
    usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    flops: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @classmethod
    def parse(cls, text: str | None) -> Budget:
        """Parse ``"tokens=20000,usd=0.1,seconds=60"`` (the CLI syntax)."""
        if not text or text.strip() in ("unlimited", "none"):
            return cls()
        values: dict[str, float] = {}
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, raw = part.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not raw.strip():
                raise ConfigError(f"budget item {part!r} is not of the form name=value")
            if key not in LIMITS:
                raise ConfigError(f"unknown budget limit {key!r}; known: {', '.join(LIMITS)}")
            try:
                number = float(raw.strip().replace("_", ""))
            except ValueError:
                raise ConfigError(f"budget value for {key!r} is not a number: {raw.strip()!r}") from None
            if not math.isfinite(number):
                raise ConfigError(f"budget value for {key!r} must be a finite number, got {raw.strip()!r} "
                                  "(leave a limit out for none)")
            if key in values:
                raise ConfigError(f"budget limit {key!r} given twice")
            if number < 0 or (key == "seconds" and number == 0):
                raise ConfigError(f"budget value for {key!r} must be positive, got {raw.strip()}")
            values[key] = int(number) if key in ("tokens", "completion_tokens", "calls") else number
        return cls(**values)

    def limits(self) -> dict[str, float]:
        return {name: value for name in LIMITS if (value := getattr(self, name)) is not None}

    def __str__(self) -> str:
        # Exact and parseable back (Budget.parse): whole numbers without an exponent, others by repr.
        return ",".join(f"{k}={int(v) if float(v).is_integer() else repr(float(v))}"
                        for k, v in self.limits().items()) or "unlimited"


@dataclass(slots=True)
class Usage:
    """Resources used, exactly as backends reported them (seconds: wall time)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    usd: float = 0.0
    flops: float = 0.0
    seconds: float = 0.0
    # Of prompt_tokens, how many the backend served from its prefix cache (0 when unknown).
    cached_prompt_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def uncached_tokens(self) -> int:
        """Tokens actually computed: a prefix re-read from the KV cache is not."""
        return self.tokens - self.cached_prompt_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls
        self.usd += other.usd
        self.flops += other.flops
        self.seconds += other.seconds
        self.cached_prompt_tokens += other.cached_prompt_tokens

    def minus(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def value(self, limit: str) -> float:
        return getattr(self, limit)

    def to_dict(self) -> dict[str, float]:
        data = asdict(self)
        data["tokens"] = self.tokens
        data["uncached_tokens"] = self.uncached_tokens
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Usage:
        return cls(**{f.name: data.get(f.name, 0) for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class CallShape:
    """How much a call of n samples x max_tokens may cost, at most, on one backend."""

    prompt_tokens: int  # upper bound for one copy of the prompt
    prompt_copies_per_sample: bool  # fan-out backends pay the prompt once per sample
    calls_per_sample: bool  # fan-out backends make one provider call per sample
    usd_per_prompt_token: float = 0.0
    usd_per_completion_token: float = 0.0
    flops_per_token: float = 0.0

    def worst_case(self, n: int, max_tokens: int) -> Usage:
        prompt = self.prompt_tokens * (n if self.prompt_copies_per_sample else 1)
        completion = n * max_tokens
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            calls=n if self.calls_per_sample else 1,
            usd=prompt * self.usd_per_prompt_token + completion * self.usd_per_completion_token,
            flops=(prompt + completion) * self.flops_per_token,
        )


# Reported fields a reservation bounds; seconds is wall time, bounded by the deadline.
CHARGED = ("prompt_tokens", "completion_tokens", "calls", "usd", "flops")


def charge(reported: Usage, bound: Usage) -> tuple[Usage, dict[str, float | str]]:
    """What to record for a call reserved at ``bound`` whose backend reported ``reported``.

    Each field is charged as reported, except a value that is negative, not a finite number,
    or above the bound (e.g. completion tokens > n x max_tokens): an upstream that reports
    it is broken or dishonest, so that field is charged at the bound, the worst case the
    call could have cost. Returns (charged, {field: the reported value} for each anomaly).
    """
    charged = Usage(seconds=reported.seconds)
    anomalies: dict[str, float | str] = {}
    for name in CHARGED:
        value, cap = getattr(reported, name), getattr(bound, name)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        # Float sums (USD, FLOPs) may round a hair above an exactly-fitting bound.
        slack = cap * 1e-9 + 1e-12 if isinstance(value, float) or isinstance(cap, float) else 0
        if not number or not math.isfinite(value) or value < 0 or value > cap + slack:
            anomalies[name] = value if number and math.isfinite(value) else repr(value)
            value = cap
        setattr(charged, name, min(value, cap))
    # Cached prompt tokens lower the uncached count, so the worst case is none: a report below
    # zero or above the prompt tokens charged is charged as no cache hit.
    cached = reported.cached_prompt_tokens
    if cached:
        number = isinstance(cached, int | float) and not isinstance(cached, bool)
        if not number or not math.isfinite(cached) or cached < 0 or cached > charged.prompt_tokens:
            anomalies["cached_prompt_tokens"] = cached if number and math.isfinite(cached) else repr(cached)
        else:
            charged.cached_prompt_tokens = int(cached)
    return charged, anomalies


@dataclass(slots=True)
class Reservation:
    ledger: Ledger
    amount: Usage
    n: int
    max_tokens: int
    shrunk_by: str | None  # the limit that made us ask for less than requested
    open: bool = True
    # Reported values that were out of bounds and charged at ``amount`` instead (see charge).
    anomalies: dict[str, float | str] = field(default_factory=dict)
    # The upstream's handle of the same reservation (see Upstream), None without one.
    upstream: object = None


class Journal(Protocol):
    """A durable record of a ledger's reservations (written before the backend call) and of
    what each was charged, so that a run killed mid-call can charge its in-flight calls."""

    def reserved(self, reservation: Reservation) -> None: ...

    def committed(self, reservation: Reservation, charged: Usage) -> None: ...


class Upstream(Protocol):
    """A ledger held elsewhere (another process) that the root of a chain answers to.

    ``reserve`` holds the worst case of the largest call of at most ``n`` samples x
    ``max_tokens`` that fits it, shrinking as ``Ledger.reserve`` does, and returns ``(handle,
    n, max_tokens, shrunk_by)``; it raises ``BudgetExhausted(limit)`` when not even one sample
    of ``min_tokens`` fits. ``commit`` records what the call was charged (already clamped to
    the reservation) and releases the rest; ``release`` gives it all back. A reservation never
    committed nor released (its process died) stays held: the upstream cannot prove it unused.
    """

    def reserve(self, shape: CallShape, n: int, max_tokens: int,
                min_tokens: int) -> tuple[object, int, int, str | None]: ...

    def commit(self, handle: object, charged: Usage) -> None: ...

    def release(self, handle: object) -> None: ...


# The amounts of an event in ``Ledger.event_log``, in this order (tokens = prompt + completion,
# uncached tokens = tokens - cached prompt tokens).
EVENT_FIELDS = ("prompt_tokens", "completion_tokens", "cached_prompt_tokens", "calls", "usd", "flops")


class Ledger:
    """Enforces one Budget; a child ledger also answers to all its ancestors.

    ``journal`` (on any ledger of a chain) hears of every reservation before it is handed
    out and of every commit; ``reasoning-bench run`` keeps one on disk.

    ``upstream`` (on a root ledger only) is a ledger in another process that every reservation
    of the chain must also fit (see ``Upstream``).

    ``events=True`` keeps ``events``, what happened to this ledger over time (a reservation of
    a descendant ledger happens to it too), as plain tuples, seconds since the ledger started
    first: ``(t, "reserve", amount)``, ``(t, "commit", charged, reserved)`` (the rest of the
    reservation is released), ``(t, "release", amount)`` (given back unused), and ``(t,
    "shrink", limit)`` / ``(t, "refuse", limit)`` when a limit shrank or refused a call (the
    first such event is when ``stopped_by`` was set). ``event_log()`` is the JSON form.
    """

    def __init__(
        self,
        budget: Budget | None = None,
        parent: Ledger | None = None,
        *,
        label: str = "",
        clock: Callable[[], float] = time.monotonic,
        journal: Journal | None = None,
        events: bool = False,
        upstream: Upstream | None = None,
    ) -> None:
        if upstream is not None and parent is not None:
            raise ValueError("only a root ledger answers to an upstream; its children reach it through the chain")
        self.budget = budget or Budget()
        self.parent = parent
        self.label = label  # prefixed to limit names in stopped_by ("run:tokens")
        self.clock = parent.clock if parent else clock
        self.started = self.clock()
        own_deadline = self.started + self.budget.seconds if self.budget.seconds else math.inf
        self.deadline = min(own_deadline, parent.deadline if parent else math.inf)
        self.used = Usage()
        self.reserved = Usage()
        self.stopped_by: str | None = None  # first limit that shrank or refused a call
        self._refused = False
        self.journal = journal
        self.upstream = upstream
        self.events: list[tuple] | None = [] if events else None

    # -- structure -------------------------------------------------------------
    def child(self, budget: Budget | None = None, *, label: str = "", events: bool = False) -> Ledger:
        """A slice: its own limits, checked together with all of this ledger's."""
        return Ledger(budget, parent=self, label=label, events=events)

    def chain(self) -> Iterator[Ledger]:
        ledger: Ledger | None = self
        while ledger is not None:
            yield ledger
            ledger = ledger.parent

    # -- queries ---------------------------------------------------------------
    def seconds_left(self) -> float:
        return self.deadline - self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self, limit: str) -> float:
        """Smallest headroom for ``limit`` over the chain (inf when nobody limits it)."""
        if limit == "seconds":
            return max(0.0, self.seconds_left())
        best = math.inf
        for ledger in self.chain():
            cap = getattr(ledger.budget, limit)
            if cap is not None:
                best = min(best, cap - ledger.used.value(limit) - ledger.reserved.value(limit))
        return best

    @property
    def exhausted(self) -> bool:
        """True once a call was refused; strategies with loops stop on it."""
        return self._refused

    def usage(self) -> Usage:
        usage = self.used.minus(Usage())
        usage.seconds = self.elapsed()
        return usage

    def event_log(self) -> list[list]:
        """``events`` as JSON-able lists (empty when not kept): each amount a list of the
        ``EVENT_FIELDS``, e.g. ``[0.12, "commit", [120, 40, 0, 1, 0.0, 0.0], [120, 512, 0, 1, 0.0, 0.0]]``."""
        return [[round(t, 6), kind, *(list(map(_amounts, rest)) if kind in ("reserve", "commit", "release") else rest)]
                for t, kind, *rest in self.events or ()]

    def _violation(self, amount: Usage) -> str | None:
        """Name of the first limit ``amount`` would break, or None if it fits."""
        for ledger in self.chain():
            for limit, cap in ledger.budget.limits().items():
                if limit == "seconds":
                    if ledger.clock() >= ledger.deadline:
                        return ledger.label + limit
                    continue
                taken = ledger.used.value(limit) + ledger.reserved.value(limit)
                # A tiny tolerance so float USD sums do not refuse an exactly-fitting call.
                if taken + amount.value(limit) > cap * (1 + 1e-12) + 1e-15:
                    return ledger.label + limit
        return None

    # -- reserve / commit ------------------------------------------------------
    def reserve(self, shape: CallShape, n: int, max_tokens: int, min_tokens: int = 1) -> Reservation:
        """Reserve the worst case of the largest call that fits, shrinking n then max_tokens.

        Raises BudgetExhausted when not even one sample of ``min_tokens`` fits. With an
        upstream at the root, the call that fits here is then asked of it (it may grant less).
        """
        min_tokens = max(1, min(min_tokens, max_tokens))
        n, max_tokens, shrunk_by = self._fit(shape, n, max_tokens, min_tokens)
        upstream = self._root().upstream
        handle = None
        if upstream is not None:
            try:
                handle, n, max_tokens, upstream_shrunk = upstream.reserve(shape, n, max_tokens, min_tokens)
            except BudgetExhausted as refused:
                self._refuse(refused.limit)
            shrunk_by = shrunk_by or upstream_shrunk
        reservation = self._hold(shape.worst_case(n, max_tokens), n, max_tokens, shrunk_by)
        reservation.upstream = handle
        return reservation

    def _root(self) -> Ledger:
        root = self
        while root.parent is not None:
            root = root.parent
        return root

    def _fit(self, shape: CallShape, n: int, max_tokens: int, min_tokens: int) -> tuple[int, int, str | None]:
        """The largest (n, max_tokens) whose worst case fits this chain, fewer samples first, and
        the limit that shrank it (None: it fits whole); refuses (raises) when nothing fits."""
        first_violation = self._violation(shape.worst_case(n, max_tokens))
        if first_violation is None:
            return n, max_tokens, None
        if first_violation.endswith("seconds"):
            self._refuse(first_violation)
        # Fewer samples at the full length first: a truncated sample is usually wasted.
        for fewer in range(n - 1, 0, -1):
            if self._violation(shape.worst_case(fewer, max_tokens)) is None:
                return fewer, max_tokens, first_violation
        # One sample: the longest max_tokens that fits (binary search, cost is monotone).
        lo, hi = min_tokens - 1, max_tokens - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._violation(shape.worst_case(1, mid)) is None:
                lo = mid
            else:
                hi = mid - 1
        if lo >= min_tokens:
            return 1, lo, first_violation
        self._refuse(self._violation(shape.worst_case(1, min_tokens)) or first_violation)

    def _hold(self, amount: Usage, n: int, max_tokens: int, shrunk_by: str | None) -> Reservation:
        if shrunk_by:
            self._mark_stopped(shrunk_by)
        self._log("reserve", amount)
        for ledger in self.chain():
            ledger.reserved.add(amount)
        reservation = Reservation(self, amount, n, max_tokens, shrunk_by)
        for ledger in self.chain():
            if ledger.journal is not None:
                ledger.journal.reserved(reservation)
        return reservation

    def _refuse(self, limit: str) -> None:
        self._mark_stopped(limit, refused=True)
        raise BudgetExhausted(limit)

    def _log(self, kind: str, *details: object) -> None:
        """Add an event to every ledger of the chain that keeps them."""
        now = None
        for ledger in self.chain():
            if ledger.events is not None:
                now = self.clock() if now is None else now
                ledger.events.append((now - ledger.started, kind, *details))

    def _mark_stopped(self, limit: str, refused: bool = False) -> None:
        self._log("refuse" if refused else "shrink", limit)
        for ledger in self.chain():
            if ledger.stopped_by is None:
                ledger.stopped_by = limit
            if refused:
                ledger._refused = True

    def mark_deadline(self) -> None:
        """Record that in-flight work was cancelled at the deadline."""
        limit = next((lg.label + "seconds" for lg in self.chain() if lg.deadline == self.deadline), "seconds")
        self._mark_stopped(limit, refused=True)

    def commit(self, reservation: Reservation, actual: Usage) -> Usage:
        """Release the reservation and record what the backend reported, clamped to the
        reservation (see ``charge``; anomalies land in ``reservation.anomalies``). Returns
        what was recorded."""
        return self._close(reservation, actual, "commit")

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back unused (the call never reached the backend)."""
        self._close(reservation, Usage(), "release")

    def _close(self, reservation: Reservation, actual: Usage, kind: str) -> Usage:
        if not reservation.open:
            raise RuntimeError("reservation committed twice")
        reservation.open = False
        charged, reservation.anomalies = charge(actual, reservation.amount)
        if kind == "commit":
            self._log(kind, charged, reservation.amount)
        else:
            self._log(kind, reservation.amount)
        for ledger in self.chain():
            ledger.reserved = ledger.reserved.minus(reservation.amount)
            ledger.used.add(charged)
            if ledger.journal is not None:
                ledger.journal.committed(reservation, charged)
        if reservation.upstream is not None:
            upstream = self._root().upstream
            if kind == "commit":
                upstream.commit(reservation.upstream, charged)
            else:
                upstream.release(reservation.upstream)
        return charged


def _amounts(usage: Usage) -> list[float]:
    return [getattr(usage, name) for name in EVENT_FIELDS]
