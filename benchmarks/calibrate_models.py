"""Calibrate the multi-model strategies on a held-out split: ``ensemble-vote``'s clusters and
``skill-route``'s skill profiles (plain JSON files the strategies load with ``calibration=`` /
``profiles=``).

    python -m reasoning.benchmarks.calibrate_models ensemble-vote --dataset gsm8k --offset 200 --limit 40 \\
        --backend local --role qwen15=local:qwen2.5-coder-1.5b-instruct --clusters 4 --out ensemble.json
    python -m reasoning.benchmarks.calibrate_models skill-route --dataset gsm8k --offset 200 --limit 40 \\
        --backend local --role qwen15=local:qwen2.5-coder-1.5b-instruct --out profiles.json

The models are roles, as for ``reasoning-bench run``: the generator is ``--backend`` and every
``--role NAME=SPEC`` adds one; ``--models`` picks and orders them (default: the generator, then
the roles as given). At solve time the same role names must be given the same models.

Use problems that are NOT in the evaluation split (``run --limit N`` evaluates the first N, so
calibrate from ``--offset N``). The machinery is ``benchmarks/calibrate.py``'s: items from
``load_items``, every problem solved by a calibration strategy (``asolve_many``, the run budget
and concurrency as there, problems cut short by ``--run-budget`` left out with
``cut_by_run_budget``), answers graded with ``run.grade_item``. Per problem, every model answers
``--samples`` times (its score there is the share correct) at ``--temperature``; for skill-route
the keyword model (``--keyword-role``, default the generator) also names the skills, and a
second pass runs the aggregator test: every model synthesises a mix of one right and up to two
wrong calibration responses (``skill_route.aggregator_test``, seeded by ``--seed``); the best
becomes the aggregator. Then ``ensemble_vote.calibrate`` (MiniLM embeddings, k-means with
``--clusters`` and ``--seed``) or ``skill_route.build_profiles`` turn the graded records into the
file. ``--records PATH`` also writes the graded records (JSON lines) for inspection.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from reasoning import Budget, Ledger, asolve_many
from reasoning.backends.base import Backend
from reasoning.context import Context, Problem, Sampling
from reasoning.errors import ConfigError, ReasoningError
from reasoning.prompts import load_prompt
from reasoning.strategies.embeddings import EmbedderName, minilm_folder
from reasoning.strategies.embeddings import embedder as make_embedder
from reasoning.strategies.ensemble_vote import EnsembleCalibration, calibrate
from reasoning.strategies.skill_route import (SkillProfiles, aggregation_messages, aggregator_test, build_profiles,
                                              parse_keywords)
from reasoning.strategy import Outcome, Strategy

from .calibrate import (add_run_arguments, add_split_arguments, check_model_split, cut_by_run_budget, solve_items,
                        split_and_roles, write_records)
from .datasets import Item


class _AnswerEach(Strategy):
    """Every model answers the problem (and the keyword role names its skills); not registered."""

    name = "calibrate-models"
    models: list[str]
    samples: int = 1
    keyword_role: str | None = None
    keyword_samples: int = 1
    keyword_max_tokens: int = 64
    max_tokens: int | None = None
    temperature: float | None = None

    async def run(self, ctx: Context) -> Outcome:
        async def answers(role: str) -> list[dict[str, Any]]:
            async with ctx.span(f"model:{role}") as sub:
                got = await sub.using(role).generate(n=self.samples, max_tokens=self.max_tokens,
                                                     temperature=self.temperature, name="answer")
            return [{"answer": s.answer, "text": s.text} for s in got]

        async def keywords() -> list[str] | None:
            if self.keyword_role is None:
                return None
            prompt = load_prompt("skill_keywords").render(problem=ctx.problem.text)
            said = await ctx.using(self.keyword_role).generate(
                prompt, n=self.keyword_samples, max_tokens=self.keyword_max_tokens, temperature=self.temperature,
                min_tokens=1, name="keywords")
            return parse_keywords([s.text for s in said])

        *drawn, words = await asyncio.gather(*(answers(m) for m in self.models), keywords())
        return Outcome(None, info={"models": dict(zip(self.models, drawn, strict=True)), "keywords": words})


class _Aggregate(Strategy):
    """Every model synthesises the responses in ``problem.metadata['responses']``; not registered."""

    name = "calibrate-aggregators"
    models: list[str]
    max_tokens: int | None = None
    temperature: float | None = None

    async def run(self, ctx: Context) -> Outcome:
        messages = aggregation_messages(ctx.problem.text, ctx.problem.metadata["responses"])
        drawn = await asyncio.gather(*(
            ctx.using(m).generate(messages, n=1, max_tokens=self.max_tokens, temperature=self.temperature,
                                  name=f"aggregate:{m}") for m in self.models))
        return Outcome(None, info={"answers": {m: (got[0].answer if got else None)
                                               for m, got in zip(self.models, drawn, strict=True)}})




async def model_records(
    items: Sequence[Item], roles: Mapping[str, Backend], models: Sequence[str], *, samples: int = 1,
    keyword_role: str | None = None, keyword_samples: int = 1, run_budget: Budget | None = None,
    concurrency: int = 4, sampling: Sampling | None = None,
) -> list[dict[str, Any]]:
    """Every model's graded answers on every item (and its keywords, with ``keyword_role``): one
    record per item not cut short by the run budget, ``correct[m]`` the share of m's samples right."""
    from .run import grade_item

    check_model_split(items, roles, models)
    if keyword_role is not None and keyword_role not in roles:
        raise ConfigError(f"--keyword-role {keyword_role!r} is not a role (given: {', '.join(roles)})")
    strategy = _AnswerEach(models=list(models), samples=samples, keyword_role=keyword_role,
                           keyword_samples=keyword_samples)
    results = await solve_items(items, strategy, roles, run_budget=run_budget, concurrency=concurrency,
                                sampling=sampling)
    records = []
    for item, result in zip(items, results, strict=True):
        assert result is not None
        drawn = result.info.get("models") or {}
        if cut_by_run_budget(result.trace.to_list()) or any(not drawn.get(m) for m in models):
            continue
        graded = {m: [bool((await grade_item(item, s["answer"], []))[0]) for s in drawn[m]] for m in models}
        records.append({
            "id": item.id, "problem": item.problem, "keywords": result.info.get("keywords"),
            "correct": {m: sum(g) / len(g) for m, g in graded.items()},
            "responses": {m: [{**s, "correct": ok} for s, ok in zip(drawn[m], graded[m], strict=True)] for m in models},
            "usage_by_role": {r: u.to_dict() for r, u in result.usage_by_role.items()},
        })
    if not records:
        raise ConfigError("no calibration problem was answered by every model (run budget too small?)")
    return records


def resolve_embedder(name: EmbedderName) -> Literal["minilm", "ngrams"]:
    """``auto`` as it resolves here (MiniLM when its package is installed), so the file names the real one."""
    if name == "auto":
        return "minilm" if minilm_folder() is not None else "ngrams"
    return name


def ensemble_from_records(records: Sequence[dict[str, Any]], models: Sequence[str], *, clusters: int = 4,
                          seed: int = 0, embedder: EmbedderName = "auto") -> EnsembleCalibration:
    """The ensemble-vote calibration of graded records (problems embedded, clustered, scored)."""
    name = resolve_embedder(embedder)
    vectors = make_embedder(name).embed([r["problem"] for r in records])
    table = [[r["correct"][m] for m in models] for r in records]
    return calibrate(vectors, table, models, clusters=clusters, seed=seed, embedder_name=name,
                     notes={"ids": [r["id"] for r in records]})


async def aggregator_accuracy(
    items: Sequence[Item], records: Sequence[dict[str, Any]], roles: Mapping[str, Backend], models: Sequence[str], *,
    seed: int = 0, run_budget: Budget | None = None, concurrency: int = 4, sampling: Sampling | None = None,
) -> dict[str, float]:
    """Each model's accuracy as the aggregator on the paper's aggregator test (empty when no
    record has a response to aggregate)."""
    from .run import grade_item

    by_id = {item.id: item for item in items}
    rng = random.Random(seed)
    tests: list[tuple[Item, list[str]]] = []
    for record in records:
        pool = [(s["text"], s["correct"]) for m in models for s in record["responses"][m]]
        mixed = aggregator_test(pool, rng)
        if mixed is not None:
            tests.append((by_id[record["id"]], mixed))
    if not tests:
        return {}
    results = await asolve_many(
        [Problem(item.problem, item.id, {"responses": mixed}) for item, mixed in tests], _Aggregate(models=list(models)),
        None, Budget(), backends=dict(roles), run_ledger=Ledger(run_budget, label="run:"), concurrency=concurrency,
        sampling=sampling or Sampling())
    right = dict.fromkeys(models, 0)
    for (item, _), result in zip(tests, results, strict=True):
        assert result is not None
        for m, answer in result.info["answers"].items():
            right[m] += bool((await grade_item(item, answer, []))[0])
    return {m: right[m] / len(tests) for m in models}


async def calibrate_skill_route(
    items: Sequence[Item], roles: Mapping[str, Backend], models: Sequence[str], *, keyword_role: str = "generator",
    keyword_samples: int = 1, samples: int = 1, seed: int = 0, embedder: EmbedderName = "auto",
    run_budget: Budget | None = None, concurrency: int = 4, sampling: Sampling | None = None,
    records_out: str | Path | None = None,
) -> SkillProfiles:
    records = await model_records(items, roles, models, samples=samples, keyword_role=keyword_role,
                                  keyword_samples=keyword_samples, run_budget=run_budget, concurrency=concurrency,
                                  sampling=sampling)
    write_records(records, records_out)
    judged = await aggregator_accuracy(items, records, roles, models, seed=seed, run_budget=run_budget,
                                       concurrency=concurrency, sampling=sampling)
    return build_profiles([r["keywords"] or [] for r in records], [r["correct"] for r in records], models,
                          keyword_model=keyword_role, aggregator_accuracy=judged,
                          embedder_name=resolve_embedder(embedder), notes={"ids": [r["id"] for r in records]})


async def calibrate_ensemble(
    items: Sequence[Item], roles: Mapping[str, Backend], models: Sequence[str], *, clusters: int = 4, seed: int = 0,
    samples: int = 1, embedder: EmbedderName = "auto", run_budget: Budget | None = None, concurrency: int = 4,
    sampling: Sampling | None = None, records_out: str | Path | None = None,
) -> EnsembleCalibration:
    records = await model_records(items, roles, models, samples=samples, run_budget=run_budget,
                                  concurrency=concurrency, sampling=sampling)
    write_records(records, records_out)
    return ensemble_from_records(records, models, clusters=clusters, seed=seed, embedder=embedder)




# -- command line -------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasoning.benchmarks.calibrate_models",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("method", choices=("ensemble-vote", "skill-route"))
    add_split_arguments(parser, role_help="another model under a role name, repeatable")
    parser.add_argument("--models", help="comma-separated roles to calibrate (default: generator, then every --role)")
    parser.add_argument("--api-base")
    parser.add_argument("--api-key")
    parser.add_argument("--samples", type=int, default=1, help="answers per model and problem (score: share right)")
    parser.add_argument("--clusters", type=int, default=4, help="ensemble-vote: k-means clusters (the paper: 64)")
    parser.add_argument("--seed", type=int, default=0, help="k-means seeding / the aggregator test's draws")
    parser.add_argument("--embedder", choices=("auto", "minilm", "ngrams"), default="auto")
    parser.add_argument("--keyword-role", default="generator", help="skill-route: the role that names skills")
    parser.add_argument("--keyword-samples", type=int, default=1, help="skill-route: keyword samples (the paper: 5)")
    add_run_arguments(parser, records_help="also write the graded records here (JSON lines)")
    return parser


async def _main(args: argparse.Namespace) -> EnsembleCalibration | SkillProfiles:
    items, roles = split_and_roles(args, at_least_one=("samples", "keyword_samples", "concurrency", "clusters"))
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(roles)
    common = dict(samples=args.samples, seed=args.seed, embedder=args.embedder, run_budget=Budget.parse(args.run_budget),
                  concurrency=args.concurrency, records_out=args.records,
                  sampling=Sampling(max_tokens=args.max_tokens, temperature=args.temperature))
    try:
        if args.method == "ensemble-vote":
            made: EnsembleCalibration | SkillProfiles = await calibrate_ensemble(
                items, roles, models, clusters=args.clusters, **common)
        else:
            made = await calibrate_skill_route(items, roles, models, keyword_role=args.keyword_role,
                                               keyword_samples=args.keyword_samples, **common)
    finally:
        for backend in dict.fromkeys(roles.values()):
            await backend.aclose()
    made.save(args.out)
    return made


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        made = asyncio.run(_main(args))
    except (ReasoningError, ValueError) as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 2
    if isinstance(made, EnsembleCalibration):
        print(f"{int(made.seen.sum())} problems in {len(made.seen)} clusters ({made.embedder}); accuracy per model: "
              + ", ".join(f"{m} {a:.3f}" for m, a in zip(made.models, made.overall, strict=True)))
        for c in range(len(made.seen)):
            best = [made.models[m] for m in made.ranked(c)]
            print(f"  cluster {c}: {int(made.seen[c]):3d} problems, best first: {', '.join(best)}")
        print(f"calibration: {args.out}  (use: --strategy ensemble-vote --option calibration={args.out}"
              + "".join(f" --role {r}" for r in args.role) + ")")
    else:
        print(f"{made.notes['problems']} problems; accuracy: " + ", ".join(f"{m} {a:.3f}" for m, a in made.accuracy.items())
              + f"; aggregator: {made.aggregator} ({made.notes['aggregator_by']}); {len(made.vocabulary)} keywords")
        print(f"profiles: {args.out}  (use: --strategy skill-route --option profiles={args.out}"
              + "".join(f" --role {r}" for r in args.role) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
