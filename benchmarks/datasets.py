"""Benchmark datasets: the shipped JSONL files, a user's own JSONL, or a hub name.

Everything loads through ``datasets.load_dataset`` (the "json" builder for files), after a
line-by-line check so that a malformed line is reported as ``file:line``. On a host without
the ``datasets`` library (the offline GPU host carries only vLLM's wheels) local files are
read line by line with ``json`` instead: same rows, same order. A hub name goes to the hub
only when it can be one and the hub can be reached (or ``HF_HUB_OFFLINE`` asks for the cache):
a typo fails at once instead of after the hub client's retries.
"""

from __future__ import annotations

import difflib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from reasoning.errors import ConfigError
from reasoning.verifiers.code_extract import defined_functions

DATA_DIR = Path(__file__).parent / "data"
HUB_PROBE_TIMEOUT = 3.0  # seconds to open a connection to the hub before trying it for real
BUILTIN = {
    "math500": "math500.jsonl",
    "gsm8k": "gsm8k_test.jsonl",
    "aime2024": "aime2024.jsonl",
    "aime2025": "aime2025.jsonl",
    "amc2023": "amc2023.jsonl",
    "humaneval": "humaneval.jsonl",
    "mbpp": "mbpp_sanitized.jsonl",
    "countdown": "countdown_cd3_test.jsonl",
    "game24": "game24.jsonl",
    "game24-all": "game24.jsonl",
    "stateful-gsm8k": "stateful_gsm8k.jsonl",
}
# MBPP (sanitized) ships all 427 tasks; the builtin name loads the 257-task "test" split.
MBPP_SPLIT = "test"
# Builtin names that load a subset of their file: mbpp its test split; game24 the 100
# puzzles the Tree-of-Thoughts paper evaluates on (ids 900-999; "game24-all" loads all 1362,
# ordered by human solve time, easiest first).
_SUBSETS = {
    "mbpp": lambda row: row.get("split") == MBPP_SPLIT,
    "game24": lambda row: row.get("tot_test_subset") is True,
}


# Fields of a math record kept in its metadata (strategies see them; never the answer): MATH's
# level and subject, AIME/AMC's contest, and a shared context's split for sleep-time
# (stateful_gsm8k.jsonl: context, query, context_id, context_questions).
_KEPT = ("level", "subject", "contest", "unique_id", "context", "query", "context_id", "context_questions")


@dataclass(slots=True)
class Item:
    id: str
    problem: str
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # "math": graded by answer equivalence; "code": by running metadata's tests
    # (HumanEval: prompt, entry_point, test; MBPP: test_list, test_imports); "expression":
    # an arithmetic puzzle (Countdown, Game of 24) graded by ``verifiers.check_expression``
    # against metadata's numbers, target and use_all.
    kind: str = "math"


def code_format(record: dict[str, Any]) -> str | None:
    """ "humaneval" / "mbpp" for a code task record, None for a math one."""
    if isinstance(record.get("test"), str) and isinstance(record.get("entry_point"), str):
        return "humaneval"
    if isinstance(record.get("test_list"), list):
        return "mbpp"
    return None


def is_expression_record(record: dict[str, Any]) -> bool:
    """A Countdown / Game-of-24 style record: ``numbers`` (a list) and a ``target``."""
    return isinstance(record.get("numbers"), list) and "target" in record


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def expression_problem(numbers: list[Any], target: Any, use_all: bool = True) -> str:
    """The puzzle stated with its rules, for a model that has never seen the game."""
    listed = ", ".join(str(n) for n in numbers)
    use = (
        "use every given number exactly once (a number listed twice must be used twice)"
        if use_all
        else "use each given number at most once (you need not use them all)"
    )
    return (
        f"Using the numbers {listed}, write an arithmetic expression whose value is exactly {target}.\n"
        f"Rules: {use}, combined only with +, -, *, / and parentheses. No other numbers, no "
        "exponents, no joining digits into a new number, no negative signs in front of a "
        "number. Fractions are allowed in intermediate steps.\n"
        "Reason step by step, then write the final expression itself (not its value) in "
        "\\boxed{}, for example \\boxed{(a - b) * c} with a, b, c replaced by given numbers."
    )


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
            if is_expression_record(record):
                if not record["numbers"] or not all(_is_number(n) for n in record["numbers"]):
                    raise ConfigError(f"{path}:{number}: 'numbers' must be a non-empty list of numbers")
                if not _is_number(record["target"]):
                    raise ConfigError(f"{path}:{number}: 'target' must be a number")
                if not isinstance(record.get("use_all", True), bool):
                    raise ConfigError(f"{path}:{number}: 'use_all' must be true or false")
                count += 1
                continue
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
        if isinstance(row.get("code"), str):  # the reference solution names the functions under test
            meta["subjects"] = list(defined_functions(row["code"]))
        # The tests name the function; show the first one so the model uses that name.
        problem = f"{row['prompt']}\nYour code should pass this test:\n{row['test_list'][0]}"
    for key in ("task_id", "split"):
        if row.get(key) is not None:
            meta[key] = row[key]
    return Item(item_id, problem, "", meta, kind="code")


def _expression_item(index: int, row: dict[str, Any]) -> Item:
    row_id = row.get("id")
    use_all = row.get("use_all", True)
    meta = {"numbers": list(row["numbers"]), "target": row["target"], "use_all": use_all}
    puzzle = row.get("problem") or row.get("input")
    if puzzle is not None:
        meta["puzzle"] = puzzle
    for key in ("tot_test_subset", "solved_rate"):
        if row.get(key) is not None:
            meta[key] = row[key]
    problem = expression_problem(meta["numbers"], row["target"], use_all)
    return Item(str(index if row_id is None else row_id), problem, _gold(row["target"]), meta, kind="expression")


def _to_items(rows: Any) -> list[Item]:
    items = []
    for index, row in enumerate(rows):
        if is_expression_record(row):
            items.append(_expression_item(index, row))
            continue
        fmt = code_format(row)
        if fmt is not None:
            items.append(_code_item(index, row, fmt))
            continue
        problem = row.get("problem") or row.get("question")
        meta = {k: v for k, v in row.items() if k in _KEPT}
        row_id = row.get("id")
        items.append(Item(str(index if row_id is None else row_id), problem, _gold(row["answer"]), meta))
    return items


def load_items(name_or_path: str, limit: int | None = None) -> list[Item]:
    """Load a built-in dataset by name, a JSONL path, or (online) a hub dataset name."""
    try:
        import datasets
    except ImportError:
        datasets = None
    else:
        datasets.disable_progress_bars()
    if name_or_path in BUILTIN:
        path = DATA_DIR / BUILTIN[name_or_path]
    else:
        path = Path(name_or_path).expanduser()
    if path.suffix in (".jsonl", ".json") or path.exists():
        if not path.is_file():
            raise ConfigError(f"dataset file not found: {path}")
        check_jsonl(path)
        if datasets is None:
            return _plain_jsonl(path, name_or_path, limit)
        rows = datasets.load_dataset("json", data_files=str(path), split="train")
        if name_or_path in _SUBSETS:
            rows = rows.filter(_SUBSETS[name_or_path])
    else:
        if datasets is None:
            raise ConfigError(f"dataset {name_or_path!r} is not a file, and hub datasets need `pip install datasets`")
        rows = _hub_rows(datasets, name_or_path)
        if not {"answer"} <= set(rows.column_names) or not {"problem", "question"} & set(rows.column_names):
            raise ConfigError(f"hub dataset {name_or_path!r} needs 'problem'/'question' and 'answer' columns")
    if limit is not None:
        if limit < 1:
            raise ConfigError("--limit must be >= 1")
        rows = rows.select(range(min(limit, len(rows))))
    return _to_items(rows)


def _hub_rows(datasets: Any, name: str) -> Any:
    """The test split of hub dataset ``name``. A name that cannot be a hub name, or a hub that
    cannot be reached, is an unknown dataset at once (not after the hub client's retries)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    close = difflib.get_close_matches(name.lower(), BUILTIN, n=1)
    unknown = (f"unknown dataset {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}: not one of "
               f"{', '.join(BUILTIN)}, not a file")
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ConfigError(f"{unknown}, and not a hub name (NAME or OWNER/NAME)") from None
    offline = constants.HF_HUB_OFFLINE or getattr(datasets.config, "HF_HUB_OFFLINE", False)
    if not offline and (failure := _unreachable(constants.ENDPOINT)):
        raise ConfigError(f"{unknown}, and the hub ({constants.ENDPOINT}) cannot be reached from here ({failure}); "
                          "to load a hub dataset from the local cache, set HF_HUB_OFFLINE=1")
    try:
        return datasets.load_dataset(name, split="test")
    except Exception as failed:  # noqa: BLE001 - the hub raises many types; the message is what matters
        raise ConfigError(f"{unknown}, and the hub could not load it ({type(failed).__name__}: {failed})") from None


def _unreachable(endpoint: str) -> str | None:
    """Why no connection to ``endpoint`` opens (None: it does, or a proxy decides)."""
    if any(os.environ.get(v) or os.environ.get(v.lower()) for v in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")):
        return None
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=HUB_PROBE_TIMEOUT).close()
    except OSError as failed:
        return failed.strerror or str(failed) or type(failed).__name__
    return None


def _plain_jsonl(path: Path, name: str, limit: int | None) -> list[Item]:
    if limit is not None and limit < 1:
        raise ConfigError("--limit must be >= 1")
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    if name in _SUBSETS:
        rows = [row for row in rows if _SUBSETS[name](row)]
    return _to_items(rows[:limit] if limit is not None else rows)
