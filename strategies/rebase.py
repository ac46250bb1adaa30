"""REBASE: reward-balanced search (Wu et al. 2024, "Inference Scaling Laws").

A width budget of ``n`` paths. The root gets ``n`` first steps; the PRM scores them. At every
depth, finished children (the solution ended, or ``max_steps`` reached) are collected as paths
and the width left is ``n`` minus the paths collected; each unfinished node of the depth gets
children in proportion to ``softmax(score / balance_temperature)`` over those nodes, rounded so
the counts add up to the width left (largest remainders; ties to the earlier node). A node
given none is pruned. Ends when ``n`` paths are finished, at ``max_steps``, or when the budget
refuses an expansion; the answer is the PRM-weighted vote of the paths (``strategies/tree.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field

from reasoning.context import Context
from reasoning.strategy import Outcome

from .registry import register
from .tree import StepSearch, Tree, assign_children, expand, finish, note, step_config, width_search_ended


def allocate(scores: Sequence[float], width: int, temperature: float) -> list[int]:
    """Children per node: ``width`` split in proportion to softmax(scores / temperature),
    rounded by largest remainder (ties to the earlier node), so the counts sum to ``width``."""
    if not scores or width <= 0:
        return [0] * len(scores)
    top = max(scores)
    weights = [math.exp((s - top) / temperature) for s in scores]
    total = sum(weights)
    quotas = [width * w / total for w in weights]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(scores)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: width - sum(counts)]:
        counts[i] += 1
    return counts


@register("rebase")
class Rebase(StepSearch):
    n: int = Field(8, ge=1, description="width budget: paths to finish (the root gets n first steps)")
    balance_temperature: float = Field(0.2, gt=0,
                                       description="T in softmax(score / T): lower favours the best nodes more")

    async def run(self, ctx: Context) -> Outcome:
        tree = Tree(step_config(self))
        frontier, counts, ended_by = [tree.root], [self.n], "max_steps"
        for depth in range(1, self.max_steps + 1):
            expanding = dict(zip([f.id for f in frontier], counts))
            async with ctx.span(f"depth-{depth}", depth=depth, expand=expanding) as sub:
                children = [c for group in await expand(sub, tree, frontier, counts, self.prm) for c in group]
                _, active = tree.settle(children)
                width = self.n - len(tree.finished())
                counts = allocate([c.score or 0.0 for c in active], width, self.balance_temperature)
                frontier, counts = assign_children(active, counts)
                note(sub, width=width, kept=dict(zip([f.id for f in frontier], counts)))
            if stop := width_search_ended(ctx, width, frontier):
                ended_by = stop
                break
        return finish(ctx, tree, ended_by)
