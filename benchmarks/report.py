"""Plots and a static HTML report of a sweep directory (``reasoning-bench report DIR``).

Reads ``sweep.jsonl`` and ``coverage.json`` (written by the sweep) and writes
``accuracy_<dataset>.png`` (accuracy vs mean compute per problem, log x, 95 % CIs, the
empirical plateau point circled: the first from which every doubling gains less than the
threshold), ``coverage_<dataset>.png`` (coverage@k with the fitted exponentiated power law) and
``report.html`` that shows them with the numbers.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from pathlib import Path
from typing import Any

from .estimators import CoverageFit
from .sweep import SweepConfig, format_fit, x_value


def slug(name: str) -> str:
    """A file-name-safe form of a dataset name (a user's dataset is a path: slashes, dots)."""
    stem = name.rsplit("/", 1)[-1].removesuffix(".jsonl") if "/" in name or name.endswith(".jsonl") else name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "dataset"
    return safe if safe == name else f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"

AXIS_LABELS = {
    "tokens": "mean tokens per problem (prompt + completion)",
    "completion_tokens": "mean completion tokens per problem",
    "uncached_tokens": "mean uncached tokens per problem (prefix-cache hits not counted)",
    "usd": "mean USD per problem",
    "flops": "mean FLOPs per problem (incl. attention)",
    "eflops": "mean effective FLOPs per problem (Kinetics' cost model)",
    "eflops_extended": "mean effective FLOPs per problem (extended: + prefill, weight reads)",
    "n": "samples per problem",
}


def load(out: Path) -> tuple[SweepConfig, list[dict[str, Any]], dict[str, Any]]:
    config = SweepConfig.model_validate_json((out / "config.json").read_text())
    rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines() if line.strip()]
    coverage_path = out / "coverage.json"
    coverage = json.loads(coverage_path.read_text()) if coverage_path.exists() else {}
    return config, rows, coverage


def plot(out: Path, config: SweepConfig, rows: list[dict[str, Any]], coverage: dict[str, Any]) -> list[Path]:
    """Write every figure of ``figures`` as PNG; the paths written."""
    import matplotlib.pyplot as plt

    written = []
    for fig, _ax, path in figures(out, config, rows, coverage):
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def figures(out: Path, config: SweepConfig, rows: list[dict[str, Any]], coverage: dict[str, Any]) -> list[tuple[Any, Any, Path]]:
    """The report's plots as (figure, axes, path to write it to), labelled and laid out."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    made = []
    axis = config.x_axis
    for dataset in sorted({r["dataset"] for r in rows}):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        plotted: list[float] = []
        for strategy in dict.fromkeys(r["strategy"] for r in rows if r["dataset"] == dataset):
            curve = sorted((r for r in rows if r["dataset"] == dataset and r["strategy"] == strategy), key=lambda r: x_value(r, axis))
            curve = [r for r in curve if x_value(r, axis) > 0]
            if not curve:
                continue
            xs = [x_value(r, axis) for r in curve]
            plotted += xs
            ys = [r["accuracy"] for r in curve]
            errors = [[y - r["ci95"][0] for y, r in zip(ys, curve)], [r["ci95"][1] - y for y, r in zip(ys, curve)]]
            line = ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=strategy)
            for x, y, r in zip(xs, ys, curve):
                if r.get("saturation_point"):
                    ax.plot([x], [y], marker="o", markersize=14, fillstyle="none", color=line[0].get_color())
        _label(fig, ax, plotted, AXIS_LABELS[axis], "accuracy",
               f"{dataset}: accuracy vs compute (95% CI; circle = empirical plateau: doublings gain < threshold)")
        made.append((fig, ax, out / f"accuracy_{slug(dataset)}.png"))
    for dataset, strategies in sorted(coverage.items()):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ks: list[float] = []
        for strategy, data in strategies.items():
            ks += data["k"]
            line = ax.plot(data["k"], data["coverage"], marker=".", label=f"{strategy} (pass@k)")
            if data.get("fit"):
                fit = CoverageFit(**data["fit"])
                ax.plot(data["k"], [fit(k) for k in data["k"]], linestyle="--", color=line[0].get_color(),
                        label=f"fit exp({fit.a:.2f}·k^{fit.b:.2f})")
        _label(fig, ax, ks, "k (samples)", "coverage (pass@k)", f"{dataset}: coverage")
        made.append((fig, ax, out / f"coverage_{slug(dataset)}.png"))
    return made


def _label(fig, ax, xs: list[float], xlabel: str, ylabel: str, title: str) -> None:
    """Label a log-x plot of points at ``xs`` and lay it out."""
    log_x_axis(ax, xs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()


MAX_POINT_TICKS = 8  # labelled ticks at most, when the ticks sit at the data


def log_x_axis(ax, xs: list[float]) -> None:
    """A log x axis that reads as numbers. Matplotlib labels a log axis at powers of ten only
    (10^0, 10^1, ...), so a tiny sweep (n = 1, 2, 4; 200 to 900 tokens) shows one labelled tick
    or none, or scientific minor labels. Unless the points span three powers of ten or more
    (a big sweep: those ticks read well), the ticks sit at the points themselves (at most
    ``MAX_POINT_TICKS``, spread evenly in log x, the smallest and largest always), in plain numbers."""
    ax.set_xscale("log")
    points = sorted({x for x in xs if x > 0 and math.isfinite(x)})
    if not points:
        return
    powers_of_ten = math.floor(math.log10(points[-1])) - math.ceil(math.log10(points[0])) + 1
    if powers_of_ten >= 3:
        return
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.xaxis.set_major_locator(FixedLocator(_spread(points, MAX_POINT_TICKS)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: plain_number(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _spread(points: list[float], most: int) -> list[float]:
    """Up to ``most`` of the sorted ``points``, the first and last included, none closer in log x
    than 1/(most - 1) of the whole range to its neighbours kept (labels must not overlap)."""
    if len(points) <= 2:
        return points
    gap = math.log(points[-1] / points[0]) / (most - 1)
    kept = [points[0]]
    for x in points[1:-1]:
        if math.log(x / kept[-1]) >= gap and math.log(points[-1] / x) >= gap:
            kept.append(x)
    return kept + [points[-1]]


def plain_number(x: float) -> str:
    """A tick label without exponents where one reads: 4, 450, 1,250, 0.0031; 2.5e+15 for FLOPs."""
    if x >= 1e6 or x < 1e-4:
        return f"{x:.3g}"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _fmt(value: float | None, digits: int = 3) -> str:
    """A table number: thousands separated, rounded to ``digits`` decimals whose trailing zeros
    are dropped (only after a decimal point: 3,549.76 at 0 digits is 3,550, never 3,55), three
    significant digits from a million up (FLOPs: 2.5e+15); '-' for a missing or NaN value."""
    if value is None or value != value:  # NaN: no number to show
        return "-"
    if math.isinf(value) or abs(value) >= 1e6:
        return f"{value:.3g}"
    text = f"{value:,.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text  # -0.0001 at 3 digits


def budget_mode_note(config: SweepConfig) -> str:
    """Which matching a budget grid's table uses (pooled strategies' k; direct runs are held by the ledger)."""
    if config.budget_mode == "worst-case":
        rule = "the largest k whose worst case (every sample at max_tokens) fits"
    else:
        rule = "the largest k whose expected cost (as a direct run at k pays it) fits"
    return (f"Budget points ({config.budget_mode} mode): a pooled strategy gets {rule}; "
            "every other strategy runs under the ledger, which reserves each call's worst case.")


def write_html(out: Path, config: SweepConfig, rows: list[dict[str, Any]], coverage: dict[str, Any], images: list[Path]) -> Path:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>reasoning-bench sweep</title>",
        ("<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
         "td:first-child,td:nth-child(2){text-align:left}</style></head><body>"),
        "<h1>Sweep report</h1>",
        (f"<p>backend <code>{e(config.backend)}</code>, max_tokens {config.max_tokens}, temperature {config.temperature}, "
         f"datasets {e(', '.join(config.datasets))} (limit {config.limit}), "
         f"{'sample reuse on' if config.reuse else 'no sample reuse'}; x axis: {e(AXIS_LABELS[config.x_axis])}.</p>"),
    ]
    if config.budget_grid:
        parts.append(f"<p>{e(budget_mode_note(config))}</p>")
    for image in images:
        parts.append(f"<p><img src='{e(image.name)}' alt='{e(image.stem)}'></p>")
    parts.append("<h2>Cells</h2><table><tr><th>dataset</th><th>strategy</th><th>point</th><th>accuracy</th><th>95% CI</th>"
                 "<th>problems</th><th>mean n</th><th>tokens</th><th>FLOPs</th><th>eFLOPs</th><th>USD</th>"
                 "<th>gain/doubling</th><th>plateau (rule)</th></tr>")
    for r in rows:
        u = r["usage"]
        parts.append(
            "<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in (
                r["dataset"], r["strategy"], r["point"], f"{r['accuracy']:.3f}",
                f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f}", f"{r['n_problems']}{'' if r['complete'] else ' (incomplete)'}",
                _fmt(r["mean_n"], 2), _fmt(u.get("tokens"), 0), _fmt(u.get("flops")), _fmt(u.get("eflops")),
                _fmt(u.get("usd"), 5), _fmt(r.get("gain_per_doubling")), "◉" if r.get("saturation_point") else "",
            )) + "</tr>"
        )
    parts.append("</table>")
    if coverage:
        parts.append("<h2>Coverage</h2><ul>")
        for dataset, strategies in sorted(coverage.items()):
            for strategy, data in strategies.items():
                cov = data["coverage"]
                parts.append(f"<li>{e(dataset)} / {e(strategy)}: coverage@1 {cov[0]:.3f}, coverage@{data['k'][-1]} "
                             f"{cov[-1]:.3f} over {data['problems']} problems; {e(format_fit(data.get('fit')))}</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def render(out: str | Path, *, resummarise: bool = False) -> Path:
    """Plots + HTML for a finished (or partial) sweep directory; with ``resummarise`` the
    rows and coverage are first recomputed from ``problems.jsonl`` (e.g. after a sweep that
    was killed before it could summarise)."""
    out = Path(out)
    if resummarise:
        from .sweep import summarise_dir

        summarise_dir(out, SweepConfig.model_validate_json((out / "config.json").read_text()))
    config, rows, coverage = load(out)
    try:
        images = plot(out, config, rows, coverage)
    except ImportError:  # e.g. the GPU host: tables only; rerun `reasoning-bench report` where matplotlib is
        images = []
    return write_html(out, config, rows, coverage, images)
