"""Plots and a static HTML report of a sweep directory (``reasoning-bench report DIR``).

Reads ``sweep.jsonl`` and ``coverage.json`` (written by the sweep) and writes
``accuracy_<dataset>.png`` (accuracy vs mean compute per problem, log x, 95 % CIs, the
saturation point circled), ``coverage_<dataset>.png`` (coverage@k with the fitted
exponentiated power law) and ``report.html`` that shows them with the numbers.
"""

from __future__ import annotations

import hashlib
import html
import json
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
    "eflops": "mean effective FLOPs per problem (Kinetics)",
    "n": "samples per problem",
}


def load(out: Path) -> tuple[SweepConfig, list[dict[str, Any]], dict[str, Any]]:
    config = SweepConfig.model_validate_json((out / "config.json").read_text())
    rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines() if line.strip()]
    coverage_path = out / "coverage.json"
    coverage = json.loads(coverage_path.read_text()) if coverage_path.exists() else {}
    return config, rows, coverage


def plot(out: Path, config: SweepConfig, rows: list[dict[str, Any]], coverage: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written = []
    axis = config.x_axis
    for dataset in sorted({r["dataset"] for r in rows}):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for strategy in dict.fromkeys(r["strategy"] for r in rows if r["dataset"] == dataset):
            curve = sorted((r for r in rows if r["dataset"] == dataset and r["strategy"] == strategy), key=lambda r: x_value(r, axis))
            curve = [r for r in curve if x_value(r, axis) > 0]
            if not curve:
                continue
            xs = [x_value(r, axis) for r in curve]
            ys = [r["accuracy"] for r in curve]
            errors = [[y - r["ci95"][0] for y, r in zip(ys, curve)], [r["ci95"][1] - y for y, r in zip(ys, curve)]]
            line = ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=strategy)
            for x, y, r in zip(xs, ys, curve):
                if r.get("saturation_point"):
                    ax.plot([x], [y], marker="o", markersize=14, fillstyle="none", color=line[0].get_color())
        written.append(_save(plt, fig, ax, out / f"accuracy_{slug(dataset)}.png", AXIS_LABELS[axis], "accuracy",
                             f"{dataset}: accuracy vs compute (95% bootstrap CI; circle = saturation)"))
    for dataset, strategies in sorted(coverage.items()):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for strategy, data in strategies.items():
            line = ax.plot(data["k"], data["coverage"], marker=".", label=f"{strategy} (pass@k)")
            if data.get("fit"):
                fit = CoverageFit(**data["fit"])
                ax.plot(data["k"], [fit(k) for k in data["k"]], linestyle="--", color=line[0].get_color(),
                        label=f"fit exp({fit.a:.2f}·k^{fit.b:.2f})")
        written.append(_save(plt, fig, ax, out / f"coverage_{slug(dataset)}.png", "k (samples)", "coverage (pass@k)",
                             f"{dataset}: coverage"))
    return written


def _save(plt, fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Label a log-x plot, write it as PNG and free it."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1e6:
        return f"{value:.3g}"
    return f"{value:,.{digits}f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


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
    for image in images:
        parts.append(f"<p><img src='{e(image.name)}' alt='{e(image.stem)}'></p>")
    parts.append("<h2>Cells</h2><table><tr><th>dataset</th><th>strategy</th><th>point</th><th>accuracy</th><th>95% CI</th>"
                 "<th>problems</th><th>mean n</th><th>tokens</th><th>FLOPs</th><th>eFLOPs</th><th>USD</th>"
                 "<th>gain/doubling</th><th>saturated</th></tr>")
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
