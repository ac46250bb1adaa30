"""What the tree searches (beam search, DVTS, REBASE, ETS) share: the search tree as records,
one expansion of a depth (next steps, then PRM scores), the options every step search takes,
and the final answer (a PRM-weighted vote over the finished paths, search-and-learn style).

A ``Tree`` lives for one ``run`` (never on the strategy). Node 0 is the root (the empty
prefix); every other node is one sampled step. ``Tree.records()`` is the tree as JSON-able
dicts for ``Outcome.info["tree"]``: node id, parent, depth, status, PRM score, extracted answer
and the trace node of the call that drew it, never the prefix's token ids (the trace refers to
prefixes in the same way). Statuses: ``root``, ``open`` (drawn, not yet chosen or dropped),
``kept`` (chosen to expand), ``pruned``, ``complete`` (the solution ended) and ``final`` (cut at
``max_steps``): both of the last two are finished paths, which vote.

Budgets: each expansion is one ``ctx.extend`` call per parent, reserved in the ledger before it
starts (shrunk to fewer children, or refused). A search stops starting expansions once the
ledger has refused one; ``finish`` then answers from the finished paths, else from the best
partial one, with ``info["stopped_by"]`` naming the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field

from reasoning.context import Context, Prefix, Sample
from reasoning.strategy import Outcome, ProcessVerifier, Strategy, Temperature

from .steps import StepConfig, next_steps, scored_prefix
from .voting import best_index, key_of, majority

FINISHED = ("complete", "final")


def _default_prm() -> ProcessVerifier:
    from reasoning.verifiers.process import LLMProcessReward  # the model itself judges each step

    return LLMProcessReward()


# Options every step-wise search declares (typed once, like MaxTokens).
Prm = Annotated[ProcessVerifier, Field(default_factory=_default_prm,
                                       description="process reward scoring partial solutions (default: LLM PRM)")]
MaxSteps = Annotated[int, Field(ge=1, description="steps at most per path (the last one runs to the end)")]
MaxStepTokens = Annotated[int, Field(ge=1, description="max new tokens per step")]
Delimiter = Annotated[str, Field(min_length=1, description="text that ends a step")]
Lookahead = Annotated[int, Field(ge=0, description="greedy steps rolled out before scoring a step (scoring only)")]


class StepSearch(Strategy):
    """Base of the step-wise searches (beam search, DVTS, REBASE, ETS): the options they all
    take, declared once. Each subclass adds its own and implements ``run``."""

    prm: Prm
    max_steps: MaxSteps = 20
    max_step_tokens: MaxStepTokens = 256
    delimiter: Delimiter = "\n\n"
    lookahead: Lookahead = 0
    temperature: Temperature = None


def step_config(strategy: Any) -> StepConfig:
    """The StepConfig of a strategy declaring the options above (and ``temperature``)."""
    return StepConfig(delimiter=strategy.delimiter, max_step_tokens=strategy.max_step_tokens,
                      max_steps=strategy.max_steps, lookahead=strategy.lookahead, temperature=strategy.temperature)


@dataclass(slots=True)
class Node:
    id: int
    parent: int | None
    prefix: Prefix
    sample: Sample | None = None
    score: float | None = None
    status: str = "open"
    info: dict[str, Any] = field(default_factory=dict)  # a search's own facts (subtree, children, ...)

    @property
    def depth(self) -> int:
        return self.prefix.depth

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def record(self) -> dict[str, Any]:
        step = self.prefix.steps[-1] if self.prefix.steps else ""
        return {
            "id": self.id, "parent": self.parent, "depth": self.depth, "status": self.status, "score": self.score,
            "answer": self.sample.answer if self.sample else None, "trace": self.prefix.trace_id,
            "step": step if len(step) <= 120 else step[:117] + "...", **self.info,
        }


class Tree:
    def __init__(self, config: StepConfig) -> None:
        self.config = config
        self.nodes = [Node(0, None, Prefix(), status="root")]

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def add(self, parent: Node, sample: Sample) -> Node:
        assert sample.prefix is not None
        node = Node(len(self.nodes), parent.id, sample.prefix, sample)
        self.nodes.append(node)
        return node

    def settle(self, nodes: Sequence[Node]) -> tuple[list[Node], list[Node]]:
        """Mark finished nodes (the solution ended, or ``max_steps`` reached); return them and
        the unfinished rest, in order."""
        done, active = [], []
        for node in nodes:
            if node.prefix.complete or node.depth >= self.config.max_steps:
                node.status = "complete" if node.prefix.complete else "final"
                done.append(node)
            else:
                active.append(node)
        return done, active

    def finished(self) -> list[Node]:
        return [n for n in self.nodes if n.finished]

    def best_partial(self) -> Node | None:
        """The unfinished node with the best PRM score (ties: the deeper, then the earlier)."""
        partial = [n for n in self.nodes[1:] if not n.finished and n.score is not None]
        if not partial:
            return None
        return partial[best_index([n.score for n in partial], [n.depth for n in partial])]  # type: ignore[misc]

    def records(self) -> list[dict[str, Any]]:
        return [n.record() for n in self.nodes]


def note(ctx: Context, **info: Any) -> None:
    """Add facts to the trace span ``ctx`` runs in (e.g. which nodes a depth kept)."""
    if ctx.parent is not None:
        ctx.trace.nodes[ctx.parent].info.update(info)


async def score(ctx: Context, prm: ProcessVerifier, nodes: Sequence[Node]) -> None:
    """PRM scores of ``nodes`` (their look-ahead rollouts when there are any), on the verifier role."""
    if not nodes:
        return
    async with ctx.span("prm", verifier=prm.name, nodes=[n.id for n in nodes]) as sub:
        prefixes = [scored_prefix(n.sample) for n in nodes]  # type: ignore[arg-type]
        scores = await prm.score_steps(sub.using("verifier"), prefixes)
    for node, value in zip(nodes, scores, strict=True):
        node.score = node.sample.score = float(value)  # type: ignore[union-attr]


async def expand(ctx: Context, tree: Tree, parents: Sequence[Node], counts: int | Sequence[int],
                 prm: ProcessVerifier) -> list[list[Node]]:
    """One depth of a search: ``counts`` next steps of each parent (one batched call each,
    concurrently), every child scored by the PRM; the children of each parent, in order (an
    expansion the budget refused has none). Call it inside the depth's span."""
    drawn = await next_steps(ctx, [p.prefix for p in parents], counts, tree.config)
    children = [[tree.add(parent, sample) for sample in samples]
                for parent, samples in zip(parents, drawn, strict=True)]
    flat = [child for group in children for child in group]
    await score(ctx, prm, flat)
    note(ctx, children=[c.id for c in flat])
    return children


def finish(ctx: Context, tree: Tree, ended_by: str, **info: Any) -> Outcome:
    """The answer of a search: the PRM-weighted vote of the finished paths (its text: the
    best-scored path with the winning answer), else the best partial path."""
    paths = tree.finished()
    samples = [n.sample for n in paths]
    vote = majority(samples, [n.score or 0.0 for n in paths])  # type: ignore[arg-type]
    if vote.sample is not None:
        winners = [n for n in paths if key_of(n.sample) == key_of(vote.sample)]  # type: ignore[arg-type]
        best: Node | None = winners[best_index([n.score or 0.0 for n in winners])]
    elif paths:
        best = paths[best_index([n.score or 0.0 for n in paths])]
    else:
        best = tree.best_partial()
    answer = vote.answer if vote.sample is not None else (best.sample.answer if best and best.sample else None)
    stopped_by = ctx.ledger.stopped_by if ended_by == "budget" else None
    return Outcome(answer, best.prefix.text if best else None, samples, {  # type: ignore[arg-type]
        "ended_by": ended_by, "stopped_by": stopped_by, "chosen": best.id if best else None,
        "partial": best is not None and not best.finished, "paths": len(paths),
        "votes": vote.tally, "share": vote.share, "tree": tree.records(), **info,
    })


def assign_children(active: list[Node], counts: list[int]) -> tuple[list[Node], list[int]]:
    """Record how many children each active node gets (none: pruned); return the nodes that get
    some and their counts, the next depth's frontier (REBASE and ETS)."""
    frontier = []
    for node, count in zip(active, counts, strict=True):
        node.info["children"] = count
        node.status = "kept" if count else "pruned"
        if count:
            frontier.append(node)
    return frontier, [c for c in counts if c]


def width_search_ended(ctx: Context, width: int, frontier: list[Node]) -> str | None:
    """Why a width-budget search (REBASE, ETS) stops after a depth, or None to go on."""
    if ctx.ledger.exhausted:
        return "budget"
    if width <= 0:
        return "paths"
    if not frontier:
        return "frontier"
    return None

