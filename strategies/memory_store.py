"""A memory that outlives one problem: one SQLite file shared by the problems of a run.

Two tables, one per strategy that keeps state across problems:

- ``entries`` (``cheatsheet``): one curated insight per problem, keyed by the problem's id, with
  the embedding of the problem it came from. Written once the problem is solved and curated;
  re-running a problem (a resumed run) replaces its entry instead of adding a second one.
  ``seq`` numbers entries in the order they were first committed.
- ``notes`` (``sleep-time``): the offline notes of one shared context, keyed by its id, with what
  computing them cost. The first commit wins; ``uses`` counts the questions that read them.

Concurrency: every operation opens its own connection (any thread, any process), the file is in
WAL mode (readers never block the writer) and waits up to ``BUSY_TIMEOUT_S`` for a lock instead
of failing. A write is one transaction: a reader sees an entry whole or not at all, never a
half-written one. Nothing here ever receives a gold answer: strategies only see ``Problem``
(text, id, metadata), which carries none.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reasoning.errors import ConfigError

BUSY_TIMEOUT_S = 60.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    problem_id TEXT NOT NULL UNIQUE,
    problem TEXT NOT NULL,
    entry TEXT NOT NULL,
    embedder TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS notes (
    context_id TEXT PRIMARY KEY,
    context TEXT NOT NULL,
    notes TEXT NOT NULL,
    usage TEXT NOT NULL,
    uses INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    problem_id: str
    problem: str
    entry: str
    embedder: str
    embedding: np.ndarray


@dataclass(frozen=True, slots=True)
class Notes:
    context_id: str
    notes: str
    usage: dict[str, float]
    uses: int


class MemoryStore:
    """The SQLite file at ``path`` (created with its folder when missing)."""

    def __init__(self, path: str | Path, option: str = "memory") -> None:
        self.path = Path(path).expanduser()
        self.option = option  # the strategy option that named the file, for error messages
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._connect()  # closed here: sqlite3's `with` only commits, it never closes
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(SCHEMA)
            finally:
                con.close()
        except (sqlite3.DatabaseError, OSError) as bad:
            raise ConfigError(f"{option}={str(path)!r} cannot be used as a memory file: {bad}") from None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        return con

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute(sql, args)
            con.execute("COMMIT")
        finally:
            con.close()

    # -- cheatsheet entries -------------------------------------------------------
    def entries(self, exclude: str | None = None) -> list[Entry]:
        """Every committed entry in commit order, but the one of problem ``exclude``."""
        con = self._connect()
        try:
            return _entries(con, exclude)
        finally:
            con.close()

    def put_entry(self, problem_id: str, problem: str, entry: str, embedder: str, embedding: np.ndarray) -> None:
        """Commit ``problem_id``'s entry; a second commit for the same id replaces the first
        (keeping its place in the order)."""
        blob = np.asarray(embedding, dtype=np.float32).tobytes()
        self._write("INSERT INTO entries (problem_id, problem, entry, embedder, embedding) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(problem_id) DO UPDATE SET problem=excluded.problem, entry=excluded.entry, "
                    "embedder=excluded.embedder, embedding=excluded.embedding",
                    (problem_id, problem, entry, embedder, blob))

    # -- sleep-time notes -----------------------------------------------------------
    def notes(self, context_id: str) -> Notes | None:
        con = self._connect()
        try:
            row = con.execute("SELECT notes, usage, uses FROM notes WHERE context_id = ?", (context_id,)).fetchone()
        finally:
            con.close()
        return None if row is None else Notes(context_id, row[0], json.loads(row[1]), row[2])

    def put_notes(self, context_id: str, context: str, notes: str, usage: dict[str, float]) -> Notes:
        """Commit a context's notes unless some were committed first; return the stored ones."""
        self._write("INSERT OR IGNORE INTO notes (context_id, context, notes, usage) VALUES (?, ?, ?, ?)",
                    (context_id, context, notes, json.dumps(usage)))
        stored = self.notes(context_id)
        assert stored is not None
        return stored

    def use_notes(self, context_id: str) -> int:
        """Count one more question answered from a context's notes; the count so far."""
        self._write("UPDATE notes SET uses = uses + 1 WHERE context_id = ?", (context_id,))
        stored = self.notes(context_id)
        return stored.uses if stored else 0


def _entries(con: sqlite3.Connection, exclude: str | None = None) -> list[Entry]:
    rows = con.execute("SELECT seq, problem_id, problem, entry, embedder, embedding FROM entries "
                       "WHERE problem_id IS NOT ? ORDER BY seq", (exclude,)).fetchall()
    return [Entry(seq, pid, problem, entry, embedder, np.frombuffer(blob, dtype=np.float32))
            for seq, pid, problem, entry, embedder, blob in rows]


def read_entries(path: str | Path) -> list[Entry]:
    """The entries of a stored memory file, read without changing it (read-only: no WAL switch,
    no schema, no lock files beside a file kept with results)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no memory file at {str(path)!r}")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            return _entries(con)
        finally:
            con.close()
    except sqlite3.DatabaseError as bad:
        raise ConfigError(f"{str(path)!r} is not a cheatsheet memory file: {bad}") from None


def open_store(memory: str | None) -> MemoryStore:
    """The store a strategy's ``memory`` option names; None: one in a fresh temporary folder,
    private to the strategy object that opens it."""
    if memory is not None:
        return MemoryStore(memory)
    return MemoryStore(Path(tempfile.mkdtemp(prefix="reasoning-memory-")) / "memory.sqlite")


_LOCKS: dict[tuple[int, str, str], asyncio.Lock] = {}


def key_lock(store: MemoryStore, key: str) -> asyncio.Lock:
    """One asyncio lock per (event loop, store file, key): problems of one process that need the
    same key computed wait for the first one instead of computing it again."""
    loop = asyncio.get_running_loop()
    return _LOCKS.setdefault((id(loop), str(store.path.resolve()), key), asyncio.Lock())
