"""A capacity model from this project's measured figures: GPUs for a sweep, GPUs for a proxy.

Every input is read from the raw results in ``benchmarks/results/`` (never typed by hand):

- **decode rate**: generated tokens per second on one GPU for the embedded 0.5B model. Plain
  sampling: the raw vLLM engine's timed rounds of ``vllm_throughput_*.json`` (median); with
  top-20 logprobs (DeepConf): generated tokens / wall seconds of each round of the DeepConf
  runs, which went through the framework, so they are turned into raw-engine figures by
  multiplying by (1 + overhead).
- **prefill rate**: not measured on its own. Bounded by the decode rate: a prompt token costs the
  same multiply-adds as a generated one but is computed in large compute-bound batches, so it
  never takes longer; the prefill term is therefore an upper bound.
- **overhead**: the framework's slowdown against the raw engine on the GPU path, 1/ratio − 1 of
  ``ratio_framework_to_raw_async`` (floored at 0), the largest over the measured devices; the
  CPU cost per sample (``overhead_*.json``: framework wall / answers) sizes the driver instead.
- **profiles**: per strategy, generated and uncached prompt tokens per problem at one measured
  point (the sweep rows' ``usage``: uncached prompt = ``uncached_tokens`` − ``completion_tokens``,
  since uncached = prompt + completion − cached prompt). Pooled rows are charged what a direct
  run at k pays (RESULTS.md, "Accounting"), so a row is what one direct request of the strategy
  costs; a sweep that reuses one pool for all its points pays the pool once, not every row.
- **data-parallel efficiency**: two Ray workers' throughput over one GPU's on two H200s
  (``two-gpu:h200x2``, means of its rounds) / 2, at most 1.

The model: GPU-seconds = Σ (generated / decode + uncached prompt / prefill) × (1 + overhead);
GPUs for T hours = ceil(GPU-seconds / (T·3600·efficiency)); a proxy at R requests/s needs
R × GPU-seconds per request GPUs, and no request is faster than its longest sample's decode.

    python -m reasoning.benchmarks.capacity inputs
    python -m reasoning.benchmarks.capacity sweep --strategies self-consistency deepconf --points 8 --problems 500 --samples 64 --hours 24
    python -m reasoning.benchmarks.capacity proxy --rps 10 --strategy self-consistency --n 16
    python -m reasoning.benchmarks.capacity check
    python -m reasoning.benchmarks.capacity doc --check     # docs/scaling.md's generated parts
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasoning.errors import ConfigError

from .results_tables import write_or_check

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCALING_MD = HERE.parent / "docs" / "scaling.md"
MARKER = re.compile(r"(<!-- capacity: (?P<name>[\w:.-]+) -->\n)(?P<body>.*?)(<!-- /capacity -->)", re.DOTALL)

PLAIN = {"h200": "vllm_throughput_h200_2026-11-22.json", "h100": "vllm_throughput_h100_2026-11-22.json"}
LOGPROBS = (("deepconf_h200_2026-11-29.json", "gsm8k:100"), ("deepconf_h200_n256_2026-11-29.json", "gsm8k:32"))
OVERHEAD = "overhead_2026-11-22.json"
LATENCY = "latency_h200_2026-11-22.json"
TWO_GPU = ("two_gpu_h200x2_2026-11-29/round1.json", "two_gpu_h200x2_2026-11-29/round2.json")

# strategy -> (dataset, source, strategy name in the rows, point); a source ending in .json is a
# DeepConf run (the point is its round's label), otherwise a sweep folder under results/.
PROFILES: dict[str, dict[str, tuple[str, str, str]]] = {
    "gsm8k": {
        "self-consistency": ("sweeps_h200_2026-11-29/sc_vs_genrm_gsm8k", "self-consistency", "n=64"),
        "genrm-best-of-n": ("sweeps_h200_2026-11-29b/genrm_rescored_gsm8k", "genrm-best-of-n V=2", "n=8"),
        "early-stop-sc": ("sweeps_h200_2026-11-29/width_gsm8k", "early-stop-sc", "n=16"),
        "parallel-thinking": ("sweeps_h200_2026-11-29b/parathinker_gsm8k", "parallel-thinking", "n=8"),
        "deepconf": ("deepconf_h200_2026-11-29.json", "gsm8k:100", "online-10"),
    },
    "math500": {
        "self-consistency": ("sweeps_h200_2026-11-29/sc_vs_genrm_math500", "self-consistency", "n=64"),
        "genrm-best-of-n": ("sweeps_h200_2026-11-29b/genrm_rescored_math500", "genrm-best-of-n V=2", "n=8"),
        "early-stop-sc": ("sweeps_h200_2026-11-29/width_math500", "early-stop-sc", "n=16"),
    },
}
LOGPROB_STRATEGIES = frozenset({"deepconf"})  # need top-20 logprobs per token: the slower rate


def load(results: Path, name: str) -> dict[str, Any]:
    path = results / name
    if not path.is_file():
        raise ConfigError(f"--results: no {name} in {results}")
    return json.loads(path.read_text())


# -- the inputs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Rate:
    """Generated tokens per second on one GPU: the median over timed rounds, and every round."""

    label: str
    tok_s: float
    rounds: tuple[float, ...]
    source: str

    @property
    def spread(self) -> float:
        """The largest distance of a round from the median, as a fraction of it."""
        return max(abs(r - self.tok_s) for r in self.rounds) / self.tok_s


@dataclass(frozen=True)
class Overhead:
    """What the framework adds: a GPU-path factor and the driver's CPU seconds per sample."""

    charged: float  # fraction added to GPU time
    ratios: dict[str, float]  # device -> framework / raw engine tokens/s
    cpu_s_per_sample: float


@dataclass(frozen=True)
class Profile:
    """One strategy's measured cost per problem at one point (a direct run's, see the module doc)."""

    strategy: str
    dataset: str
    point: str
    samples: int
    prompt: float  # prompt tokens per problem
    generated: float  # completion tokens per problem
    uncached_prompt: float  # prompt tokens per problem not served from the prefix cache
    longest: int  # the longest a sample may run (max_tokens), for the latency bound
    source: str
    cache_known: bool = True

    @property
    def cache_share(self) -> float | None:
        return 1 - self.uncached_prompt / self.prompt if self.cache_known and self.prompt else None

    def scaled(self, samples: int) -> tuple[float, float]:
        """(generated, uncached prompt) per problem at ``samples``, both linear in the samples
        (exact for generation; for the prompt an upper bound when it is paid once per request)."""
        factor = samples / self.samples
        return self.generated * factor, self.uncached_prompt * factor


def plain_rate(results: Path, device: str) -> Rate:
    """The raw vLLM engine's rounds (``raw_async``) of the device's throughput run."""
    if device not in PLAIN:
        raise ConfigError(f"--device: unknown device {device!r}; measured: {', '.join(PLAIN)}")
    data = load(results, PLAIN[device])
    rounds = tuple(r["completion_tokens"] / r["wall_s"] for r in data["rounds"]["raw_async"])
    return Rate(f"{device}, plain sampling (raw engine)", statistics.median(rounds), rounds, PLAIN[device])


def overhead(results: Path) -> Overhead:
    ratios = {device: load(results, name)["ratio_framework_to_raw_async"] for device, name in PLAIN.items()}
    charged = max(0.0, *(1 / r - 1 for r in ratios.values()))
    data = load(results, OVERHEAD)
    framework = data["variants"]["framework (OpenAICompatible)"]["wall_s"]
    return Overhead(charged, ratios, framework / (data["problems"] * data["n"]))


def logprob_rounds(results: Path) -> list[tuple[str, str, int, float, int]]:
    """Every DeepConf round: (file, label, generated tokens, wall s, prompt tokens)."""
    found = []
    for name, spec in LOGPROBS:
        for r in load(results, name)["datasets"][spec]["rounds"]:
            found.append((name, r["label"], r["generated_tokens"], r["wall_s"], sum(p["prompt_tokens"] for p in r["problems"])))
    return found


def logprob_rate(results: Path, over: Overhead | None = None) -> Rate:
    """Top-20 logprobs: generated / wall of every DeepConf round, × (1 + overhead) to a raw-engine figure."""
    over = over or overhead(results)
    rounds = tuple(g / w * (1 + over.charged) for _, _, g, w, _ in logprob_rounds(results))
    return Rate("h200, top-20 logprobs (DeepConf rounds × (1 + overhead))", statistics.median(rounds), rounds,
                " + ".join(name for name, _ in LOGPROBS))


def efficiency(results: Path) -> float:
    """Data-parallel efficiency: two Ray workers' generated tokens/s over one GPU's (each the mean
    of the rounds), per worker, at most 1 (``two_gpu.py`` on two H200s)."""
    from .two_gpu import mean_rates

    rates = mean_rates([load(results, name) for name in TWO_GPU])
    if "ray2" not in rates or "one_gpu" not in rates:
        raise ConfigError(f"{TWO_GPU}: every round needs a finished ray2 and one_gpu run")
    return min(1.0, rates["ray2"] / rates["one_gpu"] / 2)


def unloaded_sequence_rate(results: Path) -> float:
    """Tokens/s of one sequence on an idle engine: greedy, one problem at a time (``latency``)."""
    greedy = load(results, LATENCY)["strategies"]["greedy"]
    return greedy["mean_completion_tokens"] / greedy["mean_s"]


def loaded_sequence_rate(results: Path, device: str = "h200") -> float:
    """Tokens/s of one sequence when the engine runs at its measured throughput: rate / running sequences."""
    data = load(results, PLAIN[device])
    return plain_rate(results, device).tok_s / data["prefix_cache"]["max_running_sequences"]


def profile(results: Path, strategy: str, dataset: str = "gsm8k") -> Profile:
    if dataset not in PROFILES:
        raise ConfigError(f"--dataset: no profiles for {dataset!r}; measured: {', '.join(PROFILES)}")
    if strategy not in PROFILES[dataset]:
        raise ConfigError(f"--strategy: no measured profile of {strategy!r} on {dataset}; "
                          f"measured: {', '.join(PROFILES[dataset])}")
    source, name, point = PROFILES[dataset][strategy]
    if source.endswith(".json"):
        data = load(results, source)
        rounds = [r for r in data["datasets"][name]["rounds"] if r["label"] == point]
        if len(rounds) != 1:
            raise ConfigError(f"{source}: no single round {point!r} in {name}")
        problems = rounds[0]["problems"]
        count = len(problems)
        prompt = sum(p["prompt_tokens"] for p in problems) / count
        # No cache figures in these runs: every prompt token is charged as computed (an upper bound).
        return Profile(strategy, dataset, f"{point}, n={data['options']['n']}", data["options"]["n"], prompt,
                       rounds[0]["generated_tokens"] / count, prompt, data["options"]["max_tokens"],
                       f"{source} ({point})", cache_known=False)
    folder = results / source
    for name_ in ("sweep.jsonl", "config.json"):
        if not (folder / name_).is_file():
            raise ConfigError(f"--results: no {source}/{name_} in {results}")
    rows = [json.loads(line) for line in (folder / "sweep.jsonl").read_text().splitlines() if line.strip()]
    found = [r for r in rows if r["strategy"] == name and r["point"] == point]
    if len(found) != 1:
        raise ConfigError(f"{source}: no single row for {name} at {point}")
    usage = found[0]["usage"]
    config = json.loads((folder / "config.json").read_text())
    if not point.startswith("n="):
        raise ConfigError(f"{source}: profile point {point!r} is not a sample count n=K")
    return Profile(strategy, dataset, point, int(point[2:]), usage["tokens"] - usage["completion_tokens"],
                   usage["completion_tokens"], usage["uncached_tokens"] - usage["completion_tokens"],
                   int(config["max_tokens"]), f"{source}/sweep.jsonl")


# -- the model ----------------------------------------------------------------------------
def gpu_seconds(generated: float, uncached_prompt: float, decode: float, prefill: float, over: float) -> float:
    """(generated / decode + uncached prompt / prefill) × (1 + overhead), in GPU-seconds."""
    if decode <= 0 or prefill <= 0:
        raise ConfigError(f"rates must be positive, got decode={decode}, prefill={prefill}")
    if generated < 0 or uncached_prompt < 0 or over < 0:
        raise ConfigError("tokens and overhead must not be negative")
    return (generated / decode + uncached_prompt / prefill) * (1 + over)


def per_point(points: int, samples: int | list[int]) -> list[int]:
    """The sample count of each of ``points`` points: one count for all, or one per point."""
    if points < 1:
        raise ConfigError(f"--points must be at least 1, got {points}")
    counts = [samples] if isinstance(samples, int) else list(samples)
    if len(counts) == 1:
        counts *= points
    if len(counts) != points:
        raise ConfigError(f"--samples: give one count or one per point ({points}), got {len(counts)}")
    if min(counts) < 1:
        raise ConfigError(f"--samples must be at least 1, got {min(counts)}")
    return counts


def gpus_for(seconds: float, hours: float, eff: float) -> int:
    """ceil(GPU-seconds / (hours · 3600 · efficiency))."""
    if hours <= 0:
        raise ConfigError(f"--hours must be positive, got {hours}")
    if not 0 < eff <= 1:
        raise ConfigError(f"--efficiency must be in (0, 1], got {eff}")
    return max(1, math.ceil(seconds / (hours * 3600 * eff)))


@dataclass(frozen=True)
class Model:
    """The measured inputs, read once from a results folder."""

    plain: Rate
    logprobs: Rate
    over: Overhead
    eff: float
    unloaded: float
    loaded: float
    results: Path

    @classmethod
    def read(cls, results: Path = RESULTS, device: str = "h200", decode: float | None = None) -> Model:
        """``decode``: a plain-sampling rate measured elsewhere (another model or GPU) instead of the
        device's; the logprob rate and one sequence's speed are scaled by the same factor."""
        if not results.is_dir():
            raise ConfigError(f"--results: {results} is not a folder")
        over = overhead(results)
        plain, logprobs = plain_rate(results, device), logprob_rate(results, over)
        factor = 1.0
        if decode is not None:
            if decode <= 0:
                raise ConfigError(f"--decode-tok-s must be positive, got {decode}")
            factor = decode / plain.tok_s
            plain = Rate(f"{decode:,.0f} tokens/s (given)", decode, (decode,), "--decode-tok-s")
            logprobs = Rate(logprobs.label + ", scaled", logprobs.tok_s * factor, tuple(r * factor for r in logprobs.rounds),
                            logprobs.source)
        # One sequence's speed scales with the engine's (an assumption for a given rate).
        return cls(plain, logprobs, over, efficiency(results), unloaded_sequence_rate(results) * factor,
                   loaded_sequence_rate(results, device) * factor, results)

    def rate(self, strategy: str) -> Rate:
        return self.logprobs if strategy in LOGPROB_STRATEGIES else self.plain

    def per_problem(self, prof: Profile, samples: int) -> float:
        """GPU-seconds of one problem of ``prof`` at ``samples`` samples (prefill at the decode bound)."""
        if samples < 1:
            raise ConfigError(f"--samples must be at least 1, got {samples}")
        generated, prompt = prof.scaled(samples)
        rate = self.rate(prof.strategy).tok_s
        return gpu_seconds(generated, prompt, rate, rate, self.over.charged)

    def sweep(self, strategies: list[str], points: int, problems: int, samples: int | list[int],
              dataset: str = "gsm8k", pooled: bool = False) -> dict[str, float]:
        """GPU-seconds per strategy of ``points`` points × ``problems`` problems, each point drawing
        ``samples`` per problem (one count for every point, or one per point); ``pooled``: one pool
        of the largest count per (strategy, problem) serves every point (the sweep's sample reuse)."""
        counts = per_point(points, samples)
        if problems < 1:
            raise ConfigError(f"--problems must be at least 1, got {problems}")
        found = {}
        for s in strategies:
            prof = profile(self.results, s, dataset)
            runs = [max(counts)] if pooled else counts
            found[s] = problems * sum(self.per_problem(prof, k) for k in runs)
        return found

    def proxy(self, rps: float, strategy: str, n: int, dataset: str = "gsm8k") -> dict[str, float]:
        """GPUs a proxy at ``rps`` requests/s of ``strategy`` at n samples keeps busy, and the latency floor."""
        if rps <= 0:
            raise ConfigError(f"--rps must be positive, got {rps}")
        prof = profile(self.results, strategy, dataset)
        per_request = self.per_problem(prof, n)
        generated = prof.scaled(n)[0] / n
        return {"gpu_s_per_request": per_request, "gpus": rps * per_request, "gpus_ceil": math.ceil(rps * per_request),
                "mean_sample_tokens": generated, "longest": prof.longest,
                "latency_idle_s": generated / self.unloaded, "latency_idle_longest_s": prof.longest / self.unloaded,
                "latency_loaded_longest_s": prof.longest / self.loaded}


# -- the check against measured runs -------------------------------------------------------
def checks(results: Path = RESULTS) -> list[dict[str, Any]]:
    """Wall time predicted by the model for measured runs, from rates measured on *other* runs:
    DeepConf's later rounds from the first (N = 64 pool) round's rate; the framework's vLLM rounds
    from the raw engine's median and the charged overhead."""
    model = Model.read(results)
    rounds = logprob_rounds(results)
    (_, label, g0, w0, _), later = rounds[0], rounds[1:]
    if label != "pool":
        raise ConfigError(f"{LOGPROBS[0][0]}: the first round is {label!r}, not the pool round the check starts from")
    rate = g0 / w0 * (1 + model.over.charged)
    found = []
    for name, label, generated, wall, prompt in later:
        predicted = gpu_seconds(generated, prompt, rate, rate, model.over.charged)
        found.append({"run": f"{name} {label}", "from": f"{rounds[0][0]} {rounds[0][1]} round", "generated": generated,
                      "prompt": prompt, "predicted_s": predicted, "measured_s": wall})
    data = load(results, PLAIN["h200"])
    for i, r in enumerate(data["rounds"]["framework"]):
        uncached = r["prompt_tokens"] - r["cache"]["cached_prompt_tokens"]
        predicted = gpu_seconds(r["completion_tokens"], uncached, model.plain.tok_s, model.plain.tok_s, model.over.charged)
        found.append({"run": f"{PLAIN['h200']} framework round {i + 1}", "from": "raw engine median + overhead",
                      "generated": r["completion_tokens"], "prompt": uncached, "predicted_s": predicted,
                      "measured_s": r["wall_s"]})
    for row in found:
        row["error"] = row["predicted_s"] / row["measured_s"] - 1
    return found


# -- tables -------------------------------------------------------------------------------
def table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body]) + "\n"


def inputs_table(results: Path) -> str:
    m = Model.read(results)
    h100 = plain_rate(results, "h100")
    body = [[r.label, f"**{r.tok_s:,.0f}**", ", ".join(f"{x:,.0f}" for x in r.rounds), f"±{r.spread:.0%}", f"`{r.source}`"]
            for r in (m.plain, m.logprobs, h100)]
    lines = [table(["decode rate (one GPU)", "tokens/s (median)", "rounds", "spread", "from"], body), ""]
    ratios = ", ".join(f"{d} {r:.3f}" for d, r in m.over.ratios.items())
    lines.append(f"- prefill: bounded by the decode rate (not measured on its own; see the text).\n"
                 f"- overhead charged: **{m.over.charged:.1%}** of GPU time (framework / raw engine: {ratios}; "
                 f"the largest slowdown); driver CPU per sample: {m.over.cpu_s_per_sample * 1e6:.0f} µs "
                 f"(`{OVERHEAD}`), i.e. {1 / m.over.cpu_s_per_sample:,.0f} samples/s per driver core.\n"
                 f"- data-parallel efficiency: **{m.eff:.3f}** (two Ray workers' tokens/s over one GPU's on two H200s / 2, "
                 f"`{TWO_GPU[0].split('/')[0]}`).\n"
                 f"- one sequence: {m.unloaded:,.0f} tokens/s on an idle engine (greedy, `{LATENCY}`), "
                 f"{m.loaded:,.0f} tokens/s when the engine runs its measured throughput over "
                 f"{m.plain.tok_s / m.loaded:,.0f} sequences.\n")
    return "".join(lines)


def profiles_table(results: Path) -> str:
    """Per strategy and dataset: the measured point's tokens per problem, the prefix-cache share of
    its prompt tokens, and the prefill term's share of its GPU time under the prefill bound."""
    body = []
    for dataset, strategies in PROFILES.items():
        for strategy in strategies:
            p = profile(results, strategy, dataset)
            share = "–" if p.cache_share is None else f"{p.cache_share:.1%}"
            prefill = p.uncached_prompt / (p.uncached_prompt + p.generated)  # same rate for both under the bound
            body.append([dataset, strategy, p.point, f"{p.generated:,.0f}", f"{p.generated / p.samples:,.0f}",
                         f"{p.prompt:,.0f}", f"{p.uncached_prompt:,.0f}", share, f"{prefill:.0%}", f"`{p.source}`"])
    return table(["dataset", "strategy", "point", "generated / problem", "generated / sample", "prompt / problem",
                  "uncached prompt / problem", "prefix-cache share", "prefill share of GPU time (bound)", "from"], body)


def check_table(results: Path) -> str:
    body = [[r["run"], r["from"], f"{r['generated']:,}", f"{r['prompt']:,}", f"{r['predicted_s']:.1f}",
             f"{r['measured_s']:.1f}", f"**{r['error']:+.1%}**"] for r in checks(results)]
    return table(["measured run", "rate from", "generated tokens", "prompt tokens charged", "predicted s",
                  "measured s", "error"], body)


SWEEP_QUESTION = {"strategies": list(PROFILES["gsm8k"]), "points": 8, "problems": 500, "samples": 64, "hours": [24.0, 1.0]}
PROXY_QUESTION = {"rps": 10.0, "strategy": "self-consistency", "n": 16}


def sweep_table(results: Path, strategies: list[str], points: int, problems: int, samples: int | list[int],
                hours: list[float], dataset: str = "gsm8k", decode: float | None = None) -> str:
    m = Model.read(results, decode=decode)
    direct = m.sweep(strategies, points, problems, samples, dataset)
    pooled = m.sweep(strategies, points, problems, samples, dataset, pooled=True)
    body = [[s, f"{m.rate(s).tok_s:,.0f}", f"{direct[s] / 3600:,.2f}", f"{pooled[s] / 3600:,.2f}"] for s in strategies]
    total, total_pooled = sum(direct.values()), sum(pooled.values())
    body.append(["**all**", "", f"**{total / 3600:,.2f}**", f"**{total_pooled / 3600:,.2f}**"])
    text = table(["strategy", "decode tok/s", "GPU-hours, every point its own run", "GPU-hours, one pool per problem"], body)
    counts = per_point(points, samples)
    drawn = f"{counts[0]} samples" if len(set(counts)) == 1 else f"({', '.join(map(str, counts))}) samples"
    text += (f"\n{len(strategies)} strategies × {points} points × {problems:,} problems × {drawn} "
             f"({dataset} profiles), data-parallel efficiency {m.eff:.3f}:\n")
    for h in hours:
        gpus, gpus_pooled = gpus_for(total, h, m.eff), gpus_for(total_pooled, h, m.eff)
        text += (f"- in {h:g} h: **{gpus} {_gpu(gpus)}** with every point its own run, **{gpus_pooled}** with one "
                 f"{max(counts)}-sample pool per problem reused by every point.\n")
    return text


def _gpu(count: int) -> str:
    return "H200" if count == 1 else "H200s"


def proxy_text(results: Path, rps: float, strategy: str, n: int, dataset: str = "gsm8k",
               decode: float | None = None) -> str:
    m = Model.read(results, decode=decode)
    p = m.proxy(rps, strategy, n, dataset)
    return (f"{strategy} n={n} at {rps:g} requests/s ({dataset} profile): {p['gpu_s_per_request']:.3f} GPU-s per "
            f"request, so it keeps **{p['gpus']:.2f}** GPUs busy: **at least {p['gpus_ceil']} {_gpu(p['gpus_ceil'])}**, "
            f"each at {p['gpus'] / p['gpus_ceil']:.0%} of its throughput. "
            f"Latency floor: the longest sample's decode, {p['mean_sample_tokens']:,.0f} tokens on average and "
            f"up to {p['longest']:,} (max_tokens): {p['latency_idle_s']:.1f} s and {p['latency_idle_longest_s']:.1f} s "
            f"on an idle engine, {p['latency_loaded_longest_s']:.1f} s for the longest at full throughput.\n")


BLOCKS: dict[str, Callable[[Path], str]] = {
    "inputs": inputs_table,
    "profiles": profiles_table,
    "check": check_table,
    "sweep": lambda results: sweep_table(results, **SWEEP_QUESTION),
    "proxy": lambda results: proxy_text(results, **PROXY_QUESTION),
}


def render(text: str, results: Path = RESULTS) -> str:
    """``text`` with every ``<!-- capacity: NAME -->`` block regenerated; an unknown NAME is an error."""

    def fill(match: re.Match[str]) -> str:
        if match["name"] not in BLOCKS:
            raise ConfigError(f"unknown capacity block {match['name']!r}; known: {', '.join(BLOCKS)}")
        return match[1] + BLOCKS[match["name"]](results) + match[4]

    return MARKER.sub(fill, text)


# -- CLI ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=str(RESULTS), help="folder of the raw results")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("inputs", help="the measured inputs and per-strategy profiles")
    sweep = sub.add_parser("sweep", help="GPUs for a sweep in a given time")
    sweep.add_argument("--strategies", nargs="+", default=SWEEP_QUESTION["strategies"])
    sweep.add_argument("--points", type=int, help="budget points (default: one per --samples count, else 8)")
    sweep.add_argument("--problems", type=int, default=500)
    sweep.add_argument("--samples", type=int, nargs="+", default=[64], help="per problem: one count, or one per point")
    sweep.add_argument("--hours", type=float, nargs="+", default=[24.0])
    sweep.add_argument("--dataset", default="gsm8k")
    sweep.add_argument("--decode-tok-s", type=float, help="a plain-sampling rate measured for another model or GPU")
    proxy = sub.add_parser("proxy", help="GPUs for a proxy at R requests/s")
    proxy.add_argument("--rps", type=float, required=True)
    proxy.add_argument("--strategy", default="self-consistency")
    proxy.add_argument("--n", type=int, default=16)
    proxy.add_argument("--dataset", default="gsm8k")
    proxy.add_argument("--decode-tok-s", type=float, help="a plain-sampling rate measured for another model or GPU")
    sub.add_parser("check", help="predicted vs measured wall time of measured runs")
    doc = sub.add_parser("doc", help="docs/scaling.md's generated blocks")
    doc.add_argument("file", nargs="?", default=str(SCALING_MD))
    mode = doc.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 with a diff when a block is not what the data says")
    mode.add_argument("--write", action="store_true", help="regenerate the blocks in place")
    args = parser.parse_args(argv)
    results = Path(args.results)
    try:
        if args.command == "inputs":
            print(inputs_table(results) + "\n" + profiles_table(results), end="")
        elif args.command == "sweep":
            points = args.points or (len(args.samples) if len(args.samples) > 1 else 8)
            print(sweep_table(results, args.strategies, points, args.problems, args.samples, args.hours, args.dataset,
                              args.decode_tok_s), end="")
        elif args.command == "proxy":
            print(proxy_text(results, args.rps, args.strategy, args.n, args.dataset, args.decode_tok_s), end="")
        elif args.command == "check":
            print(check_table(results), end="")
        else:
            return _doc(Path(args.file), results, args.write)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _doc(path: Path, results: Path, write: bool) -> int:
    text = path.read_text(encoding="utf-8")
    count = len(MARKER.findall(text))
    if not count:
        raise ConfigError(f"{path}: no <!-- capacity: NAME --> blocks")
    return write_or_check(path, text, render(text, results), write=write, what=f"{count} capacity blocks")


if __name__ == "__main__":
    sys.exit(main())
