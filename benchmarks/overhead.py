"""Orchestration overhead: the framework vs the raw client floor, same run, same machine.

Self-consistency N=16 over synthetic problems against the local OpenAI-compatible stub
(zero latency, in a child process so it shares no GIL with the client):

  raw floor      asyncio + the official ``openai`` client, one request with n=16 per problem
                 (as users write it, with response models; and unparsed, the leanest use)
  framework      ``rz.asolve_many(problems, SelfConsistency(16), backend)`` with budgets,
                 ledger, trace, answer extraction and voting, on
                   - OpenAICompatible (the direct path for OpenAI-compatible servers)
                   - LiteLLM (reported with raw ``litellm.acompletion`` to show litellm's own share)

Variants are interleaved for ``--repeats`` rounds and the median wall time is reported.

    python -m reasoning.benchmarks.overhead --problems 200 --repeats 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import reasoning as rz  # noqa: E402
from reasoning.solve import problem_messages  # noqa: E402
from reasoning.strategies import SelfConsistency  # noqa: E402

from .provenance import command  # noqa: E402
from .stub_server import stub_process  # noqa: E402

MODEL = "stub-model"


def make_problems(count: int) -> list[rz.Problem]:
    return [rz.Problem(f"Problem {i}: what is {i} + {2 * i + 1}?", str(i)) for i in range(count)]


def _openai_client(base_url: str, concurrency: int):
    import httpx
    import openai

    # The same transport the framework's OpenAICompatible backend uses, so only the
    # orchestration differs.
    try:
        http_client = openai.DefaultAioHttpClient(limits=httpx.Limits(max_connections=concurrency))
    except (AttributeError, RuntimeError):
        http_client = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency))
    return openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, http_client=http_client)


async def raw_openai(base_url: str, problems, n: int, concurrency: int, max_tokens: int) -> int:
    client = _openai_client(base_url, concurrency)
    gate = asyncio.Semaphore(concurrency)
    messages = [[m.to_dict() for m in problem_messages(p)] for p in problems]

    async def one(msgs) -> int:
        async with gate:
            response = await client.chat.completions.create(
                model=MODEL, messages=msgs, n=n, max_tokens=max_tokens, temperature=0.7
            )
        return len(response.choices)

    try:
        return sum(await asyncio.gather(*(one(m) for m in messages)))
    finally:
        await client.close()


async def raw_openai_unparsed(base_url: str, problems, n: int, concurrency: int, max_tokens: int) -> int:
    """The leanest raw use of the client: no response models, one json.loads per reply."""
    import httpx

    client = _openai_client(base_url, concurrency)
    gate = asyncio.Semaphore(concurrency)
    messages = [[m.to_dict() for m in problem_messages(p)] for p in problems]

    async def one(msgs) -> int:
        body = {"model": MODEL, "messages": msgs, "n": n, "max_tokens": max_tokens, "temperature": 0.7}
        async with gate:
            response = await client.post("/chat/completions", body=body, cast_to=httpx.Response)
        return len(json.loads(response.content)["choices"])

    try:
        return sum(await asyncio.gather(*(one(m) for m in messages)))
    finally:
        await client.close()


async def raw_litellm(base_url: str, problems, n: int, concurrency: int, max_tokens: int) -> int:
    import litellm

    gate = asyncio.Semaphore(concurrency)
    messages = [[m.to_dict() for m in problem_messages(p)] for p in problems]

    async def one(msgs) -> int:
        async with gate:
            response = await litellm.acompletion(
                model=f"openai/{MODEL}", api_base=base_url, api_key="EMPTY", messages=msgs,
                n=n, max_tokens=max_tokens, temperature=0.7, max_retries=0,
            )
        return len(response.choices)

    return sum(await asyncio.gather(*(one(m) for m in messages)))


async def framework(backend, problems, n: int, concurrency: int, max_tokens: int) -> int:
    results = await rz.asolve_many(
        problems, SelfConsistency(n), backend, rz.Budget(tokens=10**9),
        concurrency=concurrency, sampling=rz.Sampling(max_tokens=max_tokens),
    )
    assert all(r.answer == "42" for r in results), "every problem must be answered by the vote"
    return sum(r.info["n"] for r in results)


async def measure(runs: dict, base_url: str, args) -> dict[str, list[tuple[float, float]]]:
    problems = make_problems(args.problems)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for round_index in range(args.repeats + 1):  # round 0 warms up connections and imports
        for name, run in runs.items():
            wall0, cpu0 = time.perf_counter(), time.process_time()
            samples = await run(problems)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            if samples != args.problems * args.n:
                raise RuntimeError(f"{name}: {samples} samples, expected {args.problems * args.n}")
            if round_index:
                times[name].append((wall, cpu))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="framework vs raw client overhead")
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--no-litellm", action="store_true", help="skip the litellm variants")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)

    async def go(base_url: str):
        c, t = args.concurrency, args.max_tokens
        direct = rz.backends.OpenAICompatible(MODEL, base_url=base_url, concurrency=c)
        runs = {
            "raw openai client": lambda p: raw_openai(base_url, p, args.n, c, t),
            "raw openai client, unparsed": lambda p: raw_openai_unparsed(base_url, p, args.n, c, t),
            "framework (OpenAICompatible)": lambda p: framework(direct, p, args.n, c, t),
        }
        if not args.no_litellm:
            via_litellm = rz.backends.LiteLLM(f"openai/{MODEL}", api_base=base_url, api_key="EMPTY", concurrency=c)
            runs["raw litellm.acompletion"] = lambda p: raw_litellm(base_url, p, args.n, c, t)
            runs["framework (LiteLLM)"] = lambda p: framework(via_litellm, p, args.n, c, t)
        try:
            return await measure(runs, base_url, args)
        finally:
            await direct.aclose()

    with stub_process() as base_url:
        times = asyncio.run(go(base_url))

    median = {name: (statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts)) for name, ts in times.items()}
    floor_wall, floor_cpu = median["raw openai client"]
    report = {
        "command": command("overhead", argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "problems": args.problems, "n": args.n, "repeats": args.repeats, "concurrency": args.concurrency,
        "variants": {
            name: {"wall_s": wall, "cpu_s": cpu, "wall_vs_raw_openai": wall / floor_wall, "cpu_vs_raw_openai": cpu / floor_cpu}
            for name, (wall, cpu) in median.items()
        },
    }
    if "raw litellm.acompletion" in median:
        report["litellm_share_of_wall_vs_raw_openai"] = median["raw litellm.acompletion"][0] / floor_wall
    print(f"{report['date']}  {report['machine']}")
    print(f"{args.problems} problems x n={args.n}, concurrency {args.concurrency}, median of {args.repeats} rounds")
    print(f"{'variant':32s} {'wall s':>8s} {'cpu s':>8s} {'vs raw openai':>14s}")
    for name, figures in report["variants"].items():
        print(f"{name:32s} {figures['wall_s']:8.3f} {figures['cpu_s']:8.3f} {figures['wall_vs_raw_openai']:10.2f}x")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
