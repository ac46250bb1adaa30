"""The tables of ``benchmarks/RESULTS.md``, generated from the raw results beside it.

Every table in RESULTS.md sits between ``<!-- table: NAME -->`` and ``<!-- /table -->``; NAME
is one of ``TABLES`` below, each a function of the results folder that reads the sweep rows
(``sweep.jsonl``, ``coverage.json``, ``problems.jsonl``) or a benchmark's JSON. So a figure in
a table is never typed by hand, and prose and data cannot drift apart silently:

    python -m reasoning.benchmarks.results_tables --check   # exit 1 and a diff if a table is stale
    python -m reasoning.benchmarks.results_tables --write   # regenerate them in place

The fast test suite runs ``--check`` on the repository's RESULTS.md.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .compute import KineticsCost, ModelShape

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
RESULTS = HERE / "results"
SWEEPS = "sweeps_h200_2026-11-29"  # the sweeps run with direct-run accounting of pooled points
OLD_SWEEPS = "sweeps_h200_2026-11-22"  # the first run, charged k/N of each pool's prompt and call
RERUNS = "sweeps_h200_2026-11-29b"  # issue 22's re-runs: GenRM under the official scoring, ParaThinker's and APR's set-ups

MARKER = re.compile(r"(<!-- table: (?P<name>[\w:.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.DOTALL)


# -- reading ------------------------------------------------------------------------------
def jsonl(path: Path) -> list[dict[str, Any]]:
    """A JSONL file's rows, or its stored compressed copy's (``run.stored``: ``path.gz``)."""
    from .run import stored_rows

    return stored_rows(path)


def cells(folder: Path) -> list[dict[str, Any]]:
    return jsonl(folder / "sweep.jsonl")


def cell(rows: list[dict[str, Any]], strategy: str, point: str) -> dict[str, Any]:
    found = [r for r in rows if r["strategy"] == strategy and r["point"] == point]
    if len(found) != 1:
        raise KeyError(f"no single row for {strategy} at {point}")
    return found[0]


def accuracy(row: dict[str, Any]) -> str:
    low, high = row["ci95"]
    return f"{row['accuracy']:.3f} ({low:.3f}–{high:.3f})"


def tokens(row: dict[str, Any], kind: str = "tokens") -> str:
    return f"{row['usage'][kind]:,.0f}"


def table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def saturation(row: dict[str, Any]) -> str:
    """The sweeps' empirical rule (``saturation_point``): the first point from which every further
    doubling gains less than 1 point. Not TTSPM's saturation point (the ``ttspm`` table)."""
    return " (plateau rule)" if row.get("saturation_point") else ""


def load(results: Path, name: str) -> dict[str, Any]:
    return json.loads((results / name).read_text())


# -- the tables ---------------------------------------------------------------------------
OVERHEAD_VARIANTS = {  # the JSON's variant -> what it is (RESULTS.md's wording); the figures come from the JSON
    "raw openai client": "raw floor: asyncio + `openai` client, one `chat.completions.create(n=16)` per problem",
    "raw openai client, unparsed":
        "raw, leanest: the same client, unparsed (`client.post(..., cast_to=httpx.Response)` + `json.loads`)",
    "framework (OpenAICompatible)":
        "**framework**, `OpenAICompatible` backend (ledger, trace, extraction of {answers:,} answers, voting)",
    "raw litellm.acompletion": "raw `litellm.acompletion(n=16)` per problem",
    "framework (LiteLLM)": "framework, `LiteLLM` backend",
}


def overhead(name: str) -> Callable[[Path], str]:
    """The orchestration-overhead variants (``benchmarks/overhead.py``): median wall seconds and
    the ratio to the raw openai client; the framework on the direct path in bold."""

    def build(results: Path) -> str:
        data, body = load(results, name), []
        for variant, figures in data["variants"].items():
            wall, ratio = f"{figures['wall_s']:.3f}", f"{figures['wall_vs_raw_openai']:.2f}×"
            if variant == "framework (OpenAICompatible)":
                wall, ratio = f"**{wall}**", f"**{ratio}**"
            label = OVERHEAD_VARIANTS.get(variant, variant).format(answers=data["problems"] * data["n"])
            body.append([label, wall, ratio])
        return table(["variant", "wall s", "vs raw openai client"], body)

    return build


def vllm_phases(name: str) -> Callable[[Path], str]:
    """One ``benchmarks/vllm_throughput.py`` run by phase: wall seconds of each timed round (as
    stored, 2 decimals), the median tokens/s, and the phase's accuracy."""

    def build(results: Path) -> str:
        data = load(results, name)
        n = data["settings"]["n"]
        phases = [("sync_llm", "sync `LLM.generate` (1 run)"), ("raw_async", "raw async engine"),
                  ("framework", "framework (self-consistency)")]
        body = []
        for phase, label in phases:
            if phase not in data["tokens_per_s"]:
                continue
            rounds = [data[phase]] if phase == "sync_llm" else data["rounds"][phase]
            grade = data["accuracy"][phase]
            body.append([label, ", ".join(f"{r['wall_s']:.2f}" for r in rounds), f"{data['tokens_per_s'][phase]:,.0f}",
                         f"{grade['maj@n']:.3f}", f"{grade['pass@1']:.3f}"])
        return table(["phase", "wall s (per timed round)", "tokens/s (median)", f"maj@{n}", "pass@1"], body)

    return build


def vllm_runs(names: tuple[str, ...]) -> Callable[[Path], str]:
    """Several ``benchmarks/vllm_throughput.py`` runs, one row each: the run's options, each
    phase's tokens/s (the median over rounds when there are several) and framework / raw async
    (the mean of the paired per-round ratios with its bootstrap interval where the run has one,
    else their median)."""

    def build(results: Path) -> str:
        body = []
        for name in names:
            data = load(results, name)
            settings, speed = data["settings"], data["tokens_per_s"]
            warmup, rounds = settings.get("warmup_rounds", 0), settings["rounds"]
            flags = ([f"--warmup-rounds {warmup}"] if warmup else []) + [f"--rounds {rounds}"]
            flags += ["--skip-sync-llm"] if settings["skip_sync_llm"] else []
            label = f"`{' '.join(flags)}`" + ("" if warmup else ", no warm-up round")
            median = " (median)" if rounds > 1 else ""
            sync = f"{speed['sync_llm']:,.0f}" if "sync_llm" in speed else "–"
            pairs = data.get("paired_ratios", [])
            if "pairing" in data:  # issue 19's runs: the mean of many paired rounds and its interval
                pairing = data["pairing"]
                low, high = pairing["interval"]
                ratio = (f"{pairing['mean']:.3f} ({pairing['level']:.0%} interval {low:.3f}-{high:.3f}, "
                         f"{pairing['rounds']} paired rounds)")
            elif len(pairs) > 1:
                ratio = f"{data['ratio_framework_to_raw_async']:.3f} (paired: {', '.join(f'{p:.3f}' for p in pairs)})"
            else:  # that version of the script ran the raw phase first
                ratio = f"{data['ratio_framework_to_raw_async']:.2f} (one pair, raw first{'' if warmup else ', cold'})"
            body.append([label, sync, f"{speed['raw_async']:,.0f}{median}", f"{speed['framework']:,.0f}{median}", ratio])
        return table(["run", "sync `LLM.generate` tok/s", "raw async tok/s", "framework tok/s", "framework / raw async"],
                     body)

    return build


def genrm_budgets(name: str) -> Callable[[Path], str]:
    """``benchmarks/genrm_vs_sc.py``: accuracy by budget, SC (n samples) and GenRM (S solutions)
    by V verifications; "–" where no S ≥ 2 fits; the best of each budget in bold."""

    def build(results: Path) -> str:
        rows = load(results, name)["rows"]
        budgets = sorted({r["budget_completion_tokens"] for r in rows})
        verifications = sorted({r["verifications"] for r in rows if r["method"] != "self-consistency"})
        body = []
        for budget in budgets:
            mine = [r for r in rows if r["budget_completion_tokens"] == budget]
            best = max(r["accuracy"] for r in mine)
            line = [f"{budget:,}"]
            for method, v in [("self-consistency", 0)] + [("genrm-best-of-n", v) for v in verifications]:
                found = [r for r in mine if r["method"] == method and r["verifications"] == v]
                if not found:
                    line.append("–")
                    continue
                (row,) = found
                figure = f"{row['accuracy']:.2f}"
                figure = f"**{figure}**" if row["accuracy"] == best else figure
                line.append(f"{figure} ({'n' if method == 'self-consistency' else 'S'}={row['solutions']})")
            body.append(line)
        return table(["budget B", "SC"] + [f"GenRM V={v}" for v in verifications], body)

    return build


def genrm_configurations(name: str) -> Callable[[Path], str]:
    """``benchmarks/genrm_vs_sc.py`` with few configurations: one column each, accuracy and the
    mean tokens per problem (prompts included)."""

    def build(results: Path) -> str:
        rows = load(results, name)["rows"]
        labels = list(dict.fromkeys(r["label"] for r in rows))
        body = []
        for budget in sorted({r["budget_completion_tokens"] for r in rows}):
            line = [f"{budget:,}"]
            for i, label in enumerate(labels):
                (row,) = [r for r in rows if r["label"] == label and r["budget_completion_tokens"] == budget]
                line.append(f"{row['accuracy']:.2f} ({row['mean_total_tokens']:,.0f}{' tokens/problem' if i == 0 else ''})")
            body.append(line)
        return table(["budget B"] + labels, body)

    return build


def sc_vs_genrm(results: Path) -> str:
    halves = []
    for dataset in ("gsm8k", "math500"):
        rows = cells(results / SWEEPS / f"sc_vs_genrm_{dataset}")
        half = []
        for n in (1, 4, 8, 16, 32, 64):
            row = cell(rows, "self-consistency", f"n={n}")
            half.append([f"SC n={n}{saturation(row)}", tokens(row), accuracy(row)])
        for n in (1, 2, 4, 8):
            row = cell(rows, "genrm-best-of-n V=2", f"n={n}")
            half.append([f"GenRM S={n} V=2", tokens(row), accuracy(row)])
        halves.append(half)
    body = [left + [""] + right for left, right in zip(*halves, strict=True)]
    return table(["GSM8K-200", "tokens/problem", "accuracy (95 % CI)", "", "MATH-500-100", "tokens/problem",
                  "accuracy (95 % CI)"], body)


def coverage(results: Path) -> str:
    body = []
    for dataset, label in (("gsm8k", "GSM8K-200"), ("math500", "MATH-500-100")):
        data = json.loads((results / SWEEPS / f"sc_vs_genrm_{dataset}" / "coverage.json").read_text())
        curve = data[dataset]["self-consistency"]
        at = dict(zip(curve["k"], curve["coverage"], strict=True))
        fit = curve["fit"]
        body.append([label, f"{at[1]:.3f}", f"{at[8]:.3f}", f"{at[64]:.3f}", f"{fit['a']:.3f}", f"{fit['b']:.3f}",
                     f"{fit['r2']:.3f}"])
    return table(["", "coverage@1", "@8", "@64", "a", "b", "R²"], body)


def accounting_change(results: Path) -> str:
    """Self-consistency's cost per problem in the first run's rows, as published (k/N of the
    pool's prompt and call) and as a direct run at k pays it (the prompt and the call once),
    on the same samples: the pool's prompt is its tokens minus its completion tokens."""
    body = []
    for dataset, label in (("gsm8k", "GSM8K-200"), ("math500", "MATH-500-100")):
        rows = jsonl(results / OLD_SWEEPS / f"sc_vs_genrm_{dataset}" / "problems.jsonl")
        for n in (1, 4, 16, 64):
            picked = [r for r in rows if r["strategy"] == "self-consistency" and r["point"] == f"n={n}"]
            old_tokens = sum(r["cost"]["tokens"] for r in picked) / len(picked)
            old_calls = sum(r["cost"]["calls"] for r in picked) / len(picked)
            new_tokens = 0.0
            for r in picked:
                scale = r["pool"] / r["n"]
                pool_tokens = r["cost"]["tokens"] * scale
                prompt = pool_tokens - r["cost"]["completion_tokens"] * scale
                new_tokens += prompt + r["n"] * (pool_tokens - prompt) / r["pool"]
            new_tokens /= len(picked)
            body.append([label, f"n={n}", f"{old_tokens:,.0f}", f"{old_calls:.3f}", f"{new_tokens:,.0f}", "1",
                         f"{(new_tokens / old_tokens - 1) * 100:+.1f} %"])
    return table(["", "SC", "tokens as published", "calls as published", "tokens as a direct run", "calls",
                  "change"], body)


# The sweeps' model, the embedded Qwen2.5-Coder-0.5B-Instruct (bf16, converted from its GGUF), as
# its config.json gives it: hidden 896, 14 query heads and 2 KV heads of dim 64, 24 layers,
# intermediate 4864. P = 494,032,768 weights that cost a multiply-add per token (all but the input
# embedding table; the converted checkpoint's LM head is untied), the P of the sweeps' FLOPs, and
# also the Hugging Face checkpoint's own parameter count (tied embeddings), the kind of number
# Kinetics' scripts pass (0.752B for Qwen3-0.6B). ``kinetics`` checks it against the rows.
SWEEP_SHAPE = ModelShape(494_032_768, layers=24, d_attn=14 * 64, d_kv=2 * 64)


def prefill_params(row: dict[str, Any], shape: ModelShape = SWEEP_SHAPE) -> float | None:
    """The P a pooled row's fixed (prefill) FLOPs were computed with: 2·P·new + 2·L·d·(p² − cached²)."""
    fixed = row["fixed_cost"]
    prompt, new = fixed["tokens"], fixed["uncached_tokens"]
    if new <= 0:
        return None
    cached = prompt - new
    return (fixed["flops"] - 2 * shape.layers * shape.d_attn * (prompt * prompt - cached * cached)) / (2 * new)


def kinetics(results: Path) -> str:
    """Self-consistency's cost per problem in Kinetics' eFLOPs (``compute.KineticsCost``: their
    ``dense_cost``, I = 562.5), recomputed from the pooled rows: per problem the prompt c (the
    fixed cost's tokens: one copy), the mean generation ḡ (the pool's completion tokens / N) and
    k, then ``dense_cost(c, ḡ, k)``; FLOPs are its compute term (parameters + attention, no
    prefill). Beside it, the extended eFLOPs / FLOPs the rows carry (``cost``: eflops, flops)."""
    model = KineticsCost(SWEEP_SHAPE)
    body = []
    for dataset, label in (("gsm8k", "GSM8K-200"), ("math500", "MATH-500-100")):
        rows = jsonl(results / SWEEPS / f"sc_vs_genrm_{dataset}" / "problems.jsonl")
        for row in rows:
            found = prefill_params(row) if row.get("mode") == "reuse" else None
            if found is not None and abs(found - SWEEP_SHAPE.params) > 1:
                raise ValueError(f"{dataset} row {row['id']}: prefill FLOPs imply P = {found:,.0f}, not {SWEEP_SHAPE.params:,.0f}")
        for n in (1, 4, 16, 64):
            picked = [r for r in rows if r["strategy"] == "self-consistency" and r["point"] == f"n={n}"]
            prompt = generated = compute = effective = flops = extended = 0.0
            for r in picked:
                context, mean = r["fixed_cost"]["tokens"], r["pool_cost"]["completion_tokens"] / r["pool"]
                work, memory = model.dense_cost(context, mean, r["n"])
                prompt, generated = prompt + context, generated + mean
                compute, effective = compute + work, effective + work + memory
                flops, extended = flops + r["cost"]["flops"], extended + r["cost"]["eflops"]
            count = len(picked)
            body.append([label, f"n={n}", f"{prompt / count:.0f}", f"{generated / count:.0f}",
                         f"{compute / count / 1e12:,.2f}", f"{effective / count / 1e12:,.2f}",
                         f"{effective / compute:.2f}×", f"{extended / flops:.2f}×"])
    return table(["", "SC", "prompt tokens", "tokens / sample", "FLOPs (10¹²)", "Kinetics eFLOPs (10¹²)",
                  "eFLOPs / FLOPs", "extended eFLOPs / FLOPs (rows)"], body)


def ttspm(results: Path) -> str:
    """TTSPM (``scaling_models.fit_ttspm``): F(N) = F_max·(1 − (1 − p)^N) fitted by least squares to
    SC's majority accuracy at n = 1…64 (``sweep.jsonl``) and, for the model's own F (Hit@N), to its
    coverage (pass@k, ``coverage.json``) at the same n; N* is the first N whose next sample gains
    less than ε = 0.01. Beside it the sweeps' empirical rule: the first n from which every further
    doubling gains less than 1 point (the rows' ``saturation_point``; on coverage, the same rule
    applied to its points)."""
    from .estimators import saturation as empirical
    from .scaling_models import fit_ttspm

    body = []
    for dataset, label in (("gsm8k", "GSM8K-200"), ("math500", "MATH-500-100")):
        folder = results / SWEEPS / f"sc_vs_genrm_{dataset}"
        rows = [r for r in cells(folder) if r["strategy"] == "self-consistency"]
        ns = [r["mean_n"] for r in rows]
        marked = [f"n={r['mean_n']:g}" for r in rows if r.get("saturation_point")]
        curve = json.loads((folder / "coverage.json").read_text())[dataset]["self-consistency"]
        at = dict(zip(curve["k"], curve["coverage"], strict=True))
        covered = [at[int(n)] for n in ns]
        point = empirical(ns, covered, 0.01)[1]
        lines = [("SC majority@n", [r["accuracy"] for r in rows], marked[0] if marked else "none up to n=64"),
                 ("coverage (pass@n = Hit@N)", covered, f"n={ns[point]:g}" if point is not None else "none up to n=64")]
        for curve_label, values, rule in lines:
            fit = fit_ttspm(ns, values, epsilon=0.01)
            body.append([label, curve_label, f"{fit.f_max:.3f} ± {fit.f_max_se:.3f}", f"{fit.p:.3f} ± {fit.p_se:.3f}",
                         f"{fit.r2:.3f}", f"{fit.n_star}", rule])
    return table(["", "curve (n = 1, 2, 4, …, 64)", "F_max", "p", "R²", "TTSPM N* (ε = 0.01)",
                  "empirical rule: first n whose doublings gain < 1 point"], body)


THINKING = ("self-consistency", "early-stop-sc", "compute-optimal", "parallel-thinking", "summarization-loop",
            "spawn-join")


def thinking(dataset: str) -> Callable[[Path], str]:
    def build(results: Path) -> str:
        rows = cells(results / SWEEPS / f"thinking_{dataset}")
        budgets = sorted({r["budget"] for r in rows})
        body = []
        for strategy in THINKING:
            line = [strategy]
            for budget in budgets:
                row = cell(rows, strategy, f"tokens={budget:g}")
                line += [accuracy(row), tokens(row)]
            body.append(line)
        label = {"gsm8k": "GSM8K-200", "math500": "MATH-500-100"}[dataset]
        header = [label]
        for budget in budgets:
            header += [f"budget {budget:,.0f}: accuracy", "tokens"]
        return table(header, body)

    return build


def width(dataset: str) -> Callable[[Path], str]:
    def build(results: Path) -> str:
        rows = cells(results / SWEEPS / f"width_{dataset}")
        body = []
        for n in (4, 8, 16):
            sc, esc, pt = (cell(rows, s, f"n={n}") for s in ("self-consistency", "early-stop-sc", "parallel-thinking"))
            change = (esc["usage"]["tokens"] / sc["usage"]["tokens"] - 1) * 100
            body.append([str(n), accuracy(sc), tokens(sc), accuracy(esc), f"{tokens(esc)} ({change:+.1f} %)",
                         accuracy(pt), tokens(pt)])
        return table(["n", "SC accuracy", "tokens", "early-stop-sc accuracy", "tokens (vs SC)",
                      "parallel-thinking accuracy", "tokens"], body)

    return build


def puzzles(results: Path) -> str:
    rows = cells(results / SWEEPS / "puzzles")
    body = []
    for strategy in ("self-consistency", "parallel-thinking", "spawn-join"):
        line = [strategy]
        for dataset in ("countdown", "game24"):
            row = next(r for r in rows if r["strategy"] == strategy and r["dataset"] == dataset)
            line += [accuracy(row), tokens(row)]
        body.append(line)
    return table(["", "Countdown accuracy", "tokens", "Game of 24 accuracy", "tokens"], body)


def tree_vs_sc(dataset: str) -> Callable[[Path], str]:
    def build(results: Path) -> str:
        rows = cells(results / SWEEPS / f"tree_vs_sc_{dataset}")
        worst = cells(results / SWEEPS / f"tree_vs_sc_{dataset}_worst")
        budgets = sorted({r["budget"] for r in rows})
        lines = [("self-consistency (expected cost)", rows, "self-consistency"),
                 ("self-consistency (worst case)", worst, "self-consistency"),
                 ("rebase", rows, "rebase"), ("ets", rows, "ets"), ("beam-search", rows, "beam-search")]
        body = []
        for label, source, strategy in lines:
            line = [label]
            for budget in budgets:
                row = cell(source, strategy, f"uncached_tokens={budget:g}")
                mean_k = f", k̄ {row['mean_n']:.1f}" if row.get("mean_n") is not None else ""
                line.append(f"{row['accuracy']:.3f} ({tokens(row, 'uncached_tokens')}{mean_k})")
            body.append(line)
        return table(["uncached-token budget per problem →"] + [f"{b:,.0f}" for b in budgets], body)

    return build


def genrm_rescored(dataset: str) -> Callable[[Path], str]:
    """Issue 22's GenRM re-run: self-consistency, GenRM V=2 as published (old scoring, from the
    first sweep), GenRM V=2 under the official scoring and GenRM with the paper's prompt at 1,024
    verification tokens; tokens per problem as charged (prompts + completions) and generated
    tokens only (the paper's count)."""

    def build(results: Path) -> str:
        rows = cells(results / RERUNS / f"genrm_rescored_{dataset}")
        published = cells(results / SWEEPS / f"sc_vs_genrm_{dataset}")
        lines = [(f"SC n={n}", rows, "self-consistency", n) for n in (1, 2, 4, 8, 16, 32, 64)]
        for label, source, strategy in (("GenRM V=2, published (old scoring)", published, "genrm-best-of-n V=2"),
                                        ("GenRM V=2, official scoring", rows, "genrm-best-of-n V=2"),
                                        ("GenRM V=2, paper's prompt, 1,024 tokens", rows, "genrm-best-of-n paper V=2")):
            lines += [(f"{label}, S={n}", source, strategy, n) for n in (1, 2, 4, 8)]
        body = []
        for label, source, strategy, n in lines:
            row = cell(source, strategy, f"n={n}")
            body.append([label, accuracy(row), tokens(row), tokens(row, "completion_tokens")])
        name = {"gsm8k": "GSM8K-200", "math500": "MATH-500-100"}[dataset]
        return table([name, "accuracy (95 % CI)", "tokens / problem", "generated tokens / problem"], body)

    return build


def parathinker(results: Path) -> str:
    """ParaThinker's comparisons: P parallel paths + synthesis against one sequential path with
    the same token budget and against the vote of P paths (``sweeps/parathinker_gsm8k.yaml``)."""
    rows = cells(results / RERUNS / "parathinker_gsm8k")
    body = []
    for paths in (4, 8):
        for label, strategy in ((f"parallel-thinking, {paths} paths", "parallel-thinking"),
                                (f"one sequential path of {paths * 512:,} tokens", f"sequential-{paths * 512}"),
                                (f"self-consistency, vote of {paths}", "self-consistency")):
            row = cell(rows, strategy, f"n={paths}")
            body.append([label, accuracy(row), tokens(row), tokens(row, "completion_tokens")])
    return table(["GSM8K-200", "accuracy (95 % CI)", "tokens / problem", "generated tokens / problem"], body)


def puzzles_apr(results: Path) -> str:
    """The puzzles under APR's limits (``sweeps/puzzles_apr.yaml``): a 4,096-token window per
    thread, 20,000 generated tokens per problem."""
    rows = cells(results / RERUNS / "puzzles_apr")
    body = []
    for strategy in ("self-consistency", "sequential-4k", "spawn-join"):
        line = [strategy]
        for dataset in ("countdown", "game24"):
            row = next(r for r in rows if r["strategy"] == strategy and r["dataset"] == dataset)
            line += [accuracy(row), tokens(row, "completion_tokens")]
        body.append(line)
    return table(["", "Countdown accuracy", "generated tokens", "Game of 24 accuracy", "generated tokens"], body)


def tree_search(name: str) -> Callable[[Path], str]:
    def build(results: Path) -> str:
        from .tree_search import markdown_table

        return markdown_table(json.loads((results / name).read_text()))

    return build


def deepconf(name: str, spec: str) -> Callable[[Path], str]:
    """``benchmarks/deepconf_proof.py``: per k, accuracy and generated tokens per problem of
    self-consistency (the pool's first k traces), DeepConf online as the engine ran it, the
    online rule replayed on the pool's complete traces, and DeepConf offline; the saving is
    against self-consistency at the same k."""
    from .deepconf_proof import online_label

    def render(results: Path) -> str:
        data = load(results, name)["datasets"][spec]
        summary = data["summary"]
        body = []
        for row in summary["rows"]:
            sc = row["sc"]
            for key, label in [("sc", "self-consistency"), (online_label(10), "DeepConf-low online (engine)"),
                               ("replay-10", "DeepConf-low online (replayed on the pool)"),
                               ("offline-10", "DeepConf-low offline"), (online_label(90), "DeepConf-high online (engine)"),
                               ("replay-90", "DeepConf-high online (replayed on the pool)"),
                               ("offline-90", "DeepConf-high offline")]:
                if key not in row:
                    continue
                cell = row[key]
                saved = "–" if key == "sc" else f"{1 - cell['tokens'] / sc['tokens']:.1%}"
                body.append([str(row["k"]), label, f"{cell['accuracy']:.3f}", f"{cell['tokens']:,.0f}", saved])
        return table(["k", "method", "accuracy", "generated tokens / problem", "fewer tokens than SC"], body)

    return render


def deepconf_confidence(name: str, spec: str, *, runs: bool = True) -> Callable[[Path], str]:
    """The pool's traces by lowest group confidence: right vs wrong counts per bin, the AUROC,
    and (``runs``) the wall time of each run (one round each: no interval; a run of several
    rounds has its ``deepconf-rounds`` table instead)."""

    def render(results: Path) -> str:
        summary = load(results, name)["datasets"][spec]["summary"]
        conf = summary["confidence"]
        edges = conf["edges"]
        body = [[f"{edges[b]:.2f}–{edges[b + 1]:.2f}", str(conf["right"][b]), str(conf["wrong"][b])]
                for b in range(len(edges) - 1)]
        lines = [table(["lowest group confidence", "right traces", "wrong traces"], body), "",
                 f"AUROC of lowest group confidence, right vs wrong traces: {conf['auroc']:.3f} "
                 f"({conf['right_traces']} right, {conf['wrong_traces']} wrong).", ""]
        if not runs:
            return "\n".join(lines)
        walls = summary["wall_s"]
        tokens = summary["generated_tokens"]
        lines.append(table(["run", "wall s", "generated tokens", "online traces stopped"],
                           [[label, ", ".join(f"{w:.1f}" for w in walls[label]),
                             ", ".join(f"{t:,}" for t in tokens[label]),
                             f"{summary['stopped_share'][label.removeprefix('online-')]:.1%}"
                             if label.startswith("online-") else "–"]
                            for label in sorted(walls)]))
        return "\n".join(lines)

    return render


def deepconf_rounds(name: str, spec: str, k: int, shards: str, prefix: str) -> Callable[[Path], str]:
    """A DeepConf run of alternating pool / online-10 rounds (``--rounds R``), paired by round
    (``deepconf_proof.paired_rounds``): wall seconds of each run (the slowest shard's, and the
    mean over the shards from ``shards``' phase lines of the shards named ``prefix``0, 1, ...),
    the online / pool ratio, generated tokens, the share of online traces stopped and, at ``k``,
    each round's accuracy of SC, the replay and the engine; then the ratios' mean, range and
    bootstrap interval, and the accuracies' and tokens' means over the rounds."""

    def render(results: Path) -> str:
        from .deepconf_proof import paired_rounds

        report = load(results, name)
        phases = load(results, shards)["shards"]
        paired = paired_rounds(report["datasets"][spec], k, report["options"]["warmup"], 10.0,
                               [phases[f"{prefix}{i}"] for i in range(report["shards"])])
        rows = paired["rounds"]
        body = [[str(r["round"]), "pool" if r["first"] == "pool" else "online-10",
                 f"{r['pool_wall_s']:.2f} / {r['online_wall_s']:.2f}", f"{r['ratio']:.3f}",
                 f"{r['pool_shard_mean_s']:.2f} / {r['online_shard_mean_s']:.2f}", f"{r['shard_mean_ratio']:.3f}",
                 f"{r['pool_tokens']:,} / {r['online_tokens']:,}", f"{r['stopped_share']:.1%}",
                 f"{r['sc']['accuracy']:.3f} / {r['replay']['accuracy']:.3f} / {r['online']['accuracy']:.3f}"]
                for r in rows]
        text = table(["round", "first", "wall s, slowest shard (pool / online-10)", "online / pool",
                      f"wall s, mean of {report['shards']} shards (pool / online-10)", "online / pool",
                      "generated tokens (pool / online-10)", "online traces stopped",
                      f"accuracy at k = {k} (SC / replay-10 / online-10)"], body)

        def interval(pairing: dict[str, Any]) -> str:
            low, high = pairing["interval"]
            return (f"mean {pairing['mean']:.3f}, per round {min(pairing['ratios']):.3f}–{max(pairing['ratios']):.3f}, "
                    f"95 % bootstrap interval [{low:.3f}, {high:.3f}] over {pairing['rounds']} rounds")

        def average(key: str, field: str) -> float:
            return sum(r[key][field] for r in rows) / len(rows)

        saved = 1 - average("online", "tokens") / average("sc", "tokens")
        walls = (f"Wall time online-10 / pool, slowest shard: {interval(paired['pairing'])}; mean of the shards: "
                 f"{interval(paired['shard_pairing'])} (a bootstrap over fewer than ~8 rounds is too narrow).")
        means = (f"Over the {len(rows)} rounds at k = {k}: self-consistency {average('sc', 'accuracy'):.4f} at "
                 f"{average('sc', 'tokens'):,.0f} generated tokens / problem, replay-10 "
                 f"{average('replay', 'accuracy'):.4f} at {average('replay', 'tokens'):,.0f}, online-10 (engine) "
                 f"{average('online', 'accuracy'):.4f} at {average('online', 'tokens'):,.0f} "
                 f"({saved:.1%} fewer than SC).")
        return f"{text}\n{walls}\n\n{means}\n"

    return render


def grading_speed(name: str) -> Callable[[Path], str]:
    """``benchmarks/grading_speed.py``: (gold, response) pairs graded by ``verifiers.grade_many``
    from a cold start, the seconds, pairs per second, and the extraction pass alone."""

    def build(results: Path) -> str:
        data = load(results, name)
        load_avg = data.get("load_average_1min_before")
        body = [[f"{data['pairs']:,}", f"**{data['total_s']:.1f}**", f"{data['items_per_s']:,.0f}",
                 f"{data['extraction_only_s']:.2f}", f"{data['distinct_extracted_pairs']:,}",
                 f"{data['mean_response_chars']:,.0f}", data["machine"], data["date"],
                 "–" if load_avg is None else f"{load_avg:.2f}"]]
        return table(["pairs", "total s", "pairs/s", "extraction only s", "distinct (gold, answer)",
                      "mean response chars", "machine", "date", "1-min load before"], body)

    return build


def grading_verdicts(name: str) -> Callable[[Path], str]:
    """The verdicts of that run by kind of synthesised response (what the grader said, not a
    hand-checked accuracy)."""

    def build(results: Path) -> str:
        data = load(results, name)
        body = [[kind, *(f"{counts.get(v, 0):,}" for v in ("True", "False", "None"))]
                for kind, counts in data["verdicts_by_kind"].items()]
        return table(["kind of response", "True", "False", "None"], body)

    return build


def ray_ledger(name: str) -> Callable[[Path], str]:
    """``benchmarks/ray_ledger_rate.py``: reserve + commit pairs per second through the Ray ledger
    actor, by callers at once and journal, next to the same pairs on an in-process ledger."""

    def build(results: Path) -> str:
        data = load(results, name)
        local = data["in_process"]
        body = [["in-process `Ledger` (no Ray)", "1", "no", f"{local['pairs']:,}", f"**{local['pairs_per_s']:,.0f}**",
                 f"{local['seconds'] / local['pairs'] * 1000:.3f}"]]
        body += [["ledger actor", str(row["callers"]), "yes" if row["journal"] else "no", f"{row['pairs']:,}",
                  f"**{row['pairs_per_s']:,.0f}**", f"{row['ms_per_pair_per_caller']:.2f}"] for row in data["actor"]]
        return table(["ledger", "callers at once", "journal (fsync)", "pairs", "pairs/s (all callers)",
                      "ms per pair, per caller"], body)

    return build


def ray_speedup(name: str) -> Callable[[Path], str]:
    """The same file's speed-up runs: 1 and 2 Ray workers on the stub with a fixed latency."""

    def build(results: Path) -> str:
        data = load(results, name)
        one = data["speedup"][0]
        body = [[str(row["workers"]), str(row["problems"]), str(row["concurrency_per_worker"]),
                 f"{row['startup_s']:.1f}", f"{row['solve_s']:.2f}", f"{row['problems_per_s']:.1f}",
                 f"**{one['solve_s'] / row['solve_s']:.2f}×**"] for row in data["speedup"]]
        return table(["workers", "problems", "in flight per worker", "start-up s", "solve s", "problems/s",
                      "speed-up"], body)

    return build


def atts_speedup(name: str) -> Callable[[Path], str]:
    """``benchmarks/atts_speedup.py``: ATTS (draft + target) and self-consistency on the target
    alone, per method: accuracy, seconds, target decoded tokens and FLOPs per problem; then the
    speed-up against the cheapest self-consistency point at ATTS's accuracy (or the best one), as
    ratios in the same columns (that point's seconds, target tokens, FLOPs over ATTS's)."""

    def build(results: Path) -> str:
        data = load(results, name)
        body = [[method, str(s["problems"]), f"{s['accuracy']:.2f}", f"{s['seconds']:.1f}",
                 f"{s['target_completion_tokens']:.0f}", f"{s['flops']:.3g}",
                 "–" if s["rejection_rate"] is None else f"{s['rejection_rate']:.2f}"]
                for method, s in data["methods"].items()]
        ratios = [("–" if data[k] is None else f"**{data[k]:.2f}×**")
                  for k in ("speedup_seconds", "target_decode_ratio", "flops_ratio")]
        body.append([f"ATTS vs {data['against']}", "", "matched" if data["matched_accuracy"] else "NOT matched",
                     *ratios, ""])
        return table(["method", "problems", "accuracy", "s / problem", "target decoded tokens / problem",
                      "FLOPs / problem", "rejection rate"], body)

    return build


MULTI_MODEL = "multi_model_h200x2_2026-11-29"  # issue 17: three models on one H200 (benchmarks/multi_model.py)
MULTI_ORDER = ("sc-mid-n1", "sc-mid-n4", "sc-mid-n8", "sc-large-n1", "sc-large-n4", "sc-large-n8",
               "cascade", "ensemble-vote", "skill-route", "atts")


def multi_model_runs(dataset: str) -> Callable[[Path], str]:
    """Issue 17 (``benchmarks/multi_model.py``): per run folder of one dataset, accuracy, tokens,
    generated tokens, FLOPs and calls per problem and tokens per role, from its ``results.jsonl``;
    the most accurate "large model alone" (self-consistency) point that spends no more FLOPs per
    problem; for the cascade the share each model answered, for ATTS the share of its samples the
    turn limit cut before they ended (``info.jsonl``, the traces' outcome info)."""

    def build(results: Path) -> str:
        from .multi_model import label_summary

        folder = results / MULTI_MODEL / dataset
        runs = {label: label_summary(folder / label) for label in MULTI_ORDER}
        alone = [(label, run) for label, run in runs.items() if label.startswith("sc-large-")]
        body = []
        for label, run in runs.items():
            cheaper = [(other, o) for other, o in alone if o["flops"] <= run["flops"] * (1 + 1e-9)]
            best = max(cheaper, key=lambda pair: pair[1]["accuracy"]) if cheaper else None
            note = ""
            if label in ("cascade", "atts"):
                infos = jsonl(folder / label / "info.jsonl")
                if label == "cascade":
                    answered = [info["info"]["answered_by"] for info in infos]
                    note = "answered: " + ", ".join(f"{m} {answered.count(m) / len(answered):.1%}"
                                                    for m in ("small", "mid", "large"))
                else:
                    samples = [len(s) for info in infos for s in info["info"]["samples"]]
                    turns = max(samples)
                    boxed = sum("\\boxed" in (info["text"] or "") for info in infos) / len(infos)
                    if all("unfinished" in info["info"] for info in infos):  # recorded since turns=16
                        cut = sum(info["info"]["unfinished"] for info in infos)
                        steps = [(info["info"]["draft_steps"], info["info"]["target_steps"]) for info in infos]
                        by_target = sum(t for _, t in steps) / (sum(d + t for d, t in steps) or 1)
                        note = (f"{cut / len(samples):.1%} of samples cut at {turns} turns; {boxed:.1%} of answers "
                                f"boxed; target rewrote {by_target:.1%} of steps")
                    else:
                        note = (f"{sum(t == turns for t in samples) / len(samples):.1%} of samples used all "
                                f"{turns} turns; {boxed:.1%} of answers boxed")
            body.append([f"`{label}`", str(run["problems"]), f"{run['accuracy']:.3f}", f"{run['tokens']:,.0f}",
                         f"{run['completion_tokens']:,.0f}", f"{run['flops'] / 1e12:.2f}", f"{run['calls']:.2f}",
                         ", ".join(f"{role} {usage['tokens']:,.0f}" for role, usage in run["by_role"].items()),
                         "–" if best is None or best[0] == label else f"{best[1]['accuracy']:.3f} (`{best[0]}`)",
                         note])
        return table(["run", "problems", "accuracy", "tokens / problem", "generated / problem", "TFLOPs / problem",
                      "calls / problem", "tokens / problem by role", "large alone at ≤ these FLOPs", "note"], body)

    return build


def multi_model_cascade_calibration(results: Path) -> str:
    """Issue 17's cascade calibrations: the thresholds the run used (chosen when a stage that
    never answers still ran and cost) against those the current rule picks from the same stored
    calibration records (such a stage is skipped), with their in-sample accuracy and cost saved."""
    from .calibrate_thresholds import select_thresholds

    body = []
    for dataset in ("gsm8k", "math500"):
        folder = results / MULTI_MODEL / dataset / "calibration"
        used = load(folder, "cascade.json")
        records = jsonl(folder / "cascade.records.jsonl")
        now = select_thresholds(records, used["models"], target_accuracy=used["target_accuracy"],
                                relative=used["relative"], signal=used["signal"])
        for label, made in (("as run", used), ("current rule (a null stage is skipped)", now)):
            notes = made["notes"]
            never = "never sure (ran)" if made is used else "skip"  # what null meant for the run / means now
            body.append([dataset, label, ", ".join(never if t is None else f"{t:g}" for t in made["thresholds"]),
                         f"{notes['target']:.3f}", f"{notes['accuracy']:.3f}",
                         ", ".join(f"{m} {s:.0%}" for m, s in notes["answered_share"].items()),
                         f"{notes['cost_saved']:+.1%}"])
    return table(["dataset", "rule", "thresholds: small, mid (agreement)", "target accuracy", "accuracy (40 held-out)",
                  "answered", "FLOPs saved vs large alone"], body)


LATENCY_PHASES = {"first_path_s": "first path's call ends", "last_path_s": "last path's call ends",
                  "gap_s": "gap: last path to the synthesis call (vote, prompt)", "synthesis_s": "synthesis call"}


def latency_all(name: str, second: str | None = None) -> Callable[[Path], str]:
    """``benchmarks/latency.py``: per strategy, p50 / p95 seconds per problem (one problem at a
    time), each over self-consistency's **on the same problems** (``latency.ratio_to_sc``,
    recomputed from the per-problem seconds: a strategy cut after k problems is compared with
    SC's first k), tokens and calls per problem, and in plain words why a strategy has no
    figure; then parallel thinking's phases from its traces. ``second``: a second call's JSON
    (the strategies that need roles, with its own SC; its engines differ): a
    strategy without a figure in the first call takes the second's, and the second's other
    strategies follow, each against the second call's SC, which runs on that call's
    ``--backend`` (not on a role's model): its row sits under call 1's SC and each call-2 row
    names that baseline. A run from before p50 / p95 were
    stored (the first, 2026-11-22) gets them from its per-problem seconds, and "–" for what it
    did not record. Before a run is stored under ``name`` (or ``second``) the table says so
    instead of failing."""
    from .latency import no_figure_reason, percentile, ratio_to_sc

    def rows(data: dict[str, Any], note: str = "") -> dict[str, list[str]]:
        """{label: row} of one call, each timed strategy against that call's SC."""
        strategies = data["strategies"]
        sc = next((s for label, s in strategies.items() if label.startswith("self-consistency ") and s.get("seconds")),
                  None)
        out = {}
        for label, s in strategies.items():
            if not s.get("seconds"):
                reason = s.get("reason") or no_figure_reason(s.get("status", ""))
                out[label] = [label, "0", "–", "–", "–", "–", "–", "–", "–", "–", "; ".join(filter(None, [note, reason]))]
                continue
            ratio = None if sc is None else ratio_to_sc(s, sc)
            status = "" if s.get("status", "done") == "done" else s["status"]
            out[label] = [label, str(len(s["seconds"])), f"{percentile(s['seconds'], 0.5):.2f}",
                          f"{percentile(s['seconds'], 0.95):.2f}",
                          *(("–", "–", "–") if ratio is None else
                            (str(ratio["problems"]), f"**{ratio['p50']:.2f}×**", f"**{ratio['p95']:.2f}×**")),
                          *("–" if key not in s else f"{s[key]:,.{digits}f}"
                            for key, digits in (("mean_tokens", 0), ("mean_completion_tokens", 0), ("mean_calls", 1))),
                          "; ".join(filter(None, [note, status]))]
        return out

    def engine(spec: dict[str, Any]) -> str:
        share = spec.get("gpu_memory_utilization")
        return spec.get("backend", "?") + ("" if share is None else f" (gpu {share:g})")

    def described(data: dict[str, Any]) -> str:
        command = f"`{data['command']}`" if "command" in data else "as above (not stored with this run)"
        roles = data.get("roles") or {}
        # A roles call runs several engines: which model each role (and the baseline) ran on.
        models = (f"default backend (its self-consistency) {engine(data['backend'])}, roles "
                  + ", ".join(f"{role} {engine(spec)}" for role, spec in roles.items())) if roles \
            else data["backend"].get("backend")
        return (f"{command}; {data['dataset']}, {data['problems']} problems, width {data.get('paths', '–')}, "
                f"max_tokens {data.get('max_tokens', '–')}; {models} on {data['machine']}, {data['date']}.")

    def build(results: Path) -> str:
        if not (results / name).is_file():
            return f"No run stored yet (`benchmarks/results/{name}`): the command is in docs/vllm.md.\n"
        data = load(results, name)
        body = rows(data)
        lines = [("Call 1: " if second else "Command: ") + described(data)]
        if second and (results / second).is_file():
            other = load(results, second)
            baseline = other["backend"].get("backend")
            if baseline == data["backend"].get("backend"):
                baseline += ", call 1's model"
            lines.append("Call 2 (rows marked \"call 2\", each against call 2's own self-consistency, "
                         f"which ran on its default backend {baseline}, not on a role's model): " + described(other))
            twins: dict[str, list[str]] = {}  # call 2's own run of a call-1 strategy (its SC): under call 1's
            for label, row in rows(other, f"call 2, vs call 2's SC on {baseline}").items():
                if label in body and body[label][1] == "0":
                    body[label] = row  # no figure in call 1: call 2's
                elif label in body:
                    note = f"call 2's baseline, on {baseline}" if label.startswith("self-consistency ") else row[-1]
                    twins[label] = [f"{label} (call 2)", *row[1:-1], note]
                else:
                    body[label] = row
            ordered = {}
            for label, row in body.items():
                ordered[label] = row
                if label in twins:
                    ordered[twins[label][0]] = twins[label]
            body = ordered
        elif second:
            lines.append(f"Call 2 (the strategies that need roles: atts, cascade): no run stored yet "
                         f"(`benchmarks/results/{second}`; the command is in docs/vllm.md).")
        lines.append("p50 / SC and p95 / SC: the strategy's p50 (p95) over self-consistency's on the same problems, "
                     "\"vs SC over\" of them (problems are solved in order, so a strategy cut after k problems is "
                     "compared with SC's first k); p50 s and p95 s are over every problem the strategy timed.")
        lines.append(table(["strategy", "problems timed", "p50 s", "p95 s", "vs SC over", "p50 / SC", "p95 / SC",
                            "tokens / problem", "generated tokens / problem", "calls / problem", "note"],
                           list(body.values())))
        phases = []
        for label, s in data["strategies"].items():
            for key, what in LATENCY_PHASES.items():
                if key in s.get("phases", {}):
                    phase = s["phases"][key]
                    phases.append([label, what, f"{phase['p50_s']:.3f}", f"{phase['p95_s']:.3f}", f"{phase['mean_s']:.3f}"])
        if phases:
            lines.append(table(["parallel thinking", "phase (seconds from the solve's start; the synthesis: its own time)",
                                 "p50 s", "p95 s", "mean s"], phases))
        return "\n\n".join(line.rstrip("\n") for line in lines) + "\n"

    return build


ISSUE_18_21 = "sweeps_h200_2026-11-29c"  # issue 18's sweeps (cut, then resumed) and issue 21's certainty probe
ISSUE_18_LAST = "sweeps_h200_2026-11-30"  # issue 18's two added cheatsheet sweeps (the 1.5B; GSM8K)


def paired_throughput(runs: tuple[tuple[str, str, str], ...]) -> Callable[[Path], str]:
    """Issue 19's paired rounds (``vllm_throughput`` / ``serve_throughput``), one row per run:
    the rounds it finished (a run cut by its call's time limit keeps them, ``partial``), each
    side's tokens/s per round, the paired ratios' mean with its 95 % bootstrap interval
    (``pairing.paired_ratio``, recomputed from the rounds) and the loop CPU per sample."""

    def build(results: Path) -> str:
        from .pairing import loop_cpu_per_sample, paired_ratio

        body = []
        for label, name, raw_side in runs:
            data = load(results, name)
            rounds = data["rounds"]
            framework, raw = rounds["framework"], rounds[raw_side]
            pairing = paired_ratio([r["tokens_per_s"] for r in framework], [r["tokens_per_s"] for r in raw])
            settings = data["settings"]
            samples = settings["limit"] * settings["n"]
            cpu = loop_cpu_per_sample({"framework": framework, raw_side: raw}, samples, raw=raw_side)
            done = f"{pairing['rounds']} of {settings['rounds']}" + (" (cut)" if data.get("partial") else "")
            low, high = pairing["interval"]
            body.append([label, done, ", ".join(f"{r['tokens_per_s'] / 1000:.1f}k" for r in raw),
                         ", ".join(f"{r['tokens_per_s'] / 1000:.1f}k" for r in framework),
                         ", ".join(f"{x:.3f}" for x in pairing["ratios"]),
                         f"{pairing['mean']:.3f} [{low:.3f}, {high:.3f}]",
                         f"{cpu[raw_side]:.3f} / {cpu['framework']:.3f}"])
        return table(["path", "paired rounds", "raw tok/s", "framework tok/s", "ratios (ABBA)",
                      "framework / raw: mean [95 % interval]", "loop CPU ms / sample (raw / framework)"], body)

    return build


def _sweep_rows(name: str, dataset: str, strategies: tuple[str, ...], *, offline: bool = False,
                memory: bool = False, folder: str = ISSUE_18_21) -> Callable[[Path], str]:
    """Every point of some strategies of one dataset in a sweep folder: accuracy (95 % CI),
    problems, tokens, generated tokens and calls per problem. ``offline`` (sleep-time compute)
    adds the offline notes' tokens per problem, which the test-time columns leave out: the mean
    of the point's rows' ``info.sleep_tokens_amortised`` (its context's offline prompt +
    completion tokens divided by the context's questions; "—" for a label without notes).
    ``memory`` (Dynamic Cheatsheet) adds the accuracy of the first and second half of the
    dataset's order (``halves``: where a memory that helps shows), the entries the problems
    committed (``info.entry``), the problems the budget stopped (a call cut or refused:
    ``stopped_by``) and the most calls one problem made (solve and curate are 2; a run code
    block adds a call)."""

    def build(results: Path) -> str:
        from .halves import report

        out = results / folder / name
        rows = [r for r in cells(out) if r["dataset"] == dataset]
        problems = [r for r in jsonl(out / "problems.jsonl") if r["dataset"] == dataset]
        amortised: dict[tuple[str, str], list[float]] = {}
        if offline:
            for r in problems:
                if "sleep_tokens_amortised" in (r.get("info") or {}):
                    amortised.setdefault((r["strategy"], r["point"]), []).append(r["info"]["sleep_tokens_amortised"])
        split = {(h["strategy"], h["point"]): h for h in report(out) if h["dataset"] == dataset} if memory else {}
        body = []
        for strategy in strategies:
            for row in (r for r in rows if r["strategy"] == strategy):
                line = [strategy, row["point"], accuracy(row), str(row["n_problems"]), tokens(row),
                        tokens(row, "completion_tokens")]
                if offline:
                    shares = amortised.get((strategy, row["point"]))
                    line.append(f"{sum(shares) / len(shares):,.0f}" if shares else "—")
                line.append(f"{row['usage']['calls']:.1f}")
                if memory:
                    half = split[(strategy, row["point"])]
                    mine = [r for r in problems if r["strategy"] == strategy and r["point"] == row["point"]]
                    line += [f"{half[part]['accuracy']:.3f} ({half[part]['n']})" for part in ("first", "second")]
                    line += [str(sum(1 for r in mine if (r.get("info") or {}).get("entry")))
                             if strategy.startswith("cheatsheet") else "—",
                             str(sum(1 for r in mine if r.get("stopped_by"))),
                             f"{max(r['cost']['calls'] for r in mine):.0f}"]
                body.append(line)
        header = ["strategy", "point", "accuracy (95 % CI)", "problems", "tokens / problem", "generated / problem"]
        if offline:
            header.append("offline notes / problem (amortised, not in tokens)")
        header.append("calls / problem")
        if memory:
            header += ["first half (problems)", "second half (problems)", "entries stored", "stopped by the budget",
                       "most calls on a problem"]
        return table(header, body)

    return build


def cheatsheet_entries(memories: tuple[tuple[str, str, str], ...]) -> Callable[[Path], str]:
    """Issue 18: what each stored cheatsheet memory holds (``memory_audit``): (label, memory file
    under ``results``, dataset) per row; "—" where a dataset's examples cannot be checked."""

    def build(results: Path) -> str:
        from .memory_audit import audit

        body = []
        for label, name, dataset in memories:
            found = audit(results / name, dataset)
            checked = ("expression", "solves_its_problem")
            body.append([label, f"`{name}`", str(found["entries"]), str(found["placeholder"]), str(found["code"]),
                         *(str(found[key]) if "checked" in found else "—" for key in checked)])
        return table(["run", "memory file", "entries", "copy the template's placeholder", "hold code",
                      "example is an expression", "example solves its own problem"], body)

    return build


def plan_search_common(dataset: str, title: str) -> Callable[[Path], str]:
    """PlanSearch against repeated sampling on the problems of ``dataset`` both finished (a call
    may cut either): pass@k over each pool (coverage.json's unbiased estimator, recomputed on
    those problems from problems.jsonl's per-problem pass@k) and tokens per problem. When one
    strategy finished more problems than that, a second table gives its figures on all of them."""

    def build(results: Path) -> str:
        from .estimators import pass_at_k

        rows = jsonl(results / ISSUE_18_21 / "plan_search_code" / "problems.jsonl")
        rows = [r for r in rows if r["dataset"] == dataset]
        strategies = ("plan-search", "repeated-sampling")
        ids = {s: {r["id"] for r in rows if r["strategy"] == s} for s in strategies}
        common = ids["plan-search"] & ids["repeated-sampling"]

        def body(strategy: str, problems: set[str]) -> list[list[str]]:
            lines = []
            points = sorted({r["point"] for r in rows if r["strategy"] == strategy}, key=lambda p: int(p.split("=")[1]))
            for point in points:
                mine = [r for r in rows if r["strategy"] == strategy and r["point"] == point and r["id"] in problems]
                k = int(point.split("=")[1])
                # A pool smaller than k (PlanSearch wrote fewer programs than asked) is all that
                # strategy produces at k: its pass@k is that of the whole pool, as its row's pick is.
                passed = sum(pass_at_k(r["pool"], r["pool_correct"], min(k, r["pool"])) for r in mine) / len(mine)
                chosen = sum(r["correct"] for r in mine) / len(mine)
                cost = sum(r["cost"]["tokens"] for r in mine) / len(mine)
                lines.append([strategy, str(k), f"{passed:.3f}", f"{chosen:.3f}", f"{cost:,.0f}"])
            return lines

        header = ["strategy", "k (programs)", "pass@k", "chosen program passes", "tokens / problem"]
        text = (f"{title}, the {len(common)} problems both finished:\n\n"
                + table(header, [line for s in strategies for line in body(s, common)]))
        for strategy in strategies:
            if len(ids[strategy]) > len(common):
                text += (f"\n{title}, {strategy} alone on the {len(ids[strategy])} problems it finished:\n\n"
                         + table(header, body(strategy, ids[strategy])))
        # Rows pooled before the sweep charged PlanSearch's observation call in full (fixed_cost
        # without calls) spread it k/N over the programs: their costs below k = N are a lower bound.
        small = {(r["strategy"], r["id"], r["pool"]) for r in rows if r["pool"] < int(r["point"].split("=")[1])}
        for strategy, problem, size in sorted(small):
            text += (f"\nOn problem {problem} {strategy} wrote {size} programs: its pass@k above k = {size} is that "
                     f"of those {size}.\n")
        before = {r["id"] for r in rows if r["strategy"] == "plan-search" and not r.get("fixed_cost", {}).get("calls")}
        if before:
            text += (f"\nPlanSearch's tokens below the pool's size are a lower bound on {len(before)} of its "
                     f"{len(ids['plan-search'])} problems (pooled before its observation call was charged in full).\n")
        return text

    return build


def two_gpu(folder: str, rounds: tuple[str, ...]) -> Callable[[Path], str]:
    """Issue 16 (``benchmarks/two_gpu.py``): per configuration, generated tokens/s after the
    engines were loaded in each round (each round one call, its configurations one after the
    other), the scaling against one GPU within that round and over the rounds' means, per-GPU
    efficiency, the end-to-end rate (engine start-up included), accuracy, and what the run
    ledger charged against the run budget."""

    def build(results: Path) -> str:
        from .two_gpu import mean_rates

        reports = [load(results, f"{folder}/{name}") for name in rounds]
        runs = [{run["config"]: run for run in report["runs"]} for report in reports]
        mean = mean_rates(reports)
        body = []
        for name in mean:
            each = [r[name] for r in runs]
            scaling = mean[name] / mean["one_gpu"]
            body.append([f"`{name}`", str(each[0]["gpus"]),
                         ", ".join(f"{r['tokens_per_s'] / 1000:.1f}k" for r in each),
                         ", ".join(f"{r['scaling']:.2f}" for r in each),
                         f"{scaling:.2f}", f"{scaling / each[0]['gpus']:.2f}",
                         ", ".join(f"{r['end_to_end_tokens_per_s'] / 1000:.1f}k" for r in each),
                         ", ".join(f"{r['accuracy']:.3f}" for r in each),
                         ", ".join(f"{r['budget_charged_tokens']:,}" for r in each) + f" of {each[0]['run_budget']}"
                         + (" (held)" if all(r["budget_held"] for r in each) else " (EXCEEDED)")])
        return table(["configuration", "GPUs", "tokens/s per round", "× one GPU per round", "× one GPU (means)",
                      "efficiency per GPU", "end-to-end tokens/s (load included)", "accuracy (maj@16)",
                      "run ledger charged (tokens)"], body)

    return build


TABLES: dict[str, Callable[[Path], str]] = {
    "overhead": overhead("overhead_2026-11-22.json"),
    "vllm-throughput:h100": vllm_phases("vllm_throughput_h100_2026-11-22.json"),
    "vllm-throughput:h200": vllm_runs(("vllm_throughput_h200_first_2026-11-22.json", "vllm_throughput_h200_2026-11-22.json")),
    "genrm-vs-sc:h100": genrm_budgets("genrm_vs_sc_h100_2026-11-22.json"),
    "genrm-vs-sc:cpu": genrm_configurations("genrm_vs_sc_cpu_2026-11-22.json"),
    "sc-vs-genrm": sc_vs_genrm,
    "coverage": coverage,
    "accounting-change": accounting_change,
    "kinetics": kinetics,
    "ttspm": ttspm,
    "thinking:gsm8k": thinking("gsm8k"),
    "thinking:math500": thinking("math500"),
    "width:gsm8k": width("gsm8k"),
    "width:math500": width("math500"),
    "puzzles": puzzles,
    "tree-vs-sc:gsm8k": tree_vs_sc("gsm8k"),
    "tree-vs-sc:math500": tree_vs_sc("math500"),
    "tree-search": tree_search("tree_search_h200_2026-11-29.json"),
    "deepconf:gsm8k": deepconf("deepconf_h200_2026-11-29.json", "gsm8k:100"),
    "deepconf-confidence:gsm8k": deepconf_confidence("deepconf_h200_2026-11-29.json", "gsm8k:100"),
    "deepconf:gsm8k-n256": deepconf("deepconf_h200_n256_2026-11-29.json", "gsm8k:32"),
    "deepconf-confidence:gsm8k-n256": deepconf_confidence("deepconf_h200_n256_2026-11-29.json", "gsm8k:32"),
    "genrm-rescored:gsm8k": genrm_rescored("gsm8k"),
    "genrm-rescored:math500": genrm_rescored("math500"),
    "parathinker": parathinker,
    "puzzles-apr": puzzles_apr,
    "grading-speed:cpu": grading_speed("grading_speed_cpu_2026-11-29.json"),
    "grading-verdicts:cpu": grading_verdicts("grading_speed_cpu_2026-11-29.json"),
    "ray-ledger:cpu": ray_ledger("ray_ledger_cpu_2026-11-29.json"),
    "ray-speedup:cpu": ray_speedup("ray_ledger_cpu_2026-11-29.json"),
    "atts-speedup:cpu": atts_speedup("atts_speedup_cpu_2026-11-29.json"),
    "multi-model:gsm8k": multi_model_runs("gsm8k"),
    "multi-model:math500": multi_model_runs("math500"),
    "multi-model:cascade-calibration": multi_model_cascade_calibration,
    "deepconf:math500": deepconf("deepconf_h200_math500_2026-11-29.json", "math500:50"),
    "deepconf-confidence:math500": deepconf_confidence("deepconf_h200_math500_2026-11-29.json", "math500:50"),
    "paired-throughput:h200": paired_throughput((
        ("in process (`vllm_throughput`), 61a8a8f, 8 rounds asked (before)", "vllm_throughput_h200_issue19_2026-11-29.json",
         "raw_async"),
        ("`vllm serve` (`serve_throughput`), 61a8a8f, 8 rounds asked (before)",
         "serve_throughput_h200_issue19_2026-11-29.json", "raw"),
        ("in process (`vllm_throughput`), b8cc67b, 10 rounds (after)", "vllm_throughput_h200_issue19_2026-11-29b.json",
         "raw_async"),
        ("`vllm serve` (`serve_throughput`), b8cc67b, 10 rounds (after)",
         "serve_throughput_h200_issue19_2026-11-29b.json", "raw"))),
    "certainty-probe:gsm8k": _sweep_rows("certainty_probe_gsm8k", "gsm8k", ("self-consistency", "certainty-probe")),
    "sift:gsm8k": _sweep_rows("sift_gsm8k", "gsm8k", ("self-consistency", "sift rounds=0", "sift", "sift rounds=2")),
    "plan-search:humaneval": plan_search_common("humaneval", "HumanEval"),
    "plan-search:mbpp": plan_search_common("mbpp", "MBPP (sanitized, test split)"),
    "sleep-time:stateful-gsm8k": _sweep_rows("sleep_time_gsm8k", "stateful-gsm8k", ("self-consistency", "sleep-time",
                                                                                      "sleep-time-off"), offline=True),
    "sleep-time:stateful-gsm8k-generated": _sweep_rows("sleep_time_gsm8k_generated", "stateful-gsm8k",
                                                       ("self-consistency", "sleep-time", "sleep-time-off"),
                                                       offline=True),
    "cheatsheet:game24": _sweep_rows("cheatsheet_game24", "game24", ("self-consistency", "cheatsheet", "cheatsheet-n4",
                                                                      "cheatsheet-off"), memory=True),
    "cheatsheet:game24-1.5b": _sweep_rows("cheatsheet_game24_1.5b", "game24",
                                          ("self-consistency", "cheatsheet", "cheatsheet-off"), memory=True,
                                          folder=ISSUE_18_LAST),
    "cheatsheet:gsm8k": _sweep_rows("cheatsheet_gsm8k", "gsm8k", ("self-consistency", "cheatsheet", "cheatsheet-off"),
                                    memory=True, folder=ISSUE_18_LAST),
    "cheatsheet-entries": cheatsheet_entries((
        ("Game of 24, 0.5B, cheatsheet", f"{ISSUE_18_21}/cheatsheet_game24/cheatsheet_game24_n1.sqlite", "game24"),
        ("Game of 24, 0.5B, cheatsheet-n4", f"{ISSUE_18_21}/cheatsheet_game24/cheatsheet_game24_n4.sqlite", "game24"),
        ("Game of 24, 1.5B, cheatsheet", f"{ISSUE_18_LAST}/cheatsheet_game24_1.5b/cheatsheet_game24_1.5b_n1.sqlite",
         "game24"),
        ("GSM8K-100, 0.5B, cheatsheet", f"{ISSUE_18_LAST}/cheatsheet_gsm8k/cheatsheet_gsm8k_n1.sqlite", "gsm8k"))),
    "latency:1.5b-sc:h200": latency_all("latency_sc_1.5b_h200.json"),
    "latency:h200-2026-11-22": latency_all("latency_h200_2026-11-22.json"),
    "latency-all:h200": latency_all("latency_all_h200.json", "latency_roles_h200.json"),
    "two-gpu:h200x2": two_gpu("two_gpu_h200x2_2026-11-29", ("round1.json", "round2.json")),
    "deepconf:gsm8k200-n256": deepconf("deepconf_h200x2_gsm8k200_n256_2026-11-29.json", "gsm8k:200"),
    "deepconf-confidence:gsm8k200-n256": deepconf_confidence("deepconf_h200x2_gsm8k200_n256_2026-11-29.json",
                                                             "gsm8k:200"),
    "deepconf:math500-100-n64": deepconf("deepconf_h200x2_math500_100_n64_2026-11-29.json", "math500:100"),
    "deepconf-confidence:math500-100-n64": deepconf_confidence("deepconf_h200x2_math500_100_n64_2026-11-29.json",
                                                               "math500:100"),
    "deepconf:math500-100-n256": deepconf("deepconf_h200x2_math500_100_n256.json", "math500:100"),
    "deepconf-confidence:math500-100-n256": deepconf_confidence("deepconf_h200x2_math500_100_n256.json", "math500:100"),
    "deepconf:gsm8k100-walltime": deepconf("deepconf_h200x2_gsm8k100_walltime.json", "gsm8k:100"),
    "deepconf-confidence:gsm8k100-walltime": deepconf_confidence("deepconf_h200x2_gsm8k100_walltime.json", "gsm8k:100",
                                                                 runs=False),
    "deepconf-rounds:gsm8k100-walltime": deepconf_rounds("deepconf_h200x2_gsm8k100_walltime.json", "gsm8k:100", 64,
                                                         "deepconf_h200x2_2026-11-29_shard_phases.json", "w"),
}


def render(text: str, results: Path = RESULTS) -> str:
    """``text`` with every marked table regenerated; an unknown table name is an error."""

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in TABLES:
            raise KeyError(f"RESULTS.md names an unknown table {name!r}; known: {', '.join(TABLES)}")
        # A marker indented (a table inside a list item) gets its table, and its closing marker, indented alike
        # (blank lines between a table and its heading stay blank).
        indent = match.string[match.string.rfind("\n", 0, match.start()) + 1:match.start()]
        indent = "" if indent.strip() else indent
        generated = "".join(indent + line if line.strip() else line for line in TABLES[name](results).splitlines(True))
        return match[1] + generated + indent + match[4]

    return MARKER.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", nargs="?", default=str(RESULTS_MD))
    parser.add_argument("--results", default=str(RESULTS), help="folder of the raw results")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 with a diff when a table is not what the data says")
    mode.add_argument("--write", action="store_true", help="regenerate the tables in place")
    args = parser.parse_args(argv)
    path = Path(args.file)
    text = path.read_text(encoding="utf-8")
    fresh = render(text, Path(args.results))
    return write_or_check(path, text, fresh, write=args.write, what=f"{len(MARKER.findall(text))} tables")


def write_or_check(path: Path, text: str, fresh: str, *, write: bool, what: str) -> int:
    """The end of a generated-blocks command (this one, ``capacity doc``): write ``fresh`` over
    ``path``, or check that its ``text`` already is ``fresh`` (exit 1 with a diff if not).
    ``what`` counts the blocks for the message, e.g. "12 tables"."""
    if write:
        path.write_text(fresh, encoding="utf-8")
        print(f"{path}: {what} written")
        return 0
    if fresh != text:
        sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), fresh.splitlines(True), str(path), "generated"))
        return 1
    print(f"{path}: {what} match the data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
