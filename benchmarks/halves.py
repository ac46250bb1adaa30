"""Accuracy over a sequence: the first half of a dataset's problems against the second half.

For strategies whose memory grows over a run (``cheatsheet``): if it helps, the second half
(solved with more memory) gains on the first, relative to the same strategy without memory.
Reads a ``reasoning-bench run`` folder (``results.jsonl``, the dataset from ``config.json``) or a
sweep folder (``problems.jsonl``: one line per dataset, strategy and budget point); the order is
the dataset's own (``load_items``), which is the order a ``--concurrency 1`` run solves it in.

    python -m reasoning.benchmarks.halves OUT_DIR
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .datasets import load_items
from .run import read_rows, stored


def halves(rows: Sequence[dict[str, Any]], order: Sequence[str]) -> dict[str, Any]:
    """Accuracy of the rows of the first ``len(order) // 2`` ids of ``order`` and of the rest
    (rows of ids not in ``order`` are left out); a half with no rows has accuracy None."""
    cut = len(order) // 2
    first_ids, second_ids = set(order[:cut]), set(order[cut:])
    parts = {}
    for name, ids in (("first", first_ids), ("second", second_ids)):
        mine = [float(row["correct"]) for row in rows if str(row["id"]) in ids]
        parts[name] = {"n": len(mine), "accuracy": sum(mine) / len(mine) if mine else None}
    first, second = parts["first"]["accuracy"], parts["second"]["accuracy"]
    parts["gain"] = None if first is None or second is None else second - first
    return parts


def report(out: Path) -> list[dict[str, Any]]:
    """One line per (dataset, strategy, point) of a run or sweep folder."""
    if stored(out / "problems.jsonl").exists():
        rows = read_rows(out / "problems.jsonl")
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault((row["dataset"], row["strategy"], row["point"]), []).append(row)
    else:
        config = json.loads((out / "config.json").read_text())
        groups = {(config["dataset"], config["strategy"], ""): read_rows(out / "results.jsonl")}
    orders: dict[str, list[str]] = {}
    lines = []
    for (dataset, strategy, point), rows in sorted(groups.items()):
        if dataset not in orders:
            orders[dataset] = [item.id for item in load_items(dataset)]
        order = [i for i in orders[dataset] if i in {str(r["id"]) for r in rows}]  # the problems it ran
        lines.append({"dataset": dataset, "strategy": strategy, "point": point, **halves(rows, order)})
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="a reasoning-bench run or sweep output folder")
    args = parser.parse_args(argv)
    for line in report(Path(args.out)):
        fmt = lambda p: "-" if p["accuracy"] is None else f"{p['accuracy']:.3f} (n={p['n']})"
        gain = "-" if line["gain"] is None else f"{line['gain']:+.3f}"
        print(f"{line['dataset']}  {line['strategy']}  {line['point']}  first {fmt(line['first'])}  "
              f"second {fmt(line['second'])}  gain {gain}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
