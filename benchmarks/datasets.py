"""Benchmark datasets: the shipped JSONL files, a user's own JSONL, or a hub name.

Everything loads through ``datasets.load_dataset`` (the "json" builder for files), after a
line-by-line check so that a malformed line is reported as ``file:line``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasoning.errors import ConfigError

DATA_DIR = Path(__file__).parent / "data"
BUILTIN = {
    "math500": "math500.jsonl",
    "gsm8k": "gsm8k_test.jsonl",
    "aime2024": "aime2024.jsonl",
    "aime2025": "aime2025.jsonl",
    "amc2023": "amc2023.jsonl",
    "humaneval": "humaneval.jsonl",
    "mbpp": "mbpp_sanitized.jsonl",
}
# MBPP (sanitized) ships all 427 tasks; the builtin name loads the 257-task "test" split.
MBPP_SPLIT = "test"


@dataclass(slots=True)
class Item:
    id: str
    problem: str
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # "math": graded by answer equivalence; "code": by running metadata's tests
    # (HumanEval: prompt, entry_point, test; MBPP: test_list, test_imports).
    kind: str = "math"


def code_format(record: dict[str, Any]) -> str | None:
    """ "humaneval" / "mbpp" for a code task record, None for a math one."""
    if isinstance(record.get("test"), str) and isinstance(record.get("entry_point"), str):
        return "humaneval"
    if isinstance(record.get("test_list"), list):
        return "mbpp"
    return None


def check_jsonl(path: Path) -> int:
    """Validate every line; raise ConfigError naming ``file:line`` on the first bad one."""
    count = 0
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as bad:
                raise ConfigError(f"{path}:{number}: not valid JSON ({bad.msg})") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{path}:{number}: expected a JSON object")
            fmt = code_format(record)
            if fmt is not None:
                if not isinstance(record.get("prompt"), str):
                    raise ConfigError(f"{path}:{number}: a code task needs a string field 'prompt'")
                if fmt == "mbpp" and not all(isinstance(t, str) for t in record["test_list"]):
                    raise ConfigError(f"{path}:{number}: 'test_list' must be a list of strings")
                count += 1
                continue
            if not isinstance(record.get("problem", record.get("question")), str):
                raise ConfigError(f"{path}:{number}: needs a string field 'problem' or 'question'")
            if "answer" not in record or record["answer"] is None:
                raise ConfigError(f"{path}:{number}: needs a field 'answer'")
            count += 1
    if count == 0:
        raise ConfigError(f"{path}: no records")
    return count


def _gold(answer: Any) -> str:
    text = str(answer)
    # GSM8K on the hub keeps the whole solution; the gold answer follows '####'.
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    text = text.strip()
    plain = text.replace(",", "")
    return plain if plain.lstrip("-").replace(".", "", 1).isdigit() else text


def _code_item(index: int, row: dict[str, Any], fmt: str) -> Item:
    row_id = row.get("id")
    item_id = str(index if row_id is None else row_id)
    if fmt == "humaneval":
        meta = {"format": fmt, "prompt": row["prompt"], "entry_point": row["entry_point"], "test": row["test"]}
        problem = row["prompt"]
    else:
        meta = {"format": fmt, "test_list": list(row["test_list"]), "test_imports": list(row.get("test_imports") or [])}
        # The tests name the function; show the first one so the model uses that name.
        problem = f"{row['prompt']}\nYour code should pass this test:\n{row['test_list'][0]}"
    for key in ("task_id", "split"):
        if row.get(key) is not None:
            meta[key] = row[key]
    return Item(item_id, problem, "", meta, kind="code")


def _to_items(rows: Any) -> list[Item]:
    items = []
    for index, row in enumerate(rows):
        fmt = code_format(row)
        if fmt is not None:
            items.append(_code_item(index, row, fmt))
            continue
        problem = row.get("problem") or row.get("question")
        meta = {k: v for k, v in row.items() if k in ("level", "subject", "contest", "unique_id")}
        row_id = row.get("id")
        items.append(Item(str(index if row_id is None else row_id), problem, _gold(row["answer"]), meta))
    return items


def load_items(name_or_path: str, limit: int | None = None) -> list[Item]:
    """Load a built-in dataset by name, a JSONL path, or (online) a hub dataset name."""
    import datasets

    datasets.disable_progress_bars()
    if name_or_path in BUILTIN:
        path = DATA_DIR / BUILTIN[name_or_path]
    else:
        path = Path(name_or_path).expanduser()
    if path.suffix in (".jsonl", ".json") or path.exists():
        if not path.is_file():
            raise ConfigError(f"dataset file not found: {path}")
        check_jsonl(path)
        rows = datasets.load_dataset("json", data_files=str(path), split="train")
        if name_or_path == "mbpp":
            rows = rows.filter(lambda row: row["split"] == MBPP_SPLIT)
    else:
        try:
            rows = datasets.load_dataset(name_or_path, split="test")
        except Exception as failed:  # the hub raises many types; the message is what matters
            raise ConfigError(
                f"unknown dataset {name_or_path!r}: not one of {', '.join(BUILTIN)}, not a file, "
                f"and the hub could not load it ({type(failed).__name__}: {failed})"
            ) from None
        if not {"answer"} <= set(rows.column_names) or not {"problem", "question"} & set(rows.column_names):
            raise ConfigError(f"hub dataset {name_or_path!r} needs 'problem'/'question' and 'answer' columns")
    if limit is not None:
        if limit < 1:
            raise ConfigError("--limit must be >= 1")
        rows = rows.select(range(min(limit, len(rows))))
    return _to_items(rows)
