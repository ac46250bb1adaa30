"""Learn a compute-optimal routing policy from a calibration split (``strategies.compute_optimal``).

    python -m reasoning.benchmarks.calibrate --dataset gsm8k --offset 200 --limit 40 --backend local \\
        --token-budget 4000 --out policy.json

Use problems that are NOT in the evaluation split: ``reasoning-bench run --limit N`` evaluates
the first N problems, so calibrate from ``--offset N`` (or a different dataset).

For every calibration problem: ``probes`` probe samples (their agreement puts the problem in a
bin), then every candidate configuration, each in its own budget slice, run as the
compute-optimal strategy would run it after these probes (``run_route``: probe votes reused
for plain voting). Each candidate is graded (``benchmarks.run.grade_item``) and its cost is
the problem's probe tokens + the candidate's own tokens (prompt + completion), i.e. what
compute-optimal would spend on that problem if it routed it there.

Budgets: ``--budget`` is the per-problem budget compute-optimal will get at evaluation; each
candidate runs in a slice of it less what the probes used, so an over-large candidate is
shrunk here exactly as it would be there. ``--run-budget`` caps the whole calibration;
problems it cut short (a call shrunk or refused by ``run:...``) are left out of the selection.

Selection rule (exact). Bins are agreement thresholds t_1 > ... > t_m > 0 plus 0; a problem
belongs to the first bin whose threshold its agreement reaches. The thresholds are given
(``--thresholds``, default 0.75, 0.5) or, with ``--quantile-bins K``, taken from the
calibration problems' own agreements: edge j (j = 1..K-1) is the agreement at position
floor(j·m/K) of the m agreements sorted ascending, so each bin holds about m/K problems
(equal edges merge, and an edge at 0 is the last bin's: fewer bins when agreements tie; 4
probes give at most 5 distinct agreements, so use more probes for 5 real bins). For bin b, w_b is its share
of the calibration problems; for candidate c, acc(b, c) and tok(b, c) are the mean
correctness and mean tokens over the problems in b. The policy assigns one candidate c_b to
every bin so as to

    maximise   sum_b w_b · acc(b, c_b)      (expected accuracy per problem)
    subject to sum_b w_b · tok(b, c_b) <= B  (B = --token-budget, average tokens per problem)

by exhaustive search over all assignments; ties go to the fewer expected tokens, then to the
candidates listed first. Without B, each bin simply takes its most accurate candidate (ties:
fewer tokens). If even the cheapest assignment exceeds B, each bin takes its cheapest
candidate and ``notes.budget_met`` is false. (The ratio accuracy/token is not maximised
directly: it always favours the cheapest candidate, i.e. stopping at the probes.) A bin with
no calibration problem takes the choice of the nearest harder bin (lower agreement) that has
problems, else of the nearest easier one. Per-bin statistics go to the policy's ``notes``.

Snell et al.'s set-up (2024, "Scaling LLM Test-Time Compute Optimally ..."): at a fixed
generation budget N, pick per difficulty bin (5 quantile bins) the best test-time method:
search against a PRM (beam search) vs best-of-N weighted vs sequential revisions. Here
``--candidates snell:N --quantile-bins 5 --probes 16`` (no ``--token-budget``: every
candidate has the same budget N, so each bin takes its most accurate one) learns, per bin,
among self-consistency n=N, best-of-N weighted (``best-of-n`` n=N with the LLM PRM,
``aggregate=sum``: scores summed per answer, Snell's "best-of-N weighted") and beam search
with the LLM PRM (``beam-search`` n=N, width M = 4 and M = round(sqrt N), Snell's two beam
widths; N/M beams kept). What still differs from the paper: no revision model (Snell
fine-tunes one), no lookahead search in the defaults (``beam-search`` has ``lookahead``; it
costs more than N), difficulty is the probes' agreement (charged to every problem) where
Snell bins by oracle pass@1 over 2,048 samples or by a verifier's predicted difficulty (not
charged), and the PRM is the generator prompted as a judge, not a trained PRM. One run is
one N; θ*(N) across budgets is one calibration per N.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr

from reasoning import Budget, Ledger, Usage, asolve_many
from reasoning.backends.base import Backend
from reasoning.context import Context, Problem, Sampling
from reasoning.errors import ConfigError, ReasoningError
from reasoning.strategy import Outcome, Strategy
from reasoning.strategies.compute_optimal import Policy, Route, agreement, build_route, check_route, probe, run_route
from reasoning.strategies.voting import majority

from .datasets import Item, load_items

DEFAULT_THRESHOLDS = (0.75, 0.5)
DEFAULT_CANDIDATES: tuple[dict[str, Any], ...] = (
    {"strategy": "stop", "options": {}},
    {"strategy": "self-consistency", "options": {"n": 4}},
    {"strategy": "self-consistency", "options": {"n": 8}},
    {"strategy": "self-consistency", "options": {"n": 16}},
)
MAX_ASSIGNMENTS = 1_000_000
SNELL_BINS = 5  # Snell et al. bin difficulty into 5 quantiles


def snell_candidates(n: int) -> list[dict[str, Any]]:
    """Snell et al.'s methods at one generation budget ``n`` (see the module docstring):
    self-consistency, best-of-N weighted with the PRM, beam search with the PRM at widths 4
    and round(sqrt n) (each at most n)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"snell:N needs a generation budget N >= 1, got {n!r}")
    candidates: list[dict[str, Any]] = [
        {"strategy": "self-consistency", "options": {"n": n}},
        {"strategy": "best-of-n", "options": {"n": n, "verifier": "prm", "aggregate": "sum"}},
    ]
    for width in dict.fromkeys((4, max(1, round(n**0.5)))):
        if width <= n:
            candidates.append({"strategy": "beam-search", "options": {"n": n, "width": width}})
    return candidates


def quantile_thresholds(agreements: Sequence[float], bins: int) -> list[float]:
    """Bin edges (highest first, then 0) putting about len/bins of ``agreements`` in each bin."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"quantile bins must be an integer >= 1, got {bins!r}")
    ordered = sorted(agreements)
    if not ordered:
        raise ConfigError("quantile bins need at least one calibration problem")
    edges = {ordered[j * len(ordered) // bins] for j in range(1, bins)}
    return [*sorted((e for e in edges if e > 0), reverse=True), 0.0]


class _Calibration(Strategy):
    """Probes, then every candidate on the same problem, each in its own slice (not registered)."""

    name = "calibration"
    probes: int
    candidates: list[Route]
    budget: Budget
    sampling: dict[str, Any]
    _strategies: list[Strategy | None] = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        self._strategies = [build_route(c, **self.sampling, where=f"candidate {c.label}") for c in self.candidates]

    async def run(self, ctx: Context) -> Outcome:
        probes = await probe(ctx, self.probes, **self.sampling)
        probe_usage = ctx.ledger.used.minus(Usage())  # a copy
        probe_usage.seconds = ctx.ledger.elapsed()
        if not probes:
            return Outcome(None, info={"agreement": None, "candidates": {}})
        share = agreement(probes)
        results: dict[str, dict[str, Any]] = {}
        for route, strategy in zip(self.candidates, self._strategies, strict=True):
            before = ctx.ledger.used.tokens
            async with ctx.span(f"candidate {route.label}") as sub:
                outcome = await run_route(sub.slice(self._slice(probe_usage), name="budget"), route, strategy, probes)
            spent = probe_usage.tokens + ctx.ledger.used.tokens - before
            results[route.label] = {"answer": outcome.answer, "tokens": spent}
        vote = majority(probes)
        info = {"agreement": share, "probe_tokens": probe_usage.tokens, "candidates": results}
        return Outcome(vote.answer, None, [], info)

    def _slice(self, used: Usage) -> Budget:
        """The per-problem budget less what the probes used: each candidate gets what it
        would have after these probes at evaluation (seconds counted from its own start)."""
        limits: dict[str, float] = {}
        for limit, cap in self.budget.limits().items():
            left = max(0.0, cap - used.value(limit))
            if limit == "seconds":
                left = max(left, 1e-3)  # a Budget's seconds must be > 0; this one refuses at once
            limits[limit] = int(left) if limit in ("tokens", "completion_tokens", "calls") else left
        return Budget(**limits)


def make_candidates(candidates: Sequence[dict[str, Any] | Route]) -> list[Route]:
    """Validated candidate routes (a candidate is ``{"strategy": ..., "options": {...}}``)."""
    routes = [c if isinstance(c, Route) else check_route(c, f"candidate {i}") for i, c in enumerate(candidates)]
    if not routes:
        raise ConfigError("no candidate configurations")
    labels = [r.label for r in routes]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"candidate configurations repeat: {labels}")
    return routes


def check_thresholds(thresholds: Sequence[float]) -> list[float]:
    edges = sorted({float(t) for t in thresholds if t != 0}, reverse=True)
    if any(not 0 < t <= 1 for t in edges):
        raise ConfigError(f"thresholds must be in (0, 1], got {list(thresholds)}")
    return [*edges, 0.0]


async def calibration_records(
    items: Sequence[Item],
    backend: Backend,
    *,
    probes: int = 4,
    candidates: Sequence[dict[str, Any] | Route] = DEFAULT_CANDIDATES,
    budget: Budget | None = None,
    run_budget: Budget | None = None,
    concurrency: int = 4,
    sampling: Sampling | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> list[dict[str, Any]]:
    """Run probes + every candidate on every item and grade them: one record per item."""
    from .run import grade_item

    if any(item.kind == "code" for item in items):
        raise ConfigError("calibration supports answer-graded items (math, expression), not code tasks")
    routes = make_candidates(candidates)
    strategy = _Calibration(probes, routes, budget or Budget(), {"max_tokens": max_tokens, "temperature": temperature})
    run_ledger = Ledger(run_budget, label="run:")
    await backend.load()
    results = await asolve_many(
        [Problem(item.problem, item.id, item.metadata) for item in items],
        strategy, backend, Budget(), run_ledger=run_ledger, concurrency=concurrency,
        sampling=sampling or Sampling(),
    )
    records = []
    for item, result in zip(items, results, strict=True):
        assert result is not None
        found = result.info.get("candidates", {})
        ran = [r for r in routes if r.label in found]
        graded = await asyncio.gather(*(grade_item(item, found[r.label]["answer"], []) for r in ran))
        candidates_out = {}
        for route, (correct, _) in zip(ran, graded, strict=True):
            candidates_out[route.label] = {**found[route.label], "correct": bool(correct)}
        records.append({
            "id": item.id,
            "agreement": result.info.get("agreement"),
            "candidates": candidates_out,
            "stopped_by": result.stopped_by,
            "cut_by_run_budget": cut_by_run_budget(result.trace.to_list()),
            "tokens": result.usage.tokens,
        })
    return records


def cut_by_run_budget(trace: list[dict[str, Any]]) -> bool:
    """Whether the run budget (not the per-problem one) shrank or refused a call of this problem."""
    for node in trace:
        if node["kind"] != "generate":
            continue
        shrunk = (node.get("info") or {}).get("shrunk", {}).get("by") or ""
        if shrunk.startswith("run:") or "run:" in (node.get("error") or ""):
            return True
    return False


def select_policy(
    records: Sequence[dict[str, Any]],
    candidates: Sequence[dict[str, Any] | Route] = DEFAULT_CANDIDATES,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    token_budget: float | None = None,
    probes: int = 4,
    quantile_bins: int | None = None,
) -> Policy:
    """The policy the module docstring's rule picks from graded calibration records
    (``quantile_bins``: bin edges from the records' agreement quantiles, not ``thresholds``)."""
    routes = make_candidates(candidates)
    edges = check_thresholds(thresholds)
    usable = [r for r in records if r.get("agreement") is not None and not r.get("cut_by_run_budget")
              and all(route.label in r["candidates"] for route in routes)]
    if not usable:
        raise ConfigError("no calibration problem finished with every candidate (budget too small?)")
    if quantile_bins is not None:
        edges = quantile_thresholds([r["agreement"] for r in usable], quantile_bins)
    members: list[list[dict[str, Any]]] = [[] for _ in edges]
    for record in usable:
        members[next(i for i, e in enumerate(edges) if record["agreement"] >= e - 1e-12)].append(record)
    stats = []  # per bin: per candidate (accuracy, tokens)
    for group in members:
        stats.append([
            (sum(r["candidates"][c.label]["correct"] for r in group) / len(group),
             sum(r["candidates"][c.label]["tokens"] for r in group) / len(group)) if group else (0.0, 0.0)
            for c in routes
        ])
    weights = [len(group) / len(usable) for group in members]
    filled = [i for i, group in enumerate(members) if group]
    space = len(routes) ** len(filled)
    if space > MAX_ASSIGNMENTS:
        raise ConfigError(f"{len(routes)} candidates x {len(filled)} bins is too many assignments to search ({space})")

    def totals(choice: tuple[int, ...]) -> tuple[float, float]:
        accuracy = sum(weights[b] * stats[b][c][0] for b, c in zip(filled, choice))
        tokens = sum(weights[b] * stats[b][c][1] for b, c in zip(filled, choice))
        return accuracy, tokens

    best: tuple[int, ...] | None = None
    best_key: tuple[float, float, tuple[int, ...]] | None = None
    for choice in itertools.product(range(len(routes)), repeat=len(filled)):
        accuracy, tokens = totals(choice)
        if token_budget is not None and tokens > token_budget + 1e-9:
            continue
        key = (-accuracy, tokens, choice)
        if best_key is None or key < best_key:
            best, best_key = choice, key
    budget_met = best is not None
    if best is None:  # nothing fits: the cheapest candidate in every bin
        best = tuple(min(range(len(routes)), key=lambda c: (stats[b][c][1], -stats[b][c][0], c)) for b in filled)
    chosen: dict[int, int] = dict(zip(filled, best))
    for b in range(len(edges)):
        if b not in chosen:
            harder = [i for i in filled if i > b]
            easier = [i for i in filled if i < b]
            chosen[b] = chosen[harder[0]] if harder else chosen[easier[-1]]
    accuracy, tokens = totals(best)
    notes = {
        "rule": "max expected accuracy s.t. expected tokens per problem <= token_budget "
                "(exhaustive; see benchmarks/calibrate.py)",
        "token_budget": token_budget,
        "budget_met": budget_met,
        "difficulty": "probe agreement",
        "bin_edges": f"quantiles of {quantile_bins} ({len(edges)} distinct bins)" if quantile_bins else "given",
        "problems": len(usable),
        "left_out": len(records) - len(usable),
        "expected_accuracy": accuracy,
        "expected_tokens": tokens,
        "bins": [
            {
                "min_agreement": edges[b],
                "problems": len(members[b]),
                "choice": routes[chosen[b]].label,
                "candidates": {c.label: {"accuracy": stats[b][i][0], "tokens": stats[b][i][1]}
                               for i, c in enumerate(routes)} if members[b] else {},
            }
            for b in range(len(edges))
        ],
    }
    picks = [routes[chosen[b]] for b in range(len(edges))]
    bins = tuple(Route(edge, pick.strategy, dict(pick.options)) for edge, pick in zip(edges, picks, strict=True))
    return Policy.from_dict(Policy(bins, probes, notes).to_dict())


async def learn_policy(
    items: Sequence[Item],
    backend: Backend,
    *,
    probes: int = 4,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    candidates: Sequence[dict[str, Any] | Route] = DEFAULT_CANDIDATES,
    token_budget: float | None = None,
    budget: Budget | None = None,
    run_budget: Budget | None = None,
    concurrency: int = 4,
    sampling: Sampling | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    out: str | Path | None = None,
    quantile_bins: int | None = None,
) -> Policy:
    """Calibrate on ``items`` and return (and, with ``out``, write) the learned policy."""
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ConfigError(f"probes must be an integer >= 1, got {probes!r}")
    if token_budget is not None and token_budget <= 0:
        raise ConfigError(f"token_budget must be > 0, got {token_budget}")
    check_thresholds(thresholds)
    if not items:
        raise ConfigError("no calibration problems")
    records = await calibration_records(
        items, backend, probes=probes, candidates=candidates, budget=budget, run_budget=run_budget,
        concurrency=concurrency, sampling=sampling, max_tokens=max_tokens, temperature=temperature,
    )
    policy = select_policy(records, candidates, thresholds=thresholds, token_budget=token_budget, probes=probes,
                           quantile_bins=quantile_bins)
    if out is not None:
        policy.save(out)
    return policy


# -- command line -------------------------------------------------------------------
def write_records(records: Sequence[dict[str, Any]], path: str | Path | None) -> None:
    """The calibration's graded records as JSON lines (nothing when ``path`` is None)."""
    if path is None:
        return
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def check_model_split(items: Sequence[Item], roles: Mapping[str, Backend], models: Sequence[str]) -> None:
    """A calibration split of answer-graded problems and distinct model roles that all exist."""
    if not items:
        raise ConfigError("no calibration problems")
    if any(item.kind == "code" for item in items):
        raise ConfigError("calibration supports answer-graded items (math, expression), not code tasks")
    if not models or len(set(models)) != len(models):
        raise ConfigError(f"--models must name distinct roles, got {list(models)}")
    missing = [m for m in models if m not in roles]
    if missing:
        raise ConfigError(f"--models {missing} are not roles: the generator is --backend, others --role NAME=SPEC "
                          f"(given: {', '.join(roles)})")


def add_split_arguments(parser: argparse.ArgumentParser, *, role_help: str) -> None:
    """The held-out split and the models: what every calibration command takes first."""
    parser.add_argument("--dataset", required=True, help="builtin name or PATH.jsonl (not code tasks)")
    parser.add_argument("--offset", type=int, default=0, help="skip the first K problems (the evaluation split)")
    parser.add_argument("--limit", type=int, required=True, help="calibration problems after the offset")
    parser.add_argument("--backend", default="local", help="the generator's model, as for reasoning-bench run")
    parser.add_argument("--role", action="append", default=[], metavar="NAME=SPEC[@API_BASE]", help=role_help)


def split_and_roles(args: argparse.Namespace, *, at_least_one: Sequence[str]) -> tuple[list[Item], dict[str, Backend]]:
    """What ``add_split_arguments`` (with ``--api-base``/``--api-key``) asked for, checked and opened:
    the calibration items and a backend per role, the generator being ``--backend``. The integer
    options ``at_least_one`` must be >= 1; they are checked before anything is loaded."""
    from reasoning.backends import from_spec

    from .cli import _parse_roles

    if args.offset < 0 or args.limit < 1:
        raise ConfigError("--offset must be >= 0 and --limit >= 1")
    for flag in at_least_one:
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1")
    specs = _parse_roles(args.role)
    items = load_items(args.dataset, args.offset + args.limit)[args.offset:]
    if not items:
        raise ConfigError(f"{args.dataset} has no problems after offset {args.offset}")
    roles = {"generator": from_spec(args.backend, api_base=args.api_base, api_key=args.api_key)}
    roles.update({name: from_spec(spec, api_base=base or args.api_base, api_key=args.api_key)
                  for name, (spec, base) in specs.items()})
    return items, roles


async def solve_items(items: Sequence[Item], strategy: Strategy, roles: Mapping[str, Backend], *,
                      run_budget: Budget | None, concurrency: int, sampling: Sampling | None) -> list[Any]:
    """Every item solved by a calibration strategy over the role backends (each loaded first), the
    whole calibration under ``run_budget``."""
    for backend in dict.fromkeys(roles.values()):
        await backend.load()
    return await asolve_many([Problem(item.problem, item.id, item.metadata) for item in items], strategy, None,
                             Budget(), backends=dict(roles), run_ledger=Ledger(run_budget, label="run:"),
                             concurrency=concurrency, sampling=sampling or Sampling())


def add_run_arguments(parser: argparse.ArgumentParser, *, records_help: str) -> None:
    """How the calibration runs and where it writes: what every calibration command takes last."""
    parser.add_argument("--run-budget", default="", help="cap for the whole calibration, e.g. tokens=2000000")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--records", help=records_help)
    parser.add_argument("--out", required=True, help="where to write the calibration JSON")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasoning.benchmarks.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="builtin name or PATH.jsonl (not code tasks)")
    parser.add_argument("--offset", type=int, default=0, help="skip the first K problems (the evaluation split)")
    parser.add_argument("--limit", type=int, required=True, help="calibration problems after the offset")
    parser.add_argument("--backend", default="local",
                        help="local | litellm:MODEL | openai:MODEL | vllm | scripted[:A,B]")
    parser.add_argument("--api-base")
    parser.add_argument("--api-key")
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--thresholds", default=",".join(map(str, DEFAULT_THRESHOLDS)),
                        help="agreement bin edges above 0, comma-separated (default: %(default)s)")
    parser.add_argument("--quantile-bins", type=int, help="K bins at the calibration problems' agreement quantiles "
                        "instead of --thresholds (Snell et al.: 5)")
    parser.add_argument("--candidates", help="JSON list (or a path to one) of {strategy, options}, or snell:N "
                        "(self-consistency, best-of-N weighted and beam search, all at N; see the docstring); "
                        "default: stop, self-consistency n=4, 8, 16")
    parser.add_argument("--token-budget", type=float, help="average tokens per problem the policy may spend")
    parser.add_argument("--budget", default="", help="per-problem budget at evaluation, e.g. tokens=20000")
    parser.add_argument("--run-budget", default="", help="cap for the whole calibration")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--out", required=True, help="where to write the policy JSON")
    return parser


def _candidates_arg(raw: str | None) -> Sequence[dict[str, Any]]:
    if raw is None:
        return DEFAULT_CANDIDATES
    if raw.startswith("snell:"):
        try:
            return snell_candidates(int(raw.removeprefix("snell:")))
        except ValueError:
            raise ConfigError(f"--candidates {raw}: expected snell:N with an integer N") from None
    text = Path(raw).read_text(encoding="utf-8") if Path(raw).is_file() else raw
    try:
        data = json.loads(text)
    except json.JSONDecodeError as bad:
        raise ConfigError(f"--candidates is neither a JSON list nor a file ({bad.msg})") from None
    if not isinstance(data, list):
        raise ConfigError("--candidates must be a JSON list of {strategy, options}")
    return data


async def _main(args: argparse.Namespace) -> Policy:
    from reasoning.backends import from_spec

    if args.offset < 0 or args.limit < 1:
        raise ConfigError("--offset must be >= 0 and --limit >= 1")
    thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
    candidates = _candidates_arg(args.candidates)
    items = load_items(args.dataset, args.offset + args.limit)[args.offset :]
    if not items:
        raise ConfigError(f"{args.dataset} has no problems after offset {args.offset}")
    backend = from_spec(args.backend, api_base=args.api_base, api_key=args.api_key)
    try:
        return await learn_policy(
            items, backend, probes=args.probes, thresholds=thresholds, candidates=candidates,
            token_budget=args.token_budget, budget=Budget.parse(args.budget), run_budget=Budget.parse(args.run_budget),
            concurrency=args.concurrency, sampling=Sampling(max_tokens=args.max_tokens, temperature=args.temperature),
            out=args.out, quantile_bins=args.quantile_bins,
        )
    finally:
        await backend.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        policy = asyncio.run(_main(args))
    except (ReasoningError, ValueError) as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 2
    notes = policy.notes
    print(f"calibrated on {notes['problems']} problems ({args.dataset}, offset {args.offset}); "
          f"expected accuracy {notes['expected_accuracy']:.3f} at {notes['expected_tokens']:.0f} tokens/problem")
    for entry in notes["bins"]:
        print(f"  agreement >= {entry['min_agreement']:.2f}: {entry['problems']:3d} problems -> {entry['choice']}")
    print(f"policy: {args.out}  (use: --strategy compute-optimal --option policy={args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
