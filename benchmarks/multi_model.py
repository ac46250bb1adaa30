"""The multi-model strategies against each model alone, in ONE process (issue 17): every engine is
loaded once (only those the unfinished runs call: a resumed call builds no engine it does not
need), every calibration and evaluation shares one event loop, so all engines stay busy.

On the GPU host (three vLLM engines on one H200, loaded one after another; on 2026-11-29 the whole
run, loads included, took under 7 minutes with ``atts:turns=4``; the deadline keeps a call under
10 minutes, the same command resumes):

    python -m reasoning.benchmarks.multi_model \\
        --role 'small=vllm:/root/models/gemma-3-270m?gpu=0.2' --role 'mid=vllm:/root/model?gpu=0.25' \\
        --role 'large=vllm:/root/models/qwen2.5-coder-1.5b-instruct?gpu=0.35' \\
        --models small,mid,large --chat-models mid,large --sc-models mid,large \\
        --dataset gsm8k:200 --dataset math500:100 --calibrate-limit 40 --strategy-n 4 --n 1,4,8 \\
        --option atts:turns=16 --max-tokens 512 --concurrency 32 --deadline-s 540 --out runs/multi

On a CPU (smoke: two names for the one local model):

    python -m reasoning.benchmarks.multi_model --backend local --role a=local:qwen2.5-coder-0.5b-instruct \\
        --role b=local:qwen2.5-coder-0.5b-instruct --models a,b --dataset gsm8k:2 --calibrate-limit 2 \\
        --strategy-n 2 --n 1,2 --max-tokens 16 --option atts:turns=2 --out /tmp/multi   # ~5 min on 2 cores
    python -m reasoning.benchmarks.multi_model --table /tmp/multi

The models are roles, as for ``reasoning-bench run``: ``--backend`` is the generator (default:
the first of ``--chat-models``) and every ``--role NAME=SPEC`` adds one. ``--models`` lists them
cheapest first: the cascade's stages, and (unless ``--sc-models``) the models run alone.
``--chat-models`` (default: ``--models``) are those ensemble-vote and skill-route choose among and
atts drafts with (the first) and targets with (the last): a model without a chat template is
only useful as a cascade's first stage.

Per dataset (``--dataset NAME:LIMIT``, repeatable) the evaluation split is its first LIMIT
problems and the calibration split the ``--calibrate-limit`` after them (``--calibrate-offset``,
default LIMIT). Each strategy is calibrated with the project's own functions
(``calibrate_thresholds.calibrate_cascade`` / ``calibrate_atts``, ``calibrate_models.
calibrate_ensemble`` / ``calibrate_skill_route``) into ``OUT/<dataset>/calibration/<strategy>.json``
(kept: a file already there is reused), then evaluated by ``run.run_benchmark`` into
``OUT/<dataset>/<label>/`` (a ``reasoning-bench run`` folder: ``results.jsonl`` one graded row
per problem as it finishes, ``traces.jsonl``, ``summary.json``; resumed: finished problems are
not solved again). Each model alone is ``self-consistency`` at every ``--n`` (label
``sc-MODEL-nN``); the strategies draw ``--strategy-n`` samples (cascade: per stage; ensemble-vote,
atts: in all; skill-route: its 3 experts and an aggregator); ``--option STRATEGY:KEY=VALUE`` sets
another of a strategy's options. atts' steps are not bounded by ``--max-tokens``: a step is a
paragraph (at most 128 tokens, ~30-70 on GSM8K), so ``turns`` must leave room for a whole
solution: the 2026-11-29 run's ``atts:turns=4`` cut 98.5 % of its samples before they ended
(RESULTS.md; ATTS now counts them, ``info["unfinished"]``). The 1.5B's own solutions in that run
had a median of 6 (GSM8K) / 7 (MATH-500) paragraphs and a 95th percentile of 11 / 16, hence
``atts:turns=16``. Everything runs at once: the
self-consistency runs start with the calibrations, each strategy's evaluation as soon as its
calibration is there.

``--deadline-s`` counts from the process start (the engines' load included): at the deadline the
work still running is cancelled, what is on disk is kept and summarised, and the exit status is
0 (run it again with the same ``--out`` to finish). A run or calibration that fails is named on
stderr and the others go on (exit status 1). ``OUT/summary.json`` and the printed table
come from the run folders on disk only (``--table OUT`` prints it again): per label, the
problems done, accuracy, tokens / completion tokens / calls per problem, overall and per role
(``usage_by_role``), and for a cascade the share of problems each model answered
(``calibrate_thresholds.cascade_report``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reasoning.backends.base import Backend
from reasoning.context import Sampling
from reasoning.errors import ConfigError, ReasoningError

from .datasets import Item, load_items

STRATEGIES = ("cascade", "ensemble-vote", "skill-route", "atts")
STARTED = time.monotonic()  # --deadline-s counts from here: the process start


class Plan:
    """What to run, from the command line: models, datasets, strategies, sizes."""

    def __init__(self, args: argparse.Namespace, roles: Mapping[str, Backend], specs: Mapping[str, str]) -> None:
        self.roles, self.specs = dict(roles), dict(specs)
        self.models = _names(args.models) or [r for r in roles if r != "generator"]
        self.chat = _names(args.chat_models) or self.models
        if "generator" not in self.roles and self.chat and self.chat[0] in self.roles:  # no --backend
            self.roles["generator"], self.specs["generator"] = self.roles[self.chat[0]], self.specs[self.chat[0]]
        self.alone = _names(args.sc_models) or self.models
        self.strategies = _names(args.strategies)
        self.ns = [int(n) for n in _names(args.n)]
        self.strategy_n, self.max_tokens, self.temperature = args.strategy_n, args.max_tokens, args.temperature
        self.concurrency, self.calibrate_limit = args.concurrency, args.calibrate_limit
        self.out = Path(args.out)
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ConfigError(f"--strategies {unknown}: choose among {', '.join(STRATEGIES)}")
        missing = [m for m in dict.fromkeys(self.models + self.chat + self.alone) if m not in roles]
        if missing:
            raise ConfigError(f"{missing} are not roles (given: {', '.join(roles)})")
        if len(self.chat) < 2 and set(self.strategies) - {"cascade"}:
            raise ConfigError("ensemble-vote, skill-route and atts need two --chat-models")
        if min([*self.ns, self.strategy_n, self.max_tokens, self.concurrency, self.calibrate_limit]) < 1:
            raise ConfigError("--n, --strategy-n, --max-tokens, --concurrency and --calibrate-limit must be >= 1")
        self.sampling = Sampling(max_tokens=self.max_tokens, temperature=self.temperature)
        self.extra = _strategy_options(args.option, self.strategies)

    def options(self, strategy: str, calibration: Path) -> dict[str, Any]:
        """The strategy's options at evaluation, with its calibration file."""
        n = self.strategy_n
        return {"cascade": {"models": ",".join(self.models), "n": n, "calibration": str(calibration)},
                "ensemble-vote": {"n": n, "calibration": str(calibration)},
                "skill-route": {"profiles": str(calibration)},
                "atts": {"draft": self.chat[0], "target": self.chat[-1], "n": n, "calibration": str(calibration)},
                }[strategy] | self.extra.get(strategy, {})

    async def calibrate(self, strategy: str, items: list[Item], path: Path) -> None:
        """Write ``strategy``'s calibration on ``items`` to ``path`` (nothing when it is there)."""
        from .calibrate_models import calibrate_ensemble, calibrate_skill_route
        from .calibrate_thresholds import calibrate_atts, calibrate_cascade

        if path.exists():
            return
        common: dict[str, Any] = {"concurrency": self.concurrency, "sampling": self.sampling,
                                  "records_out": path.with_suffix(".records.jsonl")}
        if strategy == "cascade":
            made: Any = await calibrate_cascade(items, self.roles, self.models, target_accuracy=0.95, relative=True,
                                                n=self.strategy_n, **common)
        elif strategy == "atts":
            steps = {k: v for k, v in self.extra.get("atts", {}).items() if k in ("draft_tokens", "step_stop", "alpha")}
            made = await calibrate_atts(items, self.roles, draft=self.chat[0], target=self.chat[-1],
                                        samples=self.strategy_n, **steps, **common)
        elif strategy == "ensemble-vote":
            made = await calibrate_ensemble(items, self.roles, self.chat, **common)
        else:
            made = await calibrate_skill_route(items, self.roles, self.chat, keyword_role=self.chat[0], **common)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(made, dict):
            path.write_text(json.dumps(made, indent=1) + "\n", encoding="utf-8")
        else:
            made.save(path)

    def uses(self, strategy: str) -> list[str]:
        """The models (roles) a strategy's runs and calibration call, as ``options`` and
        ``calibrate`` name them; a model alone (self-consistency) uses only itself."""
        return {"cascade": self.models, "atts": [self.chat[0], self.chat[-1]]}.get(strategy, self.chat)

    def done(self, dataset: str, label: str, items: list[Item]) -> bool:
        """Whether ``OUT/<dataset>/<label>`` has a row for every problem: resuming it solves nothing."""
        from .run import read_done

        results = self.out / _folder(dataset) / label / "results.jsonl"
        return results.is_file() and {item.id for item in items} <= set(read_done(results))

    async def evaluate(self, dataset: str, items: list[Item], label: str, strategy: str, options: dict[str, Any],
                       generator: str, uses: Sequence[str]) -> dict[str, Any]:
        """One ``reasoning-bench run`` folder, ``OUT/<dataset>/<label>``, resumed if there. The
        run gets the backends of ``uses`` only (it loads every backend it is given); its config
        records every role, as the stored runs do (a resumed run must match them)."""
        from reasoning.strategies import create

        from .run import RunConfig, run_benchmark

        config = RunConfig(dataset=dataset, limit=len(items), strategy=strategy, strategy_options=options,
                           backend=self.specs[generator], roles={r: s for r, s in self.specs.items() if r != "generator"},
                           concurrency=self.concurrency, max_tokens=self.max_tokens, temperature=self.temperature,
                           out=str(self.out / _folder(dataset) / label))
        roles = {role: self.roles[role] for role in uses} | {"generator": self.roles[generator]}
        return await run_benchmark(config, create(strategy, **options), roles[generator], items=items, roles=roles)

    def jobs(self, dataset: str, limit: int, offset: int | None) -> dict[str, tuple[Awaitable[Any], set[str]]]:
        """Every run of one dataset: each model alone at each n, each strategy after its
        calibration; each with the models it still has to call (none once its rows and its
        calibration are on disk)."""
        items = load_items(dataset, limit)
        start = limit if offset is None else offset
        held_out = load_items(dataset, start + self.calibrate_limit)[start:]
        if start < len(items):
            raise ConfigError(f"--calibrate-offset {start} overlaps the {len(items)} evaluation problems of {dataset}")
        jobs: dict[str, tuple[Awaitable[Any], set[str]]] = {
            f"{dataset} sc-{model}-n{n}": (
                self.evaluate(dataset, items, f"sc-{model}-n{n}", "self-consistency", {"n": n}, model, [model]),
                set() if self.done(dataset, f"sc-{model}-n{n}", items) else {model})
            for model in self.alone for n in self.ns}

        def calibration(strategy: str) -> Path:
            return self.out / _folder(dataset) / "calibration" / f"{strategy}.json"

        async def calibrated(strategy: str) -> Any:
            if not held_out:
                raise ConfigError(f"{dataset} has no problems after {start} to calibrate on")
            await self.calibrate(strategy, held_out, calibration(strategy))
            return await self.evaluate(dataset, items, strategy, strategy, self.options(strategy, calibration(strategy)),
                                       self.chat[0], self.uses(strategy))

        return jobs | {f"{dataset} {s}": (calibrated(s), set() if calibration(s).exists() and self.done(dataset, s, items)
                                          else {*self.uses(s), self.chat[0]})
                       for s in self.strategies}


def _names(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _strategy_options(items: Sequence[str], strategies: Sequence[str]) -> dict[str, dict[str, object]]:
    """``--option STRATEGY:KEY=VALUE`` items as {strategy: options}, each checked by the strategy."""
    from .cli import _parse_options

    grouped: dict[str, list[str]] = {}
    for item in items:
        strategy, sep, option = item.partition(":")
        if not sep or strategy not in strategies:
            raise ConfigError(f"--option {item!r}: expected STRATEGY:KEY=VALUE, STRATEGY one of {', '.join(strategies)}")
        grouped.setdefault(strategy, []).append(option)
    return {s: _parse_options(s, options) for s, options in grouped.items()}


def _folder(dataset: str) -> str:
    """A dataset's folder under --out: its name, or a file's name without the suffix."""
    return Path(dataset).stem


def _dataset(text: str) -> tuple[str, int]:
    name, _, limit = text.rpartition(":")
    if not name or not limit.isdigit() or int(limit) < 1:
        raise ConfigError(f"--dataset {text!r}: expected NAME:LIMIT, e.g. gsm8k:200")
    return name, int(limit)


# -- summary from disk ----------------------------------------------------------------
def label_summary(folder: Path) -> dict[str, Any]:
    """One run folder's figures, from its rows: accuracy and, per problem, tokens, completion
    tokens, calls and FLOPs overall and per role; a cascade's share of problems each model
    answered (RESULTS.md's multi-model tables read these too)."""
    from .calibrate_thresholds import cascade_report
    from .run import read_rows

    rows = read_rows(folder / "results.jsonl")
    n = len(rows) or 1

    def per_problem(usages: Sequence[dict[str, Any]]) -> dict[str, float]:
        return {key: sum(u.get(key, 0) for u in usages) / n for key in ("tokens", "completion_tokens", "calls", "flops")}

    roles = sorted({r for row in rows for r in row.get("usage_by_role", {})})
    # a model alone ("sc-MODEL-nN") ran as the generator role: name the model instead
    alone = folder.name.split("-")[1] if folder.name.startswith("sc-") else None
    made: dict[str, Any] = {
        "problems": len(rows), "accuracy": sum(bool(r["correct"]) for r in rows) / n,
        **per_problem([r["usage"] for r in rows]),
        "by_role": {(alone if alone and role == "generator" else role):
                    per_problem([r["usage_by_role"][role] for r in rows if role in r["usage_by_role"]])
                    for role in roles},
    }
    if folder.name == "cascade" and rows:
        try:
            made["answered_share"] = cascade_report(folder)["answered_share"]
        except ConfigError:  # a stored copy without its traces (too big to keep): who answered is unknown
            pass
    return made


def summarise(out: Path) -> dict[str, dict[str, Any]]:
    """{dataset: {label: figures}} for every run folder under ``out``; written to ``out/summary.json``."""
    made = {d.name: {f.name: label_summary(f) for f in sorted(d.iterdir()) if (f / "results.jsonl").exists()}
            for d in sorted(out.iterdir()) if d.is_dir()} if out.is_dir() else {}
    made = {d: labels for d, labels in made.items() if labels}
    if made:
        (out / "summary.json").write_text(json.dumps(made, indent=1) + "\n", encoding="utf-8")
    return made


def table(summary: Mapping[str, Mapping[str, dict[str, Any]]]) -> str:
    """The summary as one markdown table per dataset."""
    lines = []
    for dataset, labels in summary.items():
        lines += [f"### {dataset}", "", "| run | problems | accuracy | tokens/problem | generated/problem | "
                  "calls/problem | tokens/problem by role | answered by |", "|---|---:|---:|---:|---:|---:|---|---|"]
        for label, s in labels.items():
            by_role = ", ".join(f"{r} {u['tokens']:.0f}" for r, u in s["by_role"].items())
            share = ", ".join(f"{m} {v:.0%}" for m, v in s.get("answered_share", {}).items())
            lines.append(f"| {label} | {s['problems']} | {s['accuracy']:.3f} | {s['tokens']:.0f} | "
                         f"{s['completion_tokens']:.0f} | {s['calls']:.2f} | {by_role} | {share} |")
        lines.append("")
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasoning.benchmarks.multi_model",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--table", metavar="OUT", help="only print the table of the runs under OUT, from disk")
    parser.add_argument("--backend", help="the generator's model (default: the first of --models)")
    parser.add_argument("--role", action="append", default=[], metavar="NAME=SPEC[@API_BASE]",
                        help="a model under a role name, repeatable")
    parser.add_argument("--api-base")
    parser.add_argument("--api-key")
    parser.add_argument("--models", help="roles, cheapest first: the cascade's stages (default: every --role)")
    parser.add_argument("--chat-models", help="roles for ensemble-vote, skill-route, atts (default: --models)")
    parser.add_argument("--sc-models", help="roles evaluated alone with self-consistency (default: --models)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="default: %(default)s")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME:LIMIT", help="repeatable")
    parser.add_argument("--calibrate-offset", type=int, help="first calibration problem (default: LIMIT)")
    parser.add_argument("--calibrate-limit", type=int, default=40)
    parser.add_argument("--strategy-n", type=int, default=4, help="samples of each strategy (see above)")
    parser.add_argument("--option", action="append", default=[], metavar="STRATEGY:KEY=VALUE",
                        help="another option of one strategy at evaluation, e.g. atts:turns=16 (repeatable)")
    parser.add_argument("--n", default="1,4,8", help="self-consistency sizes of each model alone")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--concurrency", type=int, default=16, help="problems in flight per run")
    parser.add_argument("--deadline-s", type=float, help="stop this long after the process start, keep what is done")
    parser.add_argument("--out", help="where everything is written")
    return parser


def build_roles(args: argparse.Namespace) -> tuple[dict[str, Backend], dict[str, str]]:
    """Every role's backend, built once (``--backend`` as the generator), and its spec."""
    from reasoning.backends import from_spec

    from .cli import _parse_roles

    parsed = _parse_roles(args.role)
    roles = {name: from_spec(spec, api_base=base or args.api_base, api_key=args.api_key)
             for name, (spec, base) in parsed.items()}
    specs = {name: spec for name, (spec, _) in parsed.items()}
    if args.backend:
        specs["generator"] = args.backend
        roles["generator"] = from_spec(args.backend, api_base=args.api_base, api_key=args.api_key)
    return roles, specs


async def run_all(args: argparse.Namespace, roles: Mapping[str, Backend], specs: Mapping[str, str],
                  on_deadline: Callable[[], None] = lambda: None) -> dict[str, BaseException]:
    """Load the backends the unfinished runs use, once, run every dataset's jobs at once until
    done or the deadline; the backends are closed at the end. Returns the jobs that failed (the others went on)."""
    plan = Plan(args, roles, specs)
    datasets = [_dataset(d) for d in args.dataset]
    if not datasets:
        raise ConfigError("give at least one --dataset NAME:LIMIT")
    failed: dict[str, BaseException] = {}
    try:
        planned = {label: job for name, limit in datasets for label, job in plan.jobs(name, limit, args.calibrate_offset).items()}
        jobs = {label: job for label, (job, _) in planned.items()}
        # Only the models of runs still to do: a resumed call must not build engines it never calls.
        needed = [role for role in plan.roles if any(role in uses for _, uses in planned.values())]
        left = None if args.deadline_s is None else max(0.0, args.deadline_s - (time.monotonic() - STARTED))
        async with asyncio.timeout(left):
            for backend in dict.fromkeys(plan.roles[role] for role in needed):  # one at a time (engine start-up)
                await backend.load()
            done = await asyncio.gather(*jobs.values(), return_exceptions=True)
        failed = {label: got for label, got in zip(jobs, done, strict=True) if isinstance(got, BaseException)}
    except TimeoutError:
        on_deadline()
    finally:
        for backend in dict.fromkeys(plan.roles.values()):
            await backend.aclose()
    return failed


def main(argv: Sequence[str] | None = None, roles: tuple[dict[str, Backend], dict[str, str]] | None = None) -> int:
    """The command; ``roles`` (backends and specs) stands in for the built ones (tests)."""
    args = _parser().parse_args(argv)
    out = Path(args.table or args.out or "")
    failed: dict[str, BaseException] = {}
    if not args.table:
        if not args.out:
            print("error: give --out (or --table OUT)", file=sys.stderr)
            return 2
        try:
            failed = asyncio.run(run_all(args, *(roles or build_roles(args)), lambda: print(
                f"deadline: {args.deadline_s:.0f} s reached; kept what was done", file=sys.stderr)))
        except (ReasoningError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for label, error in failed.items():
            print(f"error: {label}: {type(error).__name__}: {error}", file=sys.stderr)
    print(table(summarise(out)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
