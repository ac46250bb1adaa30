"""Several replicas of one model behind one backend: which one serves a request.

``Replicas`` keeps, per server URL, the requests outstanding on it and whether it is up, and
picks a replica for each attempt of a request:

- **Least outstanding requests** among the replicas that are up (ties: the one picked least
  often, then the first listed), so a slow replica gets fewer.
- **Problem affinity** (on by default): the first request of a problem (its
  ``GenerationRequest.affinity`` key) picks as above, and every later request of that problem
  (more samples, continuations, verifications) goes to the same replica, whose prefix cache
  holds its prompt. The mapping moves only when that replica is down, and stays on the new one.
- **Health**: a replica that refuses or drops a connection is marked down (``mark_down``); it
  gets no requests until a probe (``GET /v1/models``, any HTTP answer counts) finds it up again.
  Probes run in the background, at most one per replica at a time and one every
  ``health_interval`` seconds, started by the picks that pass it over; when every replica is
  down, a pick probes them all at once and waits for the answers before giving up with
  ``NoReplicaUp``.

Counting is the caller's: a request is charged from the answer that succeeded, wherever it ran
(``OpenAICompatible`` retries a failed attempt on another replica and reports only the usage of
the answer it returns). Everything here runs on the caller's event loop: no locks.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

# Problems whose replica is remembered (the oldest are forgotten first; a forgotten problem
# just picks again).
MAX_AFFINITY_KEYS = 65_536
DEFAULT_HEALTH_INTERVAL = 5.0  # seconds between probes of a replica that is down


def replica_urls(base_url: str | Sequence[str]) -> list[str]:
    """``"URL1,URL2"`` or a list of URLs -> the URLs, stripped of a trailing ``/``; at least one,
    no repeats (a ``ConfigError`` naming ``--api-base`` otherwise)."""
    items = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    urls = [str(url).strip().rstrip("/") for url in items]
    if not urls or any(not url for url in urls):
        raise ConfigError(f"--api-base / base_url needs one URL or several separated by commas, got {base_url!r}")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--api-base / base_url: {url!r} is not an http(s) URL")
    if len(set(urls)) != len(urls):
        raise ConfigError(f"--api-base / base_url lists a replica twice: {', '.join(urls)}")
    return urls


@dataclass(eq=False)
class Replica:
    """One server, what it is doing, and whether it is up."""

    url: str
    index: int
    outstanding: int = 0  # attempts picked for it and not yet ended
    picks: int = 0
    up: bool = True
    error: str | None = None  # why it was marked down, the last time
    next_probe: float = 0.0  # time.monotonic() before which it is not probed again
    probing: asyncio.Task[None] | None = None  # the probe running now
    # Bound to one event loop (the caller's), rebuilt on another: see OpenAICompatible.
    client: Any = None
    semaphore: asyncio.Semaphore | None = None
    loop: asyncio.AbstractEventLoop | None = None


class NoReplicaUp(Exception):
    """Every replica is down (each has been tried or probed just now)."""


@dataclass
class Replicas:
    """The replicas of one backend and the rules that pick one (see the module docstring).

    ``probe(replica)`` is an awaitable that returns when the replica answered over HTTP and
    raises when it cannot be reached."""

    urls: Sequence[str]
    probe: Callable[[Replica], Awaitable[Any]]
    affinity: bool = True
    health_interval: float = DEFAULT_HEALTH_INTERVAL
    replicas: list[Replica] = field(init=False)
    _pinned: OrderedDict[str, Replica] = field(init=False, default_factory=OrderedDict)
    _probes: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        if not self.health_interval >= 0:
            raise ConfigError(f"health_interval must be >= 0 seconds, got {self.health_interval!r}")
        self.replicas = [Replica(url, i) for i, url in enumerate(self.urls)]

    def __len__(self) -> int:
        return len(self.replicas)

    # ---- picking ---------------------------------------------------------------------

    async def pick(self, key: str | None, tried: set[Replica] = frozenset()) -> Replica:  # type: ignore[assignment]
        """The replica for the next attempt of a request of problem ``key`` (None: no affinity),
        other than the ones ``tried`` in this attempt; counted as outstanding until ``done``."""
        self._probe_down_ones()
        up = [r for r in self.replicas if r.up and r not in tried]
        if not up:
            await self._probe_now([r for r in self.replicas if not r.up and r not in tried])
            up = [r for r in self.replicas if r.up and r not in tried]
        if not up:
            raise NoReplicaUp(self.why_down())
        replica = None
        if key is not None and self.affinity:
            replica = self._pinned.get(key)
            if replica is not None and replica not in up:
                replica = None  # its replica is down: move it
            if replica is None:
                replica = self._pinned[key] = _least_loaded(up)
                if len(self._pinned) > MAX_AFFINITY_KEYS:
                    self._pinned.popitem(last=False)
            else:
                self._pinned.move_to_end(key)
        if replica is None:
            replica = _least_loaded(up)
        replica.picks += 1
        replica.outstanding += 1
        return replica

    def done(self, replica: Replica) -> None:
        replica.outstanding -= 1

    def pinned(self, key: str) -> Replica | None:
        """The replica that serves problem ``key`` now, if it picked one."""
        return self._pinned.get(key)

    # ---- health ----------------------------------------------------------------------

    def mark_down(self, replica: Replica, error: BaseException) -> None:
        """It refused or dropped a connection: no more requests until a probe finds it up."""
        if replica.up:
            replica.up = False
            replica.next_probe = time.monotonic() + self.health_interval
        replica.error = f"{type(error).__name__}: {error}"

    def why_down(self) -> str:
        down = [r for r in self.replicas if not r.up]
        return f"no replica is up ({len(down)} of {len(self.replicas)} down: " + "; ".join(
            f"{r.url} ({r.error or 'down'})" for r in down) + ")"

    def _probe_down_ones(self) -> None:
        """Start a background probe of each replica that is down and due for one."""
        now = time.monotonic()
        for replica in self.replicas:
            if not replica.up and now >= replica.next_probe:
                self._probing(replica)

    async def _probe_now(self, replicas: list[Replica]) -> None:
        """Probe these replicas now (or wait for the probes already running)."""
        await asyncio.gather(*(asyncio.shield(self._probing(r)) for r in replicas))

    def _probing(self, replica: Replica) -> asyncio.Task[None]:
        """The probe of ``replica`` running on this loop, started if there is none."""
        task = replica.probing
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = replica.probing = asyncio.get_running_loop().create_task(self._probe_one(replica))
            self._probes.add(task)  # a reference until it ends
            task.add_done_callback(self._probes.discard)
        return task

    async def _probe_one(self, replica: Replica) -> None:
        try:
            await self.probe(replica)
        except Exception as error:  # noqa: BLE001 - any failure to answer: still down
            replica.error = f"{type(error).__name__}: {error}"
            replica.next_probe = time.monotonic() + self.health_interval
        else:
            replica.up, replica.error = True, None

    def stop_probes(self) -> None:
        """Cancel the probes running on this loop (the backend is closing)."""
        loop = asyncio.get_running_loop()
        for task in list(self._probes):
            if task.get_loop() is loop:
                task.cancel()

    def describe(self) -> list[dict[str, object]]:
        return [{"url": r.url, "up": r.up, "outstanding": r.outstanding, "picks": r.picks,
                 **({"error": r.error} if r.error and not r.up else {})} for r in self.replicas]


def _least_loaded(replicas: list[Replica]) -> Replica:
    return min(replicas, key=lambda r: (r.outstanding, r.picks, r.index))
