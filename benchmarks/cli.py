"""The ``reasoning-bench`` command line."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import math
import socket
import sys
import time
from urllib.parse import urlparse

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from reasoning import Budget
from reasoning.errors import AuthenticationError, BackendUnavailable, BadModel, ConfigError, ReasoningError

from .datasets import BUILTIN
from .run import RunProgress

console = Console(stderr=True)
DATASETS_HELP = " | ".join(BUILTIN)
BACKENDS_HELP = ("local[:NAME|PATH] | vllm[:PATH] | litellm:MODEL | openai:MODEL | scripted[:A,B] | "
                 "a backend plugin's KIND[:REST]")


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a strategy over a dataset (resumable)")
    run.add_argument("--dataset", required=True, help=f"{DATASETS_HELP} | PATH.jsonl | hub name")
    run.add_argument("--limit", type=int, help="first K problems")
    run.add_argument("--strategy", default="self-consistency", help="see `reasoning-bench strategies`")
    run.add_argument("--n", type=int, help="samples per problem (self-consistency, best-of-n)")
    run.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="any strategy option, repeatable: --option k_verifications=4 (see `reasoning-bench strategies`)")
    run.add_argument("--verifier", help="verifier for best-of-n / weighted voting: judge | confidence")
    run.add_argument("--backend", default="local", help=BACKENDS_HELP)
    run.add_argument("--api-base", help="base URL of an OpenAI-compatible server; several replicas of one model: "
                     "URL1,URL2,... (balanced, one problem per replica, failover)")
    run.add_argument("--role", action="append", default=[], metavar="NAME=SPEC[@API_BASE]",
                     help="another model for a role, repeatable, SPEC as for --backend: "
                          "--role verifier=local:qwen2.5-coder-1.5b-instruct (the verifier role serves GenRM, judges, PRMs)")
    run.add_argument("--api-key", help="API key (default: the provider's environment variable)")
    run.add_argument("--budget", default="", help="per problem, e.g. tokens=20000,usd=0.1,seconds=60")
    run.add_argument("--run-budget", default="", help="cap for the whole run, same syntax")
    run.add_argument("--price", metavar="PROMPT,COMPLETION", help="USD per prompt token and per completion token "
                     "(one number: both), for a model litellm's cost table does not price; a usd budget needs a price")
    run.add_argument("--concurrency", type=int, default=16, help="problems in flight at once")
    _add_request_timeout(run)
    run.add_argument("--max-tokens", type=int, default=1024, help="max new tokens per sample")
    run.add_argument("--temperature", type=float, help="default 0.7 (greedy samples at 0 whatever it is)")
    run.add_argument("--sandbox", choices=["auto", "strict"], default="auto",
                     help="code tasks: strict refuses to grade without the sandbox's full isolation (namespaces, "
                          "read-only files, unprivileged uid); auto grades with what this machine offers")
    run.add_argument("--memory", metavar="PATH", help="SQLite file of a strategy that remembers across problems "
                     "(cheatsheet: its entries; sleep-time: each context's notes); rerun with the same one to resume")
    run.add_argument("--out", default="runs/latest", help="output folder; rerun with the same one to resume")
    _add_otel(run)
    _add_ray(run)


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser("sweep", help="strategies x budgets x datasets at matched compute (resumable, cached)")
    sweep.add_argument("--config", help="YAML or TOML file with the sweep's fields; flags given here override it")
    sweep.add_argument("--dataset", action="append", help=f"repeatable: {DATASETS_HELP} | PATH.jsonl")
    sweep.add_argument("--limit", type=int, help="first K problems of each dataset")
    sweep.add_argument("--strategy", action="append", metavar="NAME[:KEY=VALUE,...]",
                       help="repeatable, e.g. self-consistency or genrm-best-of-n:k_verifications=2,verify_max_tokens=256")
    sweep.add_argument("--n", help="sample-count points, e.g. 1,2,4,8,16")
    sweep.add_argument("--budget-grid", metavar="KIND=V1,V2,...", help="per-problem budget points, e.g. tokens=1000,2000,4000 "
                       "(kinds: tokens, completion_tokens, usd, flops, calls)")
    sweep.add_argument("--backend", help=BACKENDS_HELP + " (default local)")
    sweep.add_argument("--api-base", help="base URL of an OpenAI-compatible server (replicas: URL1,URL2,...)")
    sweep.add_argument("--api-key", help="API key (default: the provider's environment variable)")
    _add_request_timeout(sweep)
    sweep.add_argument("--max-tokens", type=int, help="max new tokens per sample (default 1024)")
    sweep.add_argument("--temperature", type=float, help="default 0.7")
    sweep.add_argument("--no-reuse", dest="reuse", action="store_const", const=False,
                       help="run every point for real instead of subsampling one pool per problem")
    sweep.add_argument("--budget-mode", choices=["expected", "worst-case"],
                       help="how a pooled strategy's k meets a budget point: expected cost at k (default) or its "
                       "worst case, every completion at max tokens, as the ledger holds direct runs")
    sweep.add_argument("--pool", type=int, help="pool size per problem for budget grids with reuse (default from the largest budget)")
    sweep.add_argument("--max-n", type=int, help="n given to direct strategies on a budget grid (default 64)")
    sweep.add_argument("--subsets", type=int, help="random subsets per (problem, k) for majority@k / best-of-k (default 32)")
    sweep.add_argument("--x-axis", choices=["tokens", "completion_tokens", "uncached_tokens", "usd", "flops", "eflops",
                                            "eflops_extended", "n"],
                       help="compute measure of the plots and the empirical plateau rule (default tokens)")
    sweep.add_argument("--intensity", type=float,
                       help="hardware FLOPs per byte for Kinetics' effective FLOPs (default 562.5, Kinetics' B200)")
    sweep.add_argument("--saturation-threshold", type=float,
                       help="the empirical plateau rule: accuracy gain per doubling below which a curve is flat (default 0.01)")
    sweep.add_argument("--no-coverage", dest="coverage", action="store_const", const=False, help="skip coverage curves")
    sweep.add_argument("--concurrency", type=int, help="problems in flight at once (default 32)")
    sweep.add_argument("--cache", help="generation cache file (default OUT/generations.sqlite)")
    sweep.add_argument("--out", help="output folder; rerun with the same one to resume")
    _add_otel(sweep)
    _add_ray(sweep)


def _parse_strategy_spec(text: str) -> dict[str, object]:
    """``name`` or ``name:key=value,key=value`` -> a StrategySpec's fields."""
    name, _, rest = text.partition(":")
    name = name.strip()
    items = [part.strip() for part in rest.split(",") if part.strip()]
    options = _parse_options(name, items, flag=f"--strategy {text!r}:")
    return {"name": name, "options": options, "label": text if options else None}


def _sweep_config(args: argparse.Namespace):
    from .sweep import SweepConfig

    fields: dict[str, object] = {
        "datasets": args.dataset,
        "limit": args.limit,
        "strategies": [_parse_strategy_spec(s) for s in args.strategy] if args.strategy else None,
        "backend": args.backend,
        "api_base": args.api_base,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "reuse": args.reuse,
        "pool": args.pool,
        "budget_mode": args.budget_mode,
        "max_n": args.max_n,
        "subsets": args.subsets,
        "x_axis": args.x_axis,
        "intensity": args.intensity,
        "saturation_threshold": args.saturation_threshold,
        "coverage": args.coverage,
        "concurrency": args.concurrency,
        "cache": args.cache,
        "out": args.out,
    }
    if args.n:
        try:
            fields["n"] = [int(v) for v in args.n.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--n {args.n!r}: expected comma-separated integers like 1,2,4,8") from None
    if args.budget_grid:
        kind, sep, values = args.budget_grid.partition("=")
        bad = ConfigError(f"--budget-grid {args.budget_grid!r}: expected KIND=V1,V2,... like tokens=1000,2000")
        if not sep:
            raise bad
        try:
            fields["budget_grid"] = {kind.strip(): [float(v) for v in values.split(",") if v.strip()]}
        except ValueError:
            raise bad from None
    try:
        if args.config:
            return SweepConfig.from_file(args.config, **fields)
        if "out" not in fields or fields["out"] is None:
            fields["out"] = "runs/sweep"
        return SweepConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValueError as bad:  # pydantic's ValidationError: list every problem at once
        raise ConfigError(f"invalid sweep: {bad}") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reasoning.backends.cache import CachedBackend

    from .sweep import Sweep, format_fit, format_ttspm

    from .distributed import BackendSpec

    config = _sweep_config(args)
    _enable_otel(args)
    _check_ray(args)
    _check_request_timeout(args.request_timeout, config.backend)
    from .run_sweeps import backend_options

    # A vLLM engine gets its in-engine confidence stop when the sweep runs deepconf online.
    spec = BackendSpec(config.backend, config.api_base, args.api_key,
                       {**_request_timeout(args.request_timeout, config.backend), **backend_options([config])})
    ray = _ray_options(args, spec)
    sweep_backend = spec.build()
    _check_reachable(config.api_base)
    backend = CachedBackend(sweep_backend, config.cache or Path(config.out) / "generations.sqlite")
    sweep = Sweep(config, backend, ray=ray)  # builds every strategy: bad options fail before the model loads
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        sweep.progress = progress
        summary = asyncio.run(_sweep_and_close(sweep, backend))
    table = Table(title=f"sweep ({config.x_axis} per problem)")
    for column in ("dataset", "strategy", "point", "accuracy", "95% CI", "mean n", config.x_axis, "plateau (rule)"):
        table.add_column(column)
    from .sweep import x_value

    for row in summary["cells"]:
        table.add_row(row["dataset"], row["strategy"], row["point"], f"{row['accuracy']:.3f}",
                      f"{row['ci95'][0]:.3f}-{row['ci95'][1]:.3f}", f"{row['mean_n']:.2f}" if row["mean_n"] is not None else "-",
                      f"{x_value(row, config.x_axis):,.4g}", "yes" if row["saturation_point"] else "")
    Console().print(table)
    for dataset, strategies in summary["coverage"].items():
        for strategy, data in strategies.items():
            Console().print(f"coverage {dataset} / {strategy}: @1 {data['coverage'][0]:.3f}, "
                            f"@{data['k'][-1]} {data['coverage'][-1]:.3f}; {format_fit(data['fit'])}")
    for dataset, strategies in summary.get("ttspm", {}).items():
        for strategy, fit in strategies.items():
            Console().print(f"ttspm {dataset} / {strategy}: {format_ttspm(fit)}")
    console.print(f"cache: {backend.hits} samples reused, {backend.misses} generated")
    from .report import render

    console.print(f"rows: {config.out}/sweep.jsonl, report: {render(config.out)}")
    return 0


async def _sweep_and_close(sweep, backend):
    try:
        return await sweep.run()
    finally:
        await backend.aclose()


def _add_view(sub: argparse._SubParsersAction) -> None:
    view = sub.add_parser("view", help="one self-contained HTML page of a run: problems, call trees, search trees, "
                                       "votes, the ledger over time")
    view.add_argument("run_dir", metavar="RUN_DIR", help="a `reasoning-bench run` --out folder")
    view.add_argument("--problem", metavar="ID", help="open the page on this problem")
    view.add_argument("--out", metavar="FILE", help="where to write the page (default RUN_DIR/view.html)")
    view.add_argument("--serve", action="store_true", help="also serve it on 127.0.0.1 until Ctrl-C (prints the URL)")
    view.add_argument("--port", type=int, help="port for --serve (default: a free one)")


def cmd_view(args: argparse.Namespace) -> int:
    from .viewer import serve_view, view_url, write_view

    if args.port is not None and not args.serve:
        raise ConfigError("--port is for --serve")
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    path = write_view(args.run_dir, args.out, args.problem)
    if not args.serve:
        print(path)
        return 0
    try:
        server = serve_view(path, args.port or 0)
    except OSError as failed:
        raise ConfigError(f"cannot serve on 127.0.0.1:{args.port}: {failed.strerror or failed}") from None
    url = view_url(server, path) + (f"#problem={args.problem}" if args.problem else "")
    print(f"serving {path} on {url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import render
    from .run import stored

    out = Path(args.out)
    if not stored(out / "problems.jsonl").is_file() or not (out / "config.json").is_file():
        raise ConfigError(f"{out} is not a sweep folder (no problems.jsonl / config.json)")
    print(render(out, resummarise=True))
    return 0


def _check_reachable(api_base: str | None) -> None:
    """Fail fast, before loading data or models, when --api-base cannot be reached. Several
    replicas (URL1,URL2): each must be a URL and one at least reachable (the backend sets the
    others aside until they answer; a note names them)."""
    if not api_base:
        return
    urls = [part.strip() for part in api_base.split(",")]
    failures = []
    for each in urls:
        url = urlparse(each)
        if not url.hostname:
            raise ConfigError(f"--api-base {each!r} is not a URL")
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
            socket.create_connection((url.hostname, port), timeout=5).close()
        except (OSError, ValueError) as failed:
            failures.append(f"{each} ({getattr(failed, 'strerror', None) or failed})")
    if len(failures) == len(urls):
        raise ConfigError(f"cannot reach --api-base {', '.join(failures)}")
    if failures:
        console.print(f"note: {len(failures)} of {len(urls)} replicas cannot be reached now (requests move off "
                      f"them at once, and back once they answer): {escape(', '.join(failures))}")


def _parse_options(strategy: str, items: list[str], flag: str = "--option") -> dict[str, object]:
    """``key=value`` pairs (``--option`` or ``--strategy name:...``), checked against the
    strategy's own options."""
    from reasoning.strategies import get
    from reasoning.strategies.registry import options_of

    known = options_of(get(strategy))
    options: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"{flag} {item!r} is not of the form key=value")
        if key not in known:
            raise ConfigError(f"strategy {strategy!r} has no option {key!r}; it has: {', '.join(known)}")
        options[key] = _number_or_text(raw.strip())
    return options


def _number_or_text(raw: str) -> object:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(raw.lower(), raw)


def _strategy_from_args(args: argparse.Namespace):
    from reasoning.strategies import create, get
    from reasoning.verifiers import make_verifier

    if args.n is not None and get(args.strategy).size_option is None:
        raise ConfigError(f"strategy {args.strategy!r} has no sample count; drop --n (see `reasoning-bench strategies`)")
    verifier = make_verifier(args.verifier) if args.verifier else None
    return create(args.strategy, n=args.n, verifier=verifier, **_memory_option(args),
                  **_parse_options(args.strategy, args.option))


def _memory_option(args: argparse.Namespace) -> dict[str, str]:
    """``--memory PATH`` as the strategy's ``memory`` option (refused for a strategy without one)."""
    from reasoning.strategies import get
    from reasoning.strategies.registry import options_of

    memory = getattr(args, "memory", None)
    if memory is None:
        return {}
    if "memory" not in options_of(get(args.strategy)):
        raise ConfigError(f"--memory: strategy {args.strategy!r} keeps no memory across problems "
                          "(cheatsheet and sleep-time do)")
    if any(item.partition("=")[0].strip() == "memory" for item in args.option):
        raise ConfigError("give the memory file once: --memory PATH or --option memory=PATH, not both")
    return {"memory": memory}


API_BACKENDS = ("litellm", "openai")


def _add_otel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--otel", action="store_true",
                        help="export each solve as OpenTelemetry spans (GenAI conventions) over OTLP/HTTP to "
                             "OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318); setting that variable "
                             "does it without the flag. Needs: pip install 'reasoning-tts[otel]'")


def _enable_otel(args: argparse.Namespace) -> None:
    """``--otel``: turn on OpenTelemetry export (reasoning/telemetry.py), unless already on."""
    if not args.otel:
        return
    from reasoning import telemetry

    if not telemetry.active():
        try:
            telemetry.enable()
        except ImportError as missing:
            raise ConfigError(f"--otel: {missing}") from None


def _add_ray(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                        help="solve on Ray workers: a cluster's ADDRESS (ray://HOST:10001, auto) or, without one, a "
                             "new local cluster; the run budget is held by one ledger actor. Needs: pip install "
                             "'reasoning-tts[ray]'")
    parser.add_argument("--ray-workers", type=int, metavar="N",
                        help="with --ray: how many workers (default: one per GPU for vllm on GPUs, else one per CPU); "
                             "--concurrency is then per worker")


def _check_ray(args: argparse.Namespace) -> None:
    """``--ray`` / ``--ray-workers`` make sense and Ray is installed (before anything slow)."""
    if args.ray is None:
        if args.ray_workers is not None:
            raise ConfigError("--ray-workers is for --ray")
        return
    if args.ray_workers is not None and args.ray_workers < 1:
        raise ConfigError(f"--ray-workers must be >= 1, got {args.ray_workers}")
    import importlib.util

    from .distributed import INSTALL_HINT

    if importlib.util.find_spec("ray") is None:
        raise ConfigError(INSTALL_HINT)


def _ray_options(args: argparse.Namespace, generator, roles=None):
    """``--ray`` / ``--ray-workers`` as ``distributed.RayOptions`` (None without --ray)."""
    _check_ray(args)
    if args.ray is None:
        return None
    from .distributed import RayOptions

    return RayOptions(address=args.ray or None, workers=args.ray_workers, generator=generator, roles=roles or {})


def _add_request_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--request-timeout", type=float, metavar="SECONDS",
                        help="API backends: seconds one model call may take, retries included (default 300)")


def _check_request_timeout(seconds: float | None, *specs: str) -> None:
    """``--request-timeout``: a positive number, for a run with at least one API backend."""
    if seconds is None:
        return
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"--request-timeout must be a positive number of seconds, got {seconds}")
    if not any(spec.partition(":")[0] in API_BACKENDS for spec in specs):
        raise ConfigError("--request-timeout is for API backends (litellm, openai); others make no HTTP requests")


def _request_timeout(seconds: float | None, spec: str) -> dict[str, float]:
    """``from_spec`` options of ``spec`` for ``--request-timeout`` (checked before)."""
    return {"timeout": seconds} if seconds is not None and spec.partition(":")[0] in API_BACKENDS else {}


def _parse_price(text: str | None) -> list[float] | None:
    """``--price PROMPT,COMPLETION`` in USD per token (one number: both)."""
    if text is None:
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    values = values * 2 if len(values) == 1 else values
    if len(values) != 2 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ConfigError(f"--price {text!r}: expected USD per token as PROMPT,COMPLETION, e.g. 1.5e-7,6e-7")
    return values


def cmd_run(args: argparse.Namespace) -> int:
    from .datasets import load_items
    from .run import RunConfig

    # Everything a user can get wrong is checked before anything slow (model loading).
    _enable_otel(args)
    _check_ray(args)
    Budget.parse(args.budget)
    Budget.parse(args.run_budget)
    if args.concurrency < 1:
        raise ConfigError("--concurrency must be >= 1")
    strategy = _strategy_from_args(args)
    from .distributed import BackendSpec

    price = _parse_price(args.price)
    if price and args.backend.partition(":")[0] in ("local", "vllm"):
        raise ConfigError("--price is for API backends (litellm, openai); a local model's price is known: $0")
    role_specs = _parse_roles(args.role)
    _check_request_timeout(args.request_timeout, args.backend, *(spec for spec, _ in role_specs.values()))
    items = load_items(args.dataset, args.limit)
    _check_reachable(args.api_base)
    generator = BackendSpec(args.backend, args.api_base, args.api_key,
                            {**({"usd_per_token": tuple(price)} if price else {}),
                             **_request_timeout(args.request_timeout, args.backend)})
    role_backends = {name: BackendSpec(spec, base or args.api_base, args.api_key,
                                       _request_timeout(args.request_timeout, spec))
                     for name, (spec, base) in role_specs.items()}
    ray = _ray_options(args, generator, role_backends)
    backend = generator.build()  # under --ray only checked here (prices); the workers build their own
    roles = {name: spec.build() for name, spec in role_backends.items()}
    temperature = 0.7 if args.temperature is None else args.temperature
    fixed = type(strategy).fixed_temperature
    if args.temperature is not None and fixed is not None and args.temperature != fixed:
        console.print(f"note: {args.strategy} samples at temperature {fixed:g}; --temperature {args.temperature:g} "
                      "does not apply")
    config = RunConfig(
        dataset=args.dataset,
        limit=args.limit,
        strategy=args.strategy,
        strategy_options={
            **{k: v for k, v in {"n": args.n, "verifier": args.verifier}.items() if v is not None},
            **_memory_option(args),
            **_parse_options(args.strategy, args.option),
        },
        backend=args.backend,
        api_base=args.api_base,
        roles={name: spec + (f"@{base}" if base else "") for name, (spec, base) in role_specs.items()},
        budget=str(Budget.parse(args.budget)),
        run_budget=str(Budget.parse(args.run_budget)),
        price=price,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        temperature=temperature,
        sandbox=args.sandbox,
        out=args.out,
    )
    shown = _RichRunProgress()
    with shown.progress:
        summary = asyncio.run(_run_and_close(config, strategy, backend, items, shown, roles, ray))
    _print_summary(summary)
    return 0


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _EtaColumn(ProgressColumn):
    """The ETA from the run's own counts (RunProgress.eta), not rich's per-task speed, which
    knows only the problem count: problems run at once and finish in jumps."""

    def __init__(self, run: RunProgress) -> None:
        super().__init__()
        self.run = run

    def render(self, task) -> Text:
        if self.run.finished == 0 and self.run.todo:
            return Text("ETA after the 1st problem")  # all run at once: no rate to go by before
        eta = self.run.eta()
        return Text("ETA ?" if eta is None else f"ETA {_clock(eta)}")


class _RunDisplay(Progress):
    """rich's Progress plus a line of what problem counts miss: the tokens generated so far."""

    def __init__(self, run: RunProgress, *columns, **options) -> None:
        self.run = run  # before Progress draws for the first time
        super().__init__(*columns, **options)

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        if self.run.started is not None:
            tokens, elapsed = self.run.tokens(), time.monotonic() - self.run.started
            rate = f" ({tokens / elapsed:,.0f}/s)" if tokens and elapsed > 0 else ""
            yield Text(f"        {tokens:,} tokens generated{rate}, {self.run.calls:,} calls returned")


class _RichRunProgress(RunProgress):
    """The run's progress on the terminal: notes above a bar of problems with the elapsed time
    and an ETA from the token rate (none until a problem has finished: RunProgress.eta), and a
    line of completion tokens generated, moving as calls return (and as a local model decodes)."""

    def __init__(self) -> None:
        super().__init__()
        self.progress = _RunDisplay(
            self, TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("problems"),
            TimeElapsedColumn(), _EtaColumn(self), console=console, transient=False, refresh_per_second=4,
        )
        self.task = None

    def note(self, text: str) -> None:
        self.progress.console.print(text)

    def begin(self) -> None:
        self.task = self.progress.add_task("solving", total=self.total, completed=self.done)

    def changed(self) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.done)


def _parse_roles(items: list[str]) -> dict[str, tuple[str, str | None]]:
    """``--role NAME=SPEC[@API_BASE]`` -> {name: (spec, api_base)}."""
    roles: dict[str, tuple[str, str | None]] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name = name.strip()
        if not sep or not name or not spec:
            raise ConfigError(f"--role {item!r} is not of the form NAME=SPEC[@API_BASE] (e.g. verifier=local)")
        if name == "generator":
            raise ConfigError("--role generator: the generator is --backend")
        if name in roles:
            raise ConfigError(f"--role {name} given twice")
        head, at, base = spec.rpartition("@")
        if at and base.startswith(("http://", "https://")):
            _check_reachable(base)
            roles[name] = (head, base)
        else:
            roles[name] = (spec, None)
    return roles


async def _run_and_close(config, strategy, backend, items, progress, roles=None, ray=None):
    from .run import run_benchmark

    try:
        return await run_benchmark(config, strategy, backend, items=items, progress=progress, roles=roles, ray=ray)
    finally:
        for each in dict.fromkeys([backend, *(roles or {}).values()]):
            await each.aclose()


def _print_summary(summary: dict) -> None:
    usage = summary["usage"]
    table = Table(title=f"{summary['config']['strategy']} on {summary['config']['dataset']}")
    for column in ("accuracy", "problems", "tokens", "calls", "USD", "wall s", "stopped by"):
        table.add_column(column)
    stopped = ", ".join(f"{k}: {v}" for k, v in summary["stopped_by"].items()) or "-"
    table.add_row(
        f"{summary['accuracy']:.1%} ({summary['n_correct']}/{summary['n_problems']})",
        str(summary["n_problems"]) + ("" if summary["complete"] else " (incomplete)"),
        f"{usage['tokens']:,}",
        f"{usage['calls']:,}",
        f"{usage['usd']:.4f}",
        f"{summary['wall_seconds']:.1f}",
        stopped,
    )
    Console().print(table)
    if summary.get("usage_anomalies"):
        console.print(f"[yellow]warning:[/] {summary['usage_anomalies']} calls reported usage below zero or above what "
                      "they could have used; each was charged at its reservation (usage_anomaly in traces.jsonl)")
    console.print(f"results: {summary['config']['out']}/results.jsonl, summary: {summary['config']['out']}/summary.json")


def cmd_strategies(args: argparse.Namespace) -> int:
    from reasoning.strategies import available, get
    from reasoning.strategies.registry import options_of

    if args.name:
        cls = get(args.name)
        doc = inspect.getdoc(sys.modules[cls.__module__]) or ""
        table = Table(title=f"{args.name}: {doc.splitlines()[0] if doc else ''}")
        for column in ("option", "type", "default", "help"):
            table.add_column(column)
        for name, option in options_of(cls).items():
            shown = "(required)" if option.required else repr(option.default)
            table.add_row(name + (" (--n)" if name == cls.size_option else ""), option.type, shown, option.help)
        Console().print(table)
        return 0
    table = Table(title="strategies")
    table.add_column("name")
    table.add_column("options")
    table.add_column("what it does")
    for name, cls in available().items():
        options = ", ".join(k if p.required else f"{k}={p.default!r}" for k, p in options_of(cls).items())
        doc = (inspect.getdoc(sys.modules[cls.__module__]) or "").split("\n")[0]
        table.add_row(name, options, doc)
    Console().print(table)
    return 0


def cmd_prepare_model(args: argparse.Namespace) -> int:
    from reasoning.backends.local_model import DEFAULT_MODEL, ensure_local_model, preparation_note

    if note := preparation_note(args.name or DEFAULT_MODEL):
        console.print(note)
    path = ensure_local_model(args.name or DEFAULT_MODEL)
    print(path)
    return 0


def _add_service_options(parser: argparse.ArgumentParser) -> None:
    """What `serve` and `mcp` share: the backend and the budget rules."""
    parser.add_argument("--backend", default="local", help=BACKENDS_HELP)
    parser.add_argument("--api-base", help="base URL of the upstream OpenAI-compatible server (replicas: URL1,URL2,...)")
    parser.add_argument("--upstream-api-key", help="API key for the upstream model (default: the provider's environment variable)")
    parser.add_argument("--default-budget", default="", help="budget of requests that ask for none, e.g. tokens=20000,seconds=60 "
                        "(limits it leaves out come from --budget-cap)")
    parser.add_argument("--budget-cap", default="tokens=200000,seconds=600",
                        help="largest budget one request may ask for (default: %(default)s; 'unlimited' for none)")
    parser.add_argument("--max-n", type=int, default=64, help="largest n (samples) one request may ask for")
    parser.add_argument("--concurrency", type=int, default=64, help="requests solving at once; more wait their turn")
    parser.add_argument("--queue-timeout", type=float, default=60, metavar="SECONDS",
                        help="longest wait for a turn (also bounded by the request's seconds budget), then "
                             "HTTP 504 (default: %(default)s)")
    _add_request_timeout(parser)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="OpenAI-compatible HTTP server: the model name picks the strategy")
    _add_service_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind; non-loopback needs --api-key")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: env REASONING_API_KEY)")
    serve.add_argument("--max-request-bytes", type=int, default=1_000_000, help="larger request bodies get 413")
    serve.add_argument("--log-level", default="info", help="uvicorn log level")


def _service_from_args(args: argparse.Namespace):
    from reasoning.serve import BackendPool, ReasoningService

    cap, default = Budget.parse(args.budget_cap), Budget.parse(args.default_budget)
    _check_request_timeout(args.request_timeout, args.backend)
    if not (math.isfinite(args.queue_timeout) and args.queue_timeout > 0):
        raise ConfigError(f"--queue-timeout must be a positive number of seconds, got {args.queue_timeout}")
    _check_reachable(args.api_base)
    pool = BackendPool(args.backend, api_base=args.api_base, api_key=args.upstream_api_key,
                       options=_request_timeout(args.request_timeout, args.backend))
    return ReasoningService(pool, default_budget=default, budget_cap=cap, max_n=args.max_n,
                            concurrency=args.concurrency, queue_timeout=args.queue_timeout)


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from reasoning.serve.app import check_bind, create_app, uvicorn_server

    api_key = args.api_key or os.environ.get("REASONING_API_KEY") or None
    check_bind(args.host, api_key)  # before anything slow: a refused start must be quick and clear
    if args.max_request_bytes < 1:
        raise ConfigError("--max-request-bytes must be >= 1")
    service = _service_from_args(args)
    app = create_app(service, api_key=api_key, max_request_bytes=args.max_request_bytes)
    console.print(f"serving {args.backend} on http://{args.host}:{args.port}/v1 (auth {'on' if api_key else 'off'}, "
                  f"budget cap {service.cap}, default budget {service.default_budget})")
    uvicorn_server(app, args.host, args.port, log_level=args.log_level).run()
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    from reasoning.serve.mcp_server import build_mcp_server

    build_mcp_server(_service_from_args(args)).run()  # stdio: stdout carries the protocol, logs go to stderr
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasoning-bench", description="test-time-compute reasoning benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    strategies = sub.add_parser("strategies", help="list strategies, or every option of one")
    strategies.add_argument("name", nargs="?", help="a strategy: print each option's type, default and help")
    prepare = sub.add_parser("prepare-model", help="assemble and convert the embedded model into the cache")
    prepare.add_argument("--name", help="model name (default: the embedded 0.5B)")
    _add_sweep(sub)
    report = sub.add_parser("report", help="re-summarise a sweep folder and (re)draw its plots and report.html")
    report.add_argument("out", help="the sweep's --out folder")
    _add_view(sub)
    _add_serve(sub)
    mcp = sub.add_parser("mcp", help="MCP tool server on stdio: a `solve` tool for agents")
    _add_service_options(mcp)
    return parser


COMMANDS = {
    "run": cmd_run,
    "sweep": cmd_sweep,
    "report": cmd_report,
    "view": cmd_view,
    "strategies": cmd_strategies,
    "prepare-model": cmd_prepare_model,
    "serve": cmd_serve,
    "mcp": cmd_mcp,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: finished problems are saved; rerun with the same --out to resume[/]")
        return 130
    except (ConfigError, AuthenticationError, BadModel, BackendUnavailable) as error:
        console.print(f"[red]error:[/] {escape(str(error))}")  # as written: NAME=SPEC[@API_BASE], '.[otel]'
        return 2
    except ReasoningError as error:
        console.print(f"[red]error:[/] {type(error).__name__}: {escape(str(error))}")
        return 1
    finally:
        from reasoning import telemetry

        telemetry.flush()  # spans still batched (--otel, OTEL_EXPORTER_OTLP_ENDPOINT) go out before exit


if __name__ == "__main__":
    sys.exit(main())
