"""``reasoning-bench run``: a dataset through a strategy, resumable, graded, summarised.

Crash safety: each finished problem is one line appended to ``results.jsonl`` and fsync'd
before the next is reported. A restarted run with the same ``--out`` skips the problems
already there, charges their usage to the run budget again (so ``--run-budget`` spans
restarts), and drops a half-written last line left by a kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from reasoning import Budget, Ledger, Problem, Result, Usage, asolve_many
from reasoning.backends.base import Backend
from reasoning.context import Sampling
from reasoning.errors import ConfigError
from reasoning.strategy import Strategy

from .datasets import Item, load_items

# Config fields that change what a result means; a resumed run must match them.
_IDENTITY = ("dataset", "strategy", "strategy_options", "backend", "budget", "max_tokens", "temperature")


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str
    limit: int | None = None
    strategy: str
    strategy_options: dict[str, Any] = {}
    backend: str
    api_base: str | None = None
    budget: str = ""
    run_budget: str = ""
    concurrency: int = 16
    max_tokens: int = 1024
    temperature: float = 0.7
    out: str


def read_done(results_path: Path) -> dict[str, dict[str, Any]]:
    """Finished problems by id; a truncated last line (killed mid-write) is dropped."""
    if not results_path.exists():
        return {}
    done: dict[str, dict[str, Any]] = {}
    good_bytes = 0
    with results_path.open("rb") as handle:
        for raw in handle:
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:
                break
            if not raw.endswith(b"\n"):
                break
            done[str(row["id"])] = row
            good_bytes += len(raw)
    if good_bytes != results_path.stat().st_size:
        with results_path.open("r+b") as handle:
            handle.truncate(good_bytes)
    return done


def _check_resume(out: Path, config: RunConfig) -> None:
    config_path = out / "config.json"
    if config_path.exists():
        old = json.loads(config_path.read_text())
        changed = [k for k in _IDENTITY if old.get(k) != getattr(config, k)]
        if changed:
            raise ConfigError(
                f"{out} holds a run with a different {', '.join(changed)}; use another --out or delete it"
            )
    config_path.write_text(config.model_dump_json(indent=2))


class _Appender:
    """Appends one JSON line per finished problem and makes it durable at once."""

    def __init__(self, path: Path) -> None:
        self.handle = path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self.handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


async def grade(gold: str, answer: str | None) -> bool | None:
    from verifiers import ais_equivalent

    if answer is None:
        return False
    return await ais_equivalent(gold, answer)


async def run_benchmark(
    config: RunConfig,
    strategy: Strategy,
    backend: Backend,
    *,
    items: list[Item] | None = None,
    progress: Any | None = None,
) -> dict[str, Any]:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if items is None:
        items = load_items(config.dataset, config.limit)
    _check_resume(out, config)
    done = read_done(out / "results.jsonl")
    todo = [item for item in items if item.id not in done]

    run_ledger = Ledger(Budget.parse(config.run_budget), label="run:")
    for row in done.values():  # earlier attempts spent this already
        run_ledger.used.add(Usage.from_dict(row["usage"]))

    results_file = _Appender(out / "results.jsonl")
    traces_file = _Appender(out / "traces.jsonl")
    task = progress.add_task("solving", total=len(items), completed=len(items) - len(todo)) if progress else None
    started = time.monotonic()

    async def on_result(index: int, result: Result) -> None:
        item: Item = todo[index]
        correct = await grade(item.answer, result.answer)
        row = {
            "id": item.id,
            "answer": result.answer,
            "gold": item.answer,
            "correct": bool(correct),
            "unverifiable": correct is None,
            "usage": result.usage.to_dict(),
            "stopped_by": result.stopped_by,
        }
        traces_file.write({"id": item.id, "text": result.text, "info": result.info, "trace": result.trace.to_list()})
        results_file.write(row)
        done[item.id] = row
        if progress is not None:
            progress.advance(task)

    problems = [Problem(item.problem, item.id, item.metadata) for item in todo]
    previous_wall = _previous_wall_seconds(out)
    try:
        if todo:
            await backend.load()  # a model load must not eat the first problems' seconds budget
        await asolve_many(
            problems,
            strategy,
            backend,
            Budget.parse(config.budget),
            run_ledger=run_ledger,
            concurrency=config.concurrency,
            on_result=on_result,
            sampling=Sampling(max_tokens=config.max_tokens, temperature=config.temperature),
        )
    finally:
        results_file.close()
        traces_file.close()
        summary = summarise(config, items, done, previous_wall + time.monotonic() - started)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _previous_wall_seconds(out: Path) -> float:
    """Wall time of earlier attempts at this run, so a resumed run reports the total."""
    try:
        return float(json.loads((out / "summary.json").read_text())["wall_seconds"])
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return 0.0


def summarise(config: RunConfig, items: list[Item], done: dict[str, dict[str, Any]], wall: float) -> dict[str, Any]:
    rows = [done[item.id] for item in items if item.id in done]
    total = Usage()
    for row in rows:
        total.add(Usage.from_dict(row["usage"]))
    correct = sum(row["correct"] for row in rows)
    return {
        "accuracy": correct / len(rows) if rows else 0.0,
        "n_problems": len(rows),
        "n_correct": correct,
        "n_unverifiable": sum(row.get("unverifiable", False) for row in rows),
        "complete": len(rows) == len(items),
        "usage": total.to_dict(),
        "stopped_by": dict(Counter(row["stopped_by"] for row in rows if row["stopped_by"])),
        "wall_seconds": wall,
        "config": config.model_dump(),
    }
