"""Accuracy over a sequence: the first half of a dataset's problems against the second half.

For strategies whose memory grows over a run (``cheatsheet``): if it helps, the second half
(solved with more memory) gains on the first, relative to the same strategy without memory.
Reads a ``reasoning-bench run`` folder (``results.jsonl``, the dataset from ``config.json``) or a
sweep folder (``problems.jsonl``: one line per dataset, strategy and budget point); the order is
the dataset's own (``load_items``), which is the order a ``--concurrency 1`` run solves it in. In a
sweep, every label of a dataset is split over the problems all of its labels ran (a sweep cut
short leaves them at different problems); ``left_out`` counts a label's other rows.

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
    # The labels of a dataset are compared on the problems every one of them ran: a sweep cut
    # short leaves its labels at different problems, and halves of different problems differ in
    # difficulty as well as in memory.
    common: dict[str, set[str]] = {}
    for (dataset, _, _), rows in groups.items():
        ran = {str(r["id"]) for r in rows}
        common[dataset] = common[dataset] & ran if dataset in common else ran
    orders: dict[str, list[str]] = {}
    lines = []
    for (dataset, strategy, point), rows in sorted(groups.items()):
        if dataset not in orders:
            orders[dataset] = [i for i in (item.id for item in load_items(dataset)) if i in common[dataset]]
        lines.append({"dataset": dataset, "strategy": strategy, "point": point, **halves(rows, orders[dataset]),
                      "left_out": len({str(r["id"]) for r in rows} - common[dataset])})
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="a reasoning-bench run or sweep output folder")
    args = parser.parse_args(argv)
    for line in report(Path(args.out)):
        fmt = lambda p: "-" if p["accuracy"] is None else f"{p['accuracy']:.3f} (n={p['n']})"
        gain = "-" if line["gain"] is None else f"{line['gain']:+.3f}"
        left_out = f"  ({line['left_out']} problems not run by every label left out)" if line["left_out"] else ""
        print(f"{line['dataset']}  {line['strategy']}  {line['point']}  first {fmt(line['first'])}  "
              f"second {fmt(line['second'])}  gain {gain}{left_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
