"""Throughput of the framework on vLLM against raw vLLM, in one process on one device.

The first ``--limit`` GSM8K test problems, rendered with the project's ``solve_math`` prompt
and the model's chat template (token ids made once, identical for every phase), each
sampled ``--n`` times with at most ``--max-tokens`` tokens:

  sync_llm   raw ``vllm.LLM(...).generate(all prompts, SamplingParams(n=...))``: vLLM's own
             offline path, for reference. Its engine is shut down (its process exits, so
             the GPU memory is freed) before the next engine loads: one GPU cannot hold two
             engines at 0.9 utilisation. ``--skip-sync-llm`` leaves it out.
  raw_async  the async engine (``AsyncLLM``) built by the VLLM backend, driven directly:
             one ``engine.generate`` per problem with the same SamplingParams, all at once
             with ``asyncio.gather``. The floor for any async client of that engine.
  framework  ``rz.asolve_many(problems, SelfConsistency(n), VLLM backend, concurrency=limit)``
             on the same engine: budgets, traces, answer extraction and voting included.

raw_async and framework share the engine, its settings and the warm-up; the prefix cache is
emptied before each, so neither reuses the other's prompts. ``--warmup-rounds`` untimed
full-size rounds come first (the first rounds on a fresh engine run ~40% slower for both
sides), then ``--rounds`` timed ones in ABBA order (raw first in even rounds, framework first
in odd ones). The headline is the mean over rounds of framework / raw_async tokens per second
within a round, with its 95 % percentile bootstrap interval over rounds (``benchmarks.pairing``;
issue 19's target: the interval includes or exceeds 0.97): ``pairing`` in the JSON. The older
keys stay: ``ratio_framework_to_raw_async`` is the median of the paired ratios. Use 10 or more
short rounds (``--rounds 12 --limit 50``): per-round spread is 10-20 %. The event-loop thread's CPU time of each phase (``loop_cpu_s``;
``loop_cpu_ms_per_sample``) shows the framework's own Python work. Tokens per second count generated
tokens. Accuracy: maj@n (the vote) and pass@1 (mean over samples), graded by
``verifiers.is_equivalent`` against the gold answers.

``--profile PATH`` runs one more framework round under ``cProfile`` after the timed ones (not
counted) and writes its stats to PATH and the top 40 functions by cumulative and by own time
to PATH.txt.

GPU host:  python -m reasoning.benchmarks.vllm_throughput --model PATH --out vllm_throughput.json
CPU check: python -m reasoning.benchmarks.vllm_throughput --limit 4 --n 2 --max-tokens 32 --out /tmp/v.json
Build engines only under ``if __name__ == "__main__":`` (vLLM starts worker processes).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reasoning.benchmarks.pairing import describe, first_in_round, loop_cpu_per_sample, paired_ratio

from .provenance import command

DATA = Path(__file__).parent / "data" / "gsm8k_test.jsonl"
WARMUP_PROBLEMS = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="HF model folder (default: the embedded model)")
    parser.add_argument("--limit", type=int, default=200, help="first N GSM8K test problems")
    parser.add_argument("--n", type=int, default=16, help="samples per problem")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs / compile (faster load)")
    parser.add_argument("--skip-sync-llm", action="store_true", help="leave out the vllm.LLM phase")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed rounds of raw_async + framework, ABBA order; >= 8 for a useful interval")
    parser.add_argument("--warmup-rounds", type=int, default=1,
                        help="untimed full-size rounds first: the GPU, CUDA graphs and JIT kernels settle")
    parser.add_argument("--profile", type=Path, default=None,
                        help="one more framework round under cProfile after the timed ones (not counted); stats here")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the figures here as JSON (the rounds so far after each timed round)")
    return parser.parse_args(argv)


def load_problems(limit: int) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit + WARMUP_PROBLEMS > len(rows):
        raise SystemExit(f"--limit {limit} leaves no warm-up problems ({len(rows)} in {DATA.name})")
    return [{"id": str(row["id"]), "question": row["question"], "answer": str(row["answer"])} for row in rows]


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"CPU {platform.processor() or platform.machine()} ({len(os.sched_getaffinity(0))} cores)"


def phase(name: str, wall: float, completions: list[list[list[int]]], prompt_tokens: int, **extra: Any) -> dict:
    generated = sum(len(ids) for per_problem in completions for ids in per_problem)
    figures = {
        "wall_s": round(wall, 2),
        "completion_tokens": generated,
        "prompt_tokens": prompt_tokens,
        "tokens_per_s": round(generated / wall, 1),
        **extra,
    }
    rate = figures["tokens_per_s"]
    print(f"{name:>10}: {figures['wall_s']:8.2f} s  {generated:>9,} tokens  {rate:>9,.1f} tok/s", flush=True)
    return figures


# -- phase (a): vllm.LLM, then freed -----------------------------------------------------


def run_sync_llm(args: argparse.Namespace, model: str, prompts: list[list[int]], warmup: list[list[int]]) -> dict:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    started = time.perf_counter()
    llm = LLM(
        model=model,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len,
        enforce_eager=args.enforce_eager,
        enable_prefix_caching=True,
        seed=0,
    )
    load_s = time.perf_counter() - started
    params = SamplingParams(n=args.n, temperature=args.temperature, top_p=1.0, max_tokens=args.max_tokens)
    warm = SamplingParams(n=args.n, temperature=args.temperature, max_tokens=min(64, args.max_tokens))
    llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in warmup], warm, use_tqdm=False)
    started = time.perf_counter()
    outputs = llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts], params, use_tqdm=False)
    wall = time.perf_counter() - started
    completions = [[list(o.token_ids) for o in out.outputs] for out in outputs]
    texts = [[o.text for o in out.outputs] for out in outputs]
    facts = engine_facts(llm.llm_engine.vllm_config)
    figures = phase("sync_llm", wall, completions, sum(map(len, prompts)), load_s=round(load_s, 1), engine=facts)
    _free_llm(llm)
    return {"figures": figures, "texts": texts}


def engine_facts(config: Any) -> dict[str, Any]:
    """The settings that decide throughput, to check that the engines compared match."""
    scheduler, cache = config.scheduler_config, config.cache_config
    return {
        "max_num_seqs": scheduler.max_num_seqs,
        "max_num_batched_tokens": scheduler.max_num_batched_tokens,
        "max_model_len": config.model_config.max_model_len,
        "block_size": cache.block_size,
        "kv_cache_blocks": getattr(cache, "num_gpu_blocks", None),
        "prefix_caching": cache.enable_prefix_caching,
        "dtype": str(config.model_config.dtype),
    }


def _free_llm(llm: Any) -> None:
    """Stop the engine's processes so that the next engine gets the whole GPU."""
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    del llm, engine, core
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- phases (b) and (c): one AsyncLLM ------------------------------------------------------


async def run_raw_async(backend: Any, prompts: list[list[int]], params: Any) -> tuple[float, list, list]:
    from reasoning.backends.vllm_backend import token_prompt

    engine = backend.engine

    async def one(index: int, ids: list[int]) -> Any:
        final = None
        async for output in engine.generate(token_prompt(ids), params, f"raw-{index}-{time.monotonic_ns()}"):
            final = output
        return final

    started = time.perf_counter()
    outputs = await asyncio.gather(*(one(i, ids) for i, ids in enumerate(prompts)))
    wall = time.perf_counter() - started
    completions = [[list(o.token_ids) for o in out.outputs] for out in outputs]
    texts = [[o.text for o in out.outputs] for out in outputs]
    return wall, completions, texts


async def run_framework(backend: Any, problems: list[Any], args: argparse.Namespace) -> tuple[float, list]:
    import reasoning as rz

    started = time.perf_counter()
    results = await rz.asolve_many(problems, _strategy(args, args.max_tokens), backend, concurrency=len(problems))
    return time.perf_counter() - started, results


async def run_async_phases(args: argparse.Namespace, model: str, prompts, warmup, problems, spare) -> dict:
    import reasoning as rz
    from reasoning.backends.vllm_backend import VLLM
    from reasoning.types import GenerationRequest

    backend = VLLM(
        model,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len,
        enforce_eager=args.enforce_eager,
        enable_prefix_caching=True,
        seed=0,
    )
    started = time.perf_counter()
    await backend.start()
    load_s = time.perf_counter() - started
    facts = engine_facts(backend.engine.vllm_config)
    warm = GenerationRequest(prompt_token_ids=(0,), n=args.n, max_tokens=min(64, args.max_tokens))
    await asyncio.gather(*(backend.generate(warm.replace(prompt_token_ids=tuple(ids))) for ids in warmup))
    await rz.asolve_many(spare, _strategy(args, max_tokens=16), backend)  # the framework's code paths too
    params = backend.sampling_params(
        GenerationRequest(prompt_token_ids=(0,), n=args.n, max_tokens=args.max_tokens, temperature=args.temperature)
    )
    rounds: dict[str, list[dict]] = {"raw_async": [], "framework": []}
    last: dict[str, Any] = {}

    async def raw() -> None:
        cpu = time.thread_time()
        wall, completions, texts = await run_raw_async(backend, prompts, params)
        cpu = time.thread_time() - cpu
        rounds["raw_async"].append(phase("raw_async", wall, completions, sum(map(len, prompts)),
                                         loop_cpu_s=round(cpu, 3), cache=backend.stats()))
        last["raw_texts"] = texts

    async def framework() -> None:
        cpu = time.thread_time()
        wall, results = await run_framework(backend, problems, args)
        cpu = time.thread_time() - cpu
        completions = [[c["token_ids"] for call in r.trace.calls() for c in call.completions] for r in results]
        prompt_tokens = sum(r.usage.prompt_tokens for r in results)
        rounds["framework"].append(phase("framework", wall, completions, prompt_tokens,
                                         loop_cpu_s=round(cpu, 3), cache=backend.stats()))
        last["results"] = results

    for index in range(args.warmup_rounds + args.rounds):
        # Alternate the order, so that neither side always runs on a warmer (or hotter) device.
        # (ABBA over the timed rounds: timed round 0 runs raw first; see benchmarks.pairing.)
        first = first_in_round(index - args.warmup_rounds)
        for run in (raw, framework) if first == "raw" else (framework, raw):
            await backend.reset_prefix_cache()  # neither side reuses the other's prompts
            backend.reset_stats()
            await run()
        if index < args.warmup_rounds:  # measured on a cold device: not reported
            rounds["raw_async"].pop()
            rounds["framework"].pop()
        elif args.out:  # the rounds so far, in case the run is cut short (the final report replaces it)
            write_json(args.out, {"partial": True, "settings": _settings(args), "rounds": rounds})
    if args.profile:
        await backend.reset_prefix_cache()
        last["profile"] = await profiled(args.profile, run_framework(backend, problems, args))
    await backend.aclose()
    return {"load_s": round(load_s, 1), "engine": facts, "rounds": rounds, **last}


async def profiled(path: Path, work: Any) -> str:
    """Await ``work`` under cProfile (the event loop's thread: all of the framework's Python
    work and the vLLM frontend's); write the stats to ``path`` and the top 40 functions by
    cumulative and by own time to ``path.txt``."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await work
    finally:
        profiler.disable()
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(path)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(40)  # the loop's idle wait (epoll) tops it
    stats.sort_stats("tottime").print_stats(40)  # where the loop's busy time goes
    Path(f"{path}.txt").write_text(text.getvalue(), encoding="utf-8")
    return str(path)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")


def finish_report(report: dict[str, Any], pairing: str, out: Path | None) -> None:
    """The last lines of a throughput report (this one, serve_throughput's): the paired rounds
    (``pairing`` names the ratio), the event loop's CPU per sample, then the JSON to ``out``."""
    print(describe(report["pairing"], pairing))
    print(f"event-loop thread CPU per sample (ms, median over rounds): {report['loop_cpu_ms_per_sample']}")
    if out:
        write_json(out, report)
        print(f"wrote {out}")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def _strategy(args: argparse.Namespace, max_tokens: int) -> Any:
    from reasoning.strategies import SelfConsistency

    return SelfConsistency(n=args.n, max_tokens=max_tokens, temperature=args.temperature)


# -- grading ---------------------------------------------------------------------------------


def grade(golds: list[str], votes: list[str | None], samples: list[list[str]]) -> dict[str, float]:
    """maj@n from ``votes``; pass@1 as the mean correctness of the samples' own answers."""
    from reasoning.verifiers import extract_answer, is_equivalent_many

    answers = [[extract_answer(text) for text in texts] for texts in samples]
    pairs = list({(gold, vote) for gold, vote in zip(golds, votes, strict=True)}
                 | {(gold, a) for gold, per in zip(golds, answers, strict=True) for a in per})
    verdict = dict(zip(pairs, is_equivalent_many(pairs), strict=True))  # each distinct pair graded once
    maj = [bool(verdict[(gold, vote)]) for gold, vote in zip(golds, votes, strict=True)]
    pass1 = [
        sum(bool(verdict[(gold, a)]) for a in per) / len(per) if per else 0.0
        for gold, per in zip(golds, answers, strict=True)
    ]
    return {"maj@n": round(sum(maj) / len(maj), 4), "pass@1": round(sum(pass1) / len(pass1), 4)}


def majority_votes(samples: list[list[str]]) -> list[str | None]:
    from reasoning.context import Sample
    from reasoning.strategies.voting import majority
    from reasoning.verifiers import extract_answer

    return [majority([Sample(t, extract_answer(t)) for t in texts]).answer for texts in samples]


# -- main ----------------------------------------------------------------------------------------


def _median(figures: list[dict], key: str) -> float:
    return statistics.median(f[key] for f in figures)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():  # small CPU defaults, unless set by the caller
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    import vllm

    from reasoning.prompts import load_prompt
    from reasoning import Problem
    from reasoning.backends.vllm_backend import VLLM
    from reasoning.types import GenerationRequest

    rows = load_problems(args.limit)
    chosen, spare = rows[: args.limit], rows[args.limit : args.limit + WARMUP_PROBLEMS]
    tokenizer_backend = VLLM(args.model)  # renders prompts exactly as the framework will
    model = tokenizer_backend.model_path()
    template = load_prompt("solve_math")

    def ids_of(question: str) -> list[int]:
        return tokenizer_backend.prompt_ids(GenerationRequest(messages=template.render(problem=question)))

    prompts = [ids_of(row["question"]) for row in chosen]
    warmup = [ids_of(row["question"]) for row in spare]
    problems = [Problem(row["question"], row["id"]) for row in chosen]
    spare_problems = [Problem(row["question"], row["id"]) for row in spare]
    golds = [row["answer"] for row in chosen]
    report: dict[str, Any] = {
        "command": command("vllm_throughput", argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device_name(),
        "vllm": vllm.__version__,
        "torch": torch.__version__,
        "model": model,
        "settings": _settings(args),
        "prompt_tokens_per_problem_mean": round(sum(map(len, prompts)) / len(prompts), 1),
    }
    print(f"{report['device']}  vllm {report['vllm']}  {args.limit} problems x n={args.n}, "
          f"max_tokens {args.max_tokens}", flush=True)

    sync = None if args.skip_sync_llm else run_sync_llm(args, model, prompts, warmup)
    run = asyncio.run(run_async_phases(args, model, prompts, warmup, problems, spare_problems))

    results = run["results"]
    framework_samples = [[c["text"] for call in r.trace.calls() for c in call.completions] for r in results]
    report["accuracy"] = {
        "framework": grade(golds, [r.answer for r in results], framework_samples),
        "raw_async": grade(golds, majority_votes(run["raw_texts"]), run["raw_texts"]),
    }
    if sync is not None:
        report["sync_llm"] = sync["figures"]
        report["accuracy"]["sync_llm"] = grade(golds, majority_votes(sync["texts"]), sync["texts"])
    report["async_engine_load_s"] = run["load_s"]
    report["async_engine"] = run["engine"]
    report["rounds"] = run["rounds"]
    raw = _median(run["rounds"]["raw_async"], "tokens_per_s")
    framework = _median(run["rounds"]["framework"], "tokens_per_s")
    report["tokens_per_s"] = {"raw_async": raw, "framework": framework}
    # Headline: the median over rounds of the paired ratio (both sides ran back to back on
    # the same device state), which cancels drift between rounds; the ratio of medians too.
    paired = [f["tokens_per_s"] / r["tokens_per_s"] for f, r in zip(run["rounds"]["framework"], run["rounds"]["raw_async"])]
    report["paired_ratios"] = [round(x, 4) for x in paired]
    report["ratio_framework_to_raw_async"] = round(statistics.median(paired), 4)
    report["ratio_of_medians"] = round(framework / raw, 4)
    report["loop_cpu_ms_per_sample"] = loop_cpu_per_sample(run["rounds"], args.limit * args.n, raw="raw_async")
    report["pairing"] = paired_ratio([f["tokens_per_s"] for f in run["rounds"]["framework"]],
                                     [r["tokens_per_s"] for r in run["rounds"]["raw_async"]])
    if sync is not None:
        report["tokens_per_s"]["sync_llm"] = sync["figures"]["tokens_per_s"]
        report["ratio_framework_to_sync_llm"] = round(framework / sync["figures"]["tokens_per_s"], 4)
    last_framework = run["rounds"]["framework"][-1]
    report["prefix_cache"] = last_framework["cache"]
    report["stopped_by"] = sorted({r.stopped_by for r in results if r.stopped_by})

    print(json.dumps({k: report[k] for k in ("tokens_per_s", "accuracy", "prefix_cache")}, indent=1))
    print(f"framework / raw_async = {report['ratio_framework_to_raw_async']:.3f} (median of paired rounds "
          f"{report['paired_ratios']}; ratio of medians {report['ratio_of_medians']:.3f})")
    if "profile" in run:
        report["profile"] = run["profile"]
    finish_report(report, "framework / raw_async", args.out)
    return report


if __name__ == "__main__":
    main()
