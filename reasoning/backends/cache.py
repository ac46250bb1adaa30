"""A disk cache of generations in front of any backend, for sweeps and re-runs.

Completions are stored in SQLite, keyed by the model (the backend's name and the request
options it adds to every call, see ``model_identity``), the prompt, the sampling parameters
and the seed; ``n`` is not part of the key. A request for n completions takes the first n
stored under its key and generates only the missing ones (asking the backend for
``n - stored``, with a seed derived from the original one so the new samples differ from
the stored ones). So re-running a sweep costs nothing, and raising
N from 16 to 64 costs only 48 new samples per prompt.

Within one solve a strategy may ask the same request again and expects new samples (waves of
early-stop voting, sampler strategies, identical sub-tasks): inside ``cache_scope()`` (one per
solved problem; sweeps open one around every solve) the k-th ask of a key continues where the
previous one stopped, rows [offset, offset + n), while a new scope starts again from the first
row, which is what makes a pool reusable across strategies and re-runs. Outside any scope
every ask starts from the first row.

Accounting stays honest and reproducible: a cached completion reports the tokens (and
USD) it cost when it was generated, so ledgers, budgets and results are the same whether
a sample came from the cache or not; ``response.info["cache"]`` says how many were reused.
Every write is committed before the response returns (nothing is lost on a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ..types import Completion, GenerationRequest, GenerationResponse
from .base import Backend

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    completion TEXT NOT NULL,   -- Completion.to_dict() as JSON
    prompt_tokens INTEGER NOT NULL,  -- of the call that produced it, shared by its siblings
    call_n INTEGER NOT NULL,         -- how many completions that call produced
    usd REAL NOT NULL,               -- this completion's share of the call's cost
    cached_prompt_tokens INTEGER NOT NULL DEFAULT 0,  -- of the call: prefix-cache hits
    PRIMARY KEY (key, idx)
);
"""


# key -> rows already handed out in the current scope (one solved problem).
_OFFSETS: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("cache_offsets", default=None)


@contextlib.contextmanager
def cache_scope():
    """Within this block repeated asks of one request get successive stored samples.

    Tasks started inside (a strategy's concurrent calls) share the scope's offsets.
    """
    token = _OFFSETS.set({})
    try:
        yield
    finally:
        _OFFSETS.reset(token)


def model_identity(backend: Backend) -> str:
    """What besides the request decides the distribution of a completion: the backend's name
    (its kind and model, e.g. ``vllm:qwen``) and the options it merges into every request
    (``extra`` of the OpenAI-compatible and litellm backends, e.g. ``{"top_k": 20}``): two
    backends that sample differently must not share stored completions. A backend without
    such options is its name alone, the key it always had, so older cache files stay valid."""
    extra = getattr(backend, "extra", None)
    if not extra:
        return backend.name
    return f"{backend.name} {json.dumps(extra, sort_keys=True, default=str)}"


def request_key(model: str, request: GenerationRequest) -> str:
    """Hash of everything that determines the distribution of one completion: the model
    (``model_identity``, e.g. ``vllm:qwen`` or ``litellm:openai/gpt-4o-mini``), the
    prompt, the sampling parameters and the seed; not n."""
    data = request.to_dict()
    data.pop("n", None)
    return hashlib.sha256(json.dumps({"model": model, "request": data}, sort_keys=True).encode()).hexdigest()


def _derived_seed(seed: int | None, already: int) -> int | None:
    """The seed for samples after the first ``already`` of a key (None stays None)."""
    if seed is None or already == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{already}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class CachedBackend(Backend):
    def __init__(self, inner: Backend, path: str | Path) -> None:
        self.inner = inner
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(completions)")}
        if "cached_prompt_tokens" not in columns:  # a file from before it was recorded
            self._db.execute("ALTER TABLE completions ADD COLUMN cached_prompt_tokens INTEGER NOT NULL DEFAULT 0")
        self._db_lock = threading.Lock()
        self._key_locks: dict[str, asyncio.Lock] = {}
        self.hits = 0  # completions served from disk
        self.misses = 0  # completions generated
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.params = inner.params

    # -- delegation --------------------------------------------------------------
    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return self.inner.count_prompt_tokens(request)

    def prices(self) -> tuple[float, float]:
        return self.inner.prices()

    @property
    def priced(self) -> bool:
        return self.inner.priced

    def call_shape(self, request: GenerationRequest):
        return self.inner.call_shape(request)

    def check_supported(self, request: GenerationRequest) -> None:
        self.inner.check_supported(request)

    async def load(self) -> None:
        await self.inner.load()

    async def aclose(self) -> None:
        await self.inner.aclose()
        with self._db_lock:
            self._db.close()

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), "cache": str(self.path)}

    def __getattr__(self, name: str) -> Any:
        # Backend-specific extras (a tokenizer for GenRM's logprob path, engine stats).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- the cache -----------------------------------------------------------------
    def _stored(self, key: str, start: int, limit: int) -> list[tuple[str, int, int, float, int]]:
        """Up to ``limit`` stored rows of ``key`` from row ``start`` on, in order."""
        with self._db_lock:
            return self._db.execute(
                "SELECT completion, prompt_tokens, call_n, usd, cached_prompt_tokens FROM completions "
                "WHERE key = ? AND idx >= ? "
                "ORDER BY idx LIMIT ?",
                (key, start, limit),
            ).fetchall()

    def _store(self, key: str, start: int, response: GenerationResponse) -> None:
        count = len(response.completions)
        rows = [
            (key, start + i, json.dumps(c.to_dict()), response.prompt_tokens, count, response.usd / max(1, count),
             response.cached_prompt_tokens)
            for i, c in enumerate(response.completions)
        ]
        with self._db_lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    async def generate(self, request: GenerationRequest) -> GenerationResponse:
        if request.stop_early is not None:
            # Which samples finish before the stop depends on timing: nothing to store or
            # reuse (a stored full set would skip the stop and its saving).
            response = await self.inner.generate(request)
            response.info["cache"] = "bypassed: the request stops early"
            return response
        key = request_key(model_identity(self.inner), request)
        lock = self._key_locks.setdefault(key, asyncio.Lock())
        async with lock:  # two concurrent asks for one key must not both generate its samples
            offsets = _OFFSETS.get()
            start = offsets.get(key, 0) if offsets is not None else 0
            if offsets is not None:
                offsets[key] = start + request.n
            stored = self._stored(key, start, request.n)
            fresh: GenerationResponse | None = None
            if len(stored) < request.n:
                have = start + len(stored)  # rows of this key on disk
                missing = request.replace(n=request.n - len(stored), seed=_derived_seed(request.seed, have))
                fresh = await self.inner.generate(missing)
                self._store(key, have, fresh)
        completions = [Completion.from_dict(json.loads(row[0])) for row in stored]
        # Report what this request would have cost uncached, whichever samples were stored:
        # a native-n request pays its prompt once (the stored call's prompt_tokens is one
        # copy) and each sample its completion; a fan-out request pays the prompt per sample
        # (a stored row carries its share of its call's prompt copies and USD).
        if self.capabilities.native_n:
            prompt_price, completion_price = self.inner.prices()
            prompt_tokens = fresh.prompt_tokens if fresh is not None else (stored[0][1] if stored else 0)
            cached_tokens = fresh.cached_prompt_tokens if fresh is not None else (stored[0][4] if stored else 0)
            usd = fresh.usd if fresh is not None else prompt_tokens * prompt_price
            usd += sum(c.completion_tokens for c in completions) * completion_price
            calls = fresh.calls if fresh is not None else 1
        else:
            prompt_tokens = round(sum(row[1] / row[2] for row in stored))
            cached_tokens = round(sum(row[4] / row[2] for row in stored))
            usd = sum(row[3] for row in stored)
            calls = len(stored)  # one call per sample
            if fresh is not None:
                prompt_tokens += fresh.prompt_tokens
                cached_tokens += fresh.cached_prompt_tokens
                usd += fresh.usd
                calls += fresh.calls
        if fresh is not None:
            completions += fresh.completions
        self.hits += len(stored)
        self.misses += len(completions) - len(stored)
        info = dict(fresh.info) if fresh is not None else {}
        info["cache"] = {"reused": len(stored), "generated": len(completions) - len(stored)}
        return GenerationResponse(
            completions=completions,
            prompt_tokens=prompt_tokens,
            completion_tokens=sum(c.completion_tokens for c in completions),
            calls=max(1, calls),
            usd=usd,
            info=info,
            # Prefix-cache hits as the engine reported them when the samples were made (so a
            # replay counts the same uncached tokens); the prompt's ids, for continuations.
            cached_prompt_tokens=min(cached_tokens, prompt_tokens),
            prompt_token_ids=fresh.prompt_token_ids if fresh is not None else request.prompt_token_ids,
        )
