"""Diverse verifier tree search (DVTS; Beeching, Tunstall & Rush 2024, search-and-learn).

``n // width`` independent subtrees, each searched greedily: at every depth a subtree's current
node gets ``width`` sampled next steps, the PRM scores them, and the best (ties: the earlier)
becomes the current node; its siblings are pruned. A finished child (the solution ended, or
``max_steps`` reached) is set aside as a path; a subtree ends when its best child is finished.
All subtrees advance together, one span per depth. Stops when every subtree has ended, at
``max_steps``, or when the budget refuses an expansion; the answer is the PRM-weighted vote of
the finished paths (``strategies/tree.py``). Each node's record names its ``subtree``.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from reasoning.context import Context
from reasoning.strategy import Outcome

from .registry import register
from .tree import StepSearch, Tree, expand, finish, note, step_config
from .voting import best_index


@register("dvts")
class DVTS(StepSearch):
    n: int = Field(8, ge=1, description="total width: n // width subtrees, width children each per depth")
    width: int = Field(4, ge=1, description="next steps sampled per subtree and depth (the best is kept)")

    @model_validator(mode="after")
    def _subtrees(self) -> DVTS:
        if self.width > self.n:
            raise ValueError(f"width must be at most n ({self.n}), got {self.width}")
        return self

    async def run(self, ctx: Context) -> Outcome:
        tree = Tree(step_config(self))
        current = {s: tree.root for s in range(self.n // self.width)}  # live subtree -> its node
        ended_by = "max_steps"
        for depth in range(1, self.max_steps + 1):
            async with ctx.span(f"depth-{depth}", depth=depth, expand={s: n.id for s, n in current.items()}) as sub:
                groups = await expand(sub, tree, list(current.values()), self.width, self.prm)
                for subtree, children in zip(list(current), groups, strict=True):
                    for child in children:
                        child.info["subtree"] = subtree
                    tree.settle(children)
                    if not children:  # refused: the subtree stays where it is
                        continue
                    best = children[best_index([c.score or 0.0 for c in children])]
                    for child in children:
                        if child is not best and not child.finished:
                            child.status = "pruned"
                    if best.finished:
                        del current[subtree]
                    else:
                        best.status = "kept"
                        current[subtree] = best
                note(sub, kept={s: n.id for s, n in current.items()})
            if ctx.ledger.exhausted:
                ended_by = "budget"
                break
            if not current:
                ended_by = "paths"
                break
        return finish(ctx, tree, ended_by)
