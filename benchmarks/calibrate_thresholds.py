"""Calibrate the thresholds of ``cascade`` and ``atts`` on a held-out split (plain JSON files the
strategies load with ``calibration=``).

    python -m reasoning.benchmarks.calibrate_thresholds cascade --dataset gsm8k --offset 200 --limit 40 \\
        --role small=local:gemma-3-270m --role medium=local --role large=local:qwen2.5-coder-1.5b-instruct \\
        --models small,medium,large --n 4 --target-accuracy 0.95 --relative --out cascade.json
    python -m reasoning.benchmarks.calibrate_thresholds atts --dataset gsm8k --offset 200 --limit 40 \\
        --role draft=local --role target=local:qwen2.5-coder-1.5b-instruct --samples 4 --alpha 0.4 --out atts.json
    python -m reasoning.benchmarks.calibrate_thresholds report runs/cascade --calibration cascade.json

The models are roles, as for ``reasoning-bench run`` (``--backend`` is the generator, every
``--role NAME=SPEC`` adds one); at solve time the same role names must name the same models. Use
problems that are NOT in the evaluation split (``run --limit N`` evaluates the first N: calibrate
from ``--offset N``). The machinery is ``benchmarks/calibrate.py``'s: items from ``load_items``,
one calibration strategy per problem through ``asolve_many`` under ``--run-budget`` (problems it
cut short left out with ``cut_by_run_budget``), answers graded with ``run.grade_item``.

**cascade.** Every model answers every problem as a cascade stage would (``n`` samples voted,
the stage's signal: agreement or mean token confidence); each stage's vote is graded and its
cost kept (tokens, FLOPs). The thresholds t_1..t_{k-1} (one per model but the last) are then
chosen by exhaustive search: the candidates of stage i are the distinct signals stage i showed on
the split plus "skip" (``null``: never sure, so ``Cascade.run`` does not run the stage and it
costs nothing); each choice is replayed on the records (a problem stops at the first stage whose
signal reaches its threshold, as ``Cascade.run`` does), and the choice kept is
the one with the least mean cost (FLOPs where every model has a parameter count, else tokens)
whose accuracy reaches the target (``--target-accuracy``; with ``--relative``, that fraction of
the largest model's accuracy on the split); ties go to the higher accuracy, then to the first
candidates. If none reaches it, the most accurate choice is kept and ``target_met`` is false.
The file's notes give, on the split, the share of problems each model answered and the cost saved
against always using the largest model. These are in-sample figures: evaluate on another split
(``reasoning-bench run --strategy cascade ... --out RUN``, then ``report RUN``: the same figures
from the run, the largest model's cost on problems it never saw taken from the calibration).

**atts.** As the reference code's ``ref_conformal.py``: on each problem the draft writes
``--samples`` first steps (one request), the target scores each (perplexity, teacher-forced).
Those perplexities are the calibration scores; ``ATTS(calibration=...)`` applies the conformal
test at its own ``alpha``, and the file records the threshold at ``--alpha``
(``atts.conformal_threshold``). Later steps are not in the calibration set (as there), so the
rejection rate realised on whole solutions can differ from alpha: ATTS reports it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from reasoning import Budget
from reasoning.backends.base import Backend
from reasoning.context import Context, Sampling
from reasoning.errors import ConfigError, ReasoningError
from reasoning.strategies.atts import conformal_threshold, perplexity
from reasoning.strategies.cascade import CONFIDENCE_TOP_K, stage_signal
from reasoning.strategies.voting import majority
from reasoning.strategy import Outcome, Strategy
from reasoning.types import GenerationRequest

from .calibrate import (MAX_ASSIGNMENTS, add_run_arguments, add_split_arguments, check_model_split, cut_by_run_budget,
                        solve_items, split_and_roles, write_records)
from .datasets import Item


class _Stages(Strategy):
    """Every model answers as a cascade stage would (not registered)."""

    name = "calibrate-cascade"
    models: list[str]
    n: int
    signal: Literal["agreement", "confidence"]
    max_tokens: int | None = None

    async def run(self, ctx: Context) -> Outcome:
        stages: dict[str, Any] = {}
        for role in self.models:
            before = ctx.ledger.used.tokens, ctx.ledger.used.flops
            async with ctx.span(f"stage:{role}") as sub:
                drawn = await sub.using(role).generate(
                    n=self.n, max_tokens=self.max_tokens, name="sample",
                    top_logprobs=CONFIDENCE_TOP_K if self.signal == "confidence" else 0)
            vote = majority(drawn)
            stages[role] = {"n": len(drawn), "answer": vote.answer, "signal": stage_signal(drawn, self.signal),
                            "tokens": ctx.ledger.used.tokens - before[0], "flops": ctx.ledger.used.flops - before[1]}
        return Outcome(None, info={"stages": stages})


class _FirstSteps(Strategy):
    """The draft's first steps, scored by the target (not registered)."""

    name = "calibrate-atts"
    draft: str
    target: str
    samples: int
    draft_tokens: int
    step_stop: str

    async def run(self, ctx: Context) -> Outcome:
        steps = await ctx.using(self.draft).generate(GenerationRequest(
            messages=ctx.messages, n=self.samples, max_tokens=self.draft_tokens, stop=(self.step_stop,),
            include_stop=True, temperature=ctx.sampling.temperature, top_p=ctx.sampling.top_p),
            name="draft", min_tokens=1)
        scorer = ctx.using(self.target)
        scored = await asyncio.gather(*(scorer.generate(GenerationRequest(messages=ctx.messages, score=s.text,
                                                                          max_tokens=1), name="score", min_tokens=1)
                                        for s in steps if s.text))
        scores = [perplexity(got[0].completion.token_logprobs) for got in scored if got and got[0].completion]
        return Outcome(None, info={"scores": [s for s in scores if s is not None]})




async def cascade_records(
    items: Sequence[Item], roles: Mapping[str, Backend], models: Sequence[str], *, n: int = 4,
    signal: Literal["agreement", "confidence"] = "agreement", run_budget: Budget | None = None,
    concurrency: int = 4, sampling: Sampling | None = None, max_tokens: int | None = None,
) -> list[dict[str, Any]]:
    """Every model's stage (vote, signal, cost) on every item, graded: one record per item that
    every model answered and the run budget did not cut."""
    from .run import grade_item

    check_model_split(items, roles, models)
    results = await solve_items(items, _Stages(models=list(models), n=n, signal=signal, max_tokens=max_tokens),
                               roles, run_budget=run_budget, concurrency=concurrency, sampling=sampling)
    records = []
    for item, result in zip(items, results, strict=True):
        stages = (result.info or {}).get("stages") or {}
        if cut_by_run_budget(result.trace.to_list()) or any(not stages.get(m, {}).get("n") for m in models):
            continue
        for model in models:
            stages[model]["correct"] = bool((await grade_item(item, stages[model]["answer"], []))[0])
        records.append({"id": item.id, "stages": {m: stages[m] for m in models}})
    if not records:
        raise ConfigError("no calibration problem was answered by every model (run budget too small?)")
    return records


def replay(record: dict[str, Any], models: Sequence[str], thresholds: Sequence[float | None]) -> dict[str, Any]:
    """What the cascade does on one recorded problem under ``thresholds`` (as ``Cascade.run``):
    the stages it runs, the model whose vote answers, whether that is right, and the cost."""
    ran, answered = [], None
    for index, model in enumerate(models):
        last = index == len(models) - 1
        threshold = thresholds[index] if index < len(thresholds) else None
        if threshold is None and not last:  # never sure: the cascade skips the stage (no cost)
            continue
        stage = record["stages"][model]
        ran.append(model)
        if stage["answer"] is not None:
            answered = model
        if stage["signal"] is not None and threshold is not None and stage["signal"] >= threshold:
            break
    correct = bool(answered is not None and record["stages"][answered]["correct"])
    return {"ran": ran, "answered_by": answered, "correct": correct,
            "tokens": sum(record["stages"][m]["tokens"] for m in ran),
            "flops": sum(record["stages"][m]["flops"] for m in ran)}


def select_thresholds(
    records: Sequence[dict[str, Any]], models: Sequence[str], *, target_accuracy: float, relative: bool = False,
    signal: str = "agreement",
) -> dict[str, Any]:
    """The cascade calibration the module docstring's rule picks from graded ``records``."""
    if len(models) < 2:
        raise ConfigError("a cascade needs at least two models")
    if not 0 < target_accuracy <= 1:
        raise ConfigError(f"--target-accuracy must be in (0, 1], got {target_accuracy}")
    if not records:
        raise ConfigError("no calibration records")
    largest = models[-1]
    largest_accuracy = sum(r["stages"][largest]["correct"] for r in records) / len(records)
    target = target_accuracy * largest_accuracy if relative else target_accuracy
    cost_key = "flops" if all(r["stages"][m]["flops"] > 0 for r in records for m in models) else "tokens"
    candidates = [sorted({r["stages"][m]["signal"] for r in records if r["stages"][m]["signal"] is not None})
                  + [None] for m in models[:-1]]
    space = math.prod(len(c) for c in candidates)
    if space > MAX_ASSIGNMENTS:
        raise ConfigError(f"{space} threshold combinations are too many to search; use fewer models or problems")

    def evaluate(choice: tuple[float | None, ...]) -> tuple[float, float, list[dict[str, Any]]]:
        played = [replay(r, models, choice) for r in records]
        return (sum(p["correct"] for p in played) / len(played), sum(p[cost_key] for p in played) / len(played),
                played)

    best: tuple[Any, ...] | None = None
    fallback: tuple[Any, ...] | None = None
    for order, choice in enumerate(itertools.product(*candidates)):
        accuracy, cost, played = evaluate(choice)
        if accuracy >= target - 1e-12 and (best is None or (cost, -accuracy, order) < best[0]):
            best = ((cost, -accuracy, order), choice, accuracy, cost, played)
        if fallback is None or (-accuracy, cost, order) < fallback[0]:
            fallback = ((-accuracy, cost, order), choice, accuracy, cost, played)
    assert fallback is not None
    met = best is not None
    _, choice, accuracy, cost, played = best if best is not None else fallback
    always_largest = sum(r["stages"][largest][cost_key] for r in records) / len(records)
    shares = {m: sum(p["answered_by"] == m for p in played) / len(played) for m in models}
    notes = {
        "rule": "least mean cost with accuracy >= target (exhaustive; see benchmarks/calibrate_thresholds.py)",
        "problems": len(records), "cost": cost_key, "target": target, "target_met": met,
        "accuracy": accuracy, "mean_cost": cost, "largest_accuracy": largest_accuracy,
        "always_largest_cost": always_largest,
        "cost_saved": 1 - cost / always_largest if always_largest else None,
        "answered_share": shares,
        "accuracy_per_model": {m: sum(r["stages"][m]["correct"] for r in records) / len(records) for m in models},
    }
    return {"kind": "cascade", "models": list(models), "signal": signal, "thresholds": list(choice),
            "target_accuracy": target_accuracy, "relative": relative, "notes": notes}


async def calibrate_cascade(items: Sequence[Item], roles: Mapping[str, Backend], models: Sequence[str], *,
                            target_accuracy: float, relative: bool = False, records_out: str | Path | None = None,
                            **options: Any) -> dict[str, Any]:
    records = await cascade_records(items, roles, models, **options)
    write_records(records, records_out)
    return select_thresholds(records, models, target_accuracy=target_accuracy, relative=relative,
                             signal=options.get("signal", "agreement"))


async def calibrate_atts(
    items: Sequence[Item], roles: Mapping[str, Backend], *, draft: str = "draft", target: str = "target",
    samples: int = 4, draft_tokens: int = 128, step_stop: str = "\n\n", alpha: float = 0.4,
    run_budget: Budget | None = None, concurrency: int = 4, sampling: Sampling | None = None,
    records_out: str | Path | None = None,
) -> dict[str, Any]:
    """The target's perplexities of the draft's first steps on ``items``, and the conformal
    threshold they give at ``alpha``."""
    check_model_split(items, roles, [draft, target])
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1), got {alpha}")
    strategy = _FirstSteps(draft=draft, target=target, samples=samples, draft_tokens=draft_tokens,
                           step_stop=step_stop)
    results = await solve_items(items, strategy, roles, run_budget=run_budget, concurrency=concurrency,
                               sampling=sampling)
    records = [{"id": item.id, "scores": (result.info or {}).get("scores", [])}
               for item, result in zip(items, results, strict=True) if not cut_by_run_budget(result.trace.to_list())]
    write_records(records, records_out)
    scores = sorted(s for r in records for s in r["scores"])
    if not scores:
        raise ConfigError("no draft step was scored (run budget too small?)")
    return {"kind": "atts", "draft": draft, "target": target, "alpha": alpha,
            "threshold": _finite(conformal_threshold(scores, alpha)), "scores": scores,
            "notes": {"problems": len(records), "samples": samples, "draft_tokens": draft_tokens,
                      "step_stop": step_stop, "scored": "first steps (as ref_conformal.py)"}}


def cascade_report(run_dir: str | Path, calibration: str | Path | None = None) -> dict[str, Any]:
    """A cascade run's share of problems each model answered, its accuracy and mean cost, and the
    cost saved against always using the largest model (``reasoning-bench run --out RUN_DIR``).

    The largest model's cost on a problem the cascade answered earlier was never paid, so it is
    estimated: from the calibration file's ``always_largest_cost`` when given (same models and n),
    else the mean cost of the largest stage over the problems that reached it (``estimate``
    names which)."""
    run = Path(run_dir)
    traces_file = run / "traces.jsonl"
    if not traces_file.exists() and (run / "info.jsonl").exists():
        traces_file = run / "info.jsonl"  # a stored copy keeps each trace's {id, text, info}, not the whole trace
    try:
        traces = [json.loads(line) for line in traces_file.read_text(encoding="utf-8").splitlines()]
        results = {r["id"]: r for r in map(json.loads, (run / "results.jsonl").read_text(encoding="utf-8").splitlines())}
    except FileNotFoundError as missing:
        raise ConfigError(f"{run} is not a run folder ({missing.filename} missing)") from None
    rows = [(t["info"], results.get(t["id"], {})) for t in traces if (t.get("info") or {}).get("stages")]
    if not rows:
        raise ConfigError(f"{run} has no cascade problems (no stages in traces.jsonl)")
    models = list(dict.fromkeys(s["role"] for info, _ in rows for s in info["stages"]))
    cost = "flops" if all(s["flops"] > 0 for info, _ in rows for s in info["stages"]) else "tokens"
    largest = models[-1]
    reached = [s[cost] for info, _ in rows for s in info["stages"] if s["role"] == largest]
    if calibration is not None:
        notes = json.loads(Path(calibration).read_text(encoding="utf-8")).get("notes", {})
        if notes.get("cost") != cost:
            raise ConfigError(f"the calibration's costs are in {notes.get('cost')}, this run's in {cost}")
        always, estimate = notes["always_largest_cost"], "calibration"
    else:
        always = sum(reached) / len(reached) if reached else None
        estimate = f"mean of the {len(reached)} problems that reached {largest}"
    mean = sum(s[cost] for info, _ in rows for s in info["stages"]) / len(rows)
    return {
        "problems": len(rows), "models": models, "cost": cost,
        "answered_share": {m: sum(info["answered_by"] == m for info, _ in rows) / len(rows) for m in models},
        "accuracy": sum(bool(r.get("correct")) for _, r in rows) / len(rows), "mean_cost": mean,
        "always_largest_cost": always, "estimate": estimate,
        "cost_saved": 1 - mean / always if always else None,
    }


def _finite(value: float) -> float | None:
    """JSON has no infinity: None stands for "never rejects"."""
    return value if math.isfinite(value) else None




# -- command line -------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasoning.benchmarks.calibrate_thresholds",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("method", choices=("cascade", "atts"))
    add_split_arguments(parser, role_help="a model under a role name, repeatable")
    parser.add_argument("--api-base")
    parser.add_argument("--api-key")
    parser.add_argument("--models", default="small,large", help="cascade: roles, cheapest first (default: %(default)s)")
    parser.add_argument("--n", type=int, default=4, help="cascade: samples per stage")
    parser.add_argument("--signal", choices=("agreement", "confidence"), default="agreement")
    parser.add_argument("--target-accuracy", type=float, default=0.95, help="cascade: accuracy to reach")
    parser.add_argument("--relative", action="store_true",
                        help="cascade: the target is a fraction of the largest model's accuracy on the split")
    parser.add_argument("--draft", default="draft", help="atts: the draft's role")
    parser.add_argument("--target", default="target", help="atts: the target's role")
    parser.add_argument("--samples", type=int, default=4, help="atts: first steps per problem (the paper: 16)")
    parser.add_argument("--draft-tokens", type=int, default=128, help="atts: max tokens of a draft step")
    parser.add_argument("--alpha", type=float, default=0.4, help="atts: conformal level (rejection rate)")
    add_run_arguments(parser, records_help="also write the records here (JSON lines)")
    return parser


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    items, roles = split_and_roles(args, at_least_one=("n", "samples", "draft_tokens", "concurrency", "max_tokens"))
    common = dict(run_budget=Budget.parse(args.run_budget), concurrency=args.concurrency, records_out=args.records,
                  sampling=Sampling(max_tokens=args.max_tokens, temperature=args.temperature))
    try:
        if args.method == "cascade":
            models = [m.strip() for m in args.models.split(",")]
            made = await calibrate_cascade(items, roles, models, target_accuracy=args.target_accuracy,
                                           relative=args.relative, n=args.n, signal=args.signal, **common)
        else:
            made = await calibrate_atts(items, roles, draft=args.draft, target=args.target, samples=args.samples,
                                        draft_tokens=args.draft_tokens, alpha=args.alpha, **common)
    finally:
        for backend in dict.fromkeys(roles.values()):
            await backend.aclose()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(made, indent=1) + "\n", encoding="utf-8")
    return made


def report_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasoning.benchmarks.calibrate_thresholds report",
                                     description="a cascade run: who answered, accuracy, cost saved")
    parser.add_argument("run", help="the run folder (reasoning-bench run --out)")
    parser.add_argument("--calibration", help="the cascade calibration JSON (its always-largest cost)")
    args = parser.parse_args(argv)
    try:
        made = cascade_report(args.run, args.calibration)
    except (ReasoningError, ValueError, KeyError) as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 2
    saved = "n/a" if made["cost_saved"] is None else f"{made['cost_saved']:.1%}"
    print(f"{made['problems']} problems, accuracy {made['accuracy']:.3f}; answered: "
          + ", ".join(f"{m} {s:.0%}" for m, s in made["answered_share"].items())
          + f"; {made['cost']} saved vs always {made['models'][-1]}: {saved} ({made['estimate']})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        made = asyncio.run(_main(args))
    except (ReasoningError, ValueError) as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 2
    roles = "".join(f" --role {r}" for r in args.role)
    if made["kind"] == "cascade":
        notes = made["notes"]
        saved = "n/a" if notes["cost_saved"] is None else f"{notes['cost_saved']:.1%}"
        print(f"{notes['problems']} problems; thresholds {made['thresholds']} ({made['signal']}): accuracy "
              f"{notes['accuracy']:.3f} (target {notes['target']:.3f}{'' if notes['target_met'] else ', NOT met'}); "
              f"{notes['cost']} saved vs always {made['models'][-1]}: {saved}")
        print("  answered: " + ", ".join(f"{m} {s:.0%}" for m, s in notes["answered_share"].items()))
        print(f"calibration: {args.out}  (use: --strategy cascade --option models={','.join(made['models'])} "
              f"--option calibration={args.out}{roles})")
    else:
        cut = "none (never rejects)" if made["threshold"] is None else f"perplexity {made['threshold']:.3f}"
        print(f"{len(made['scores'])} draft steps scored on {made['notes']['problems']} problems; threshold at "
              f"alpha {made['alpha']}: {cut}")
        print(f"calibration: {args.out}  (use: --strategy atts --option calibration={args.out}{roles})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
