"""Beam search over reasoning steps with a process reward (search-and-learn; Snell et al. 2024).

``n`` candidates per depth, ``width`` M: the first depth samples ``n`` first steps; the PRM
scores every candidate (its look-ahead rollout with ``lookahead`` > 0); finished candidates (the
solution ended, or ``max_steps`` reached) are set aside; the best ``n // width`` unfinished
ones are kept (ties: the earlier) and each is expanded by ``width`` sampled next steps, again
``n`` candidates. Stops when ``n`` paths are finished, at ``max_steps``, when nothing is left to
expand, or when the budget refuses an expansion. The answer is the PRM-weighted vote of the
finished paths (``strategies/tree.py``); ``Outcome.info["tree"]`` is the whole search tree.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from reasoning.context import Context
from reasoning.strategy import Outcome

from .registry import register
from .tree import StepSearch, Tree, expand, finish, note, step_config


@register("beam-search")
class BeamSearch(StepSearch):
    n: int = Field(8, ge=1, description="candidates per depth (beams x width) and finished paths to collect")
    width: int = Field(4, ge=1, description="next steps sampled per kept beam (n // width beams are kept)")

    @model_validator(mode="after")
    def _beams(self) -> BeamSearch:
        if self.width > self.n:
            raise ValueError(f"width must be at most n ({self.n}), got {self.width}")
        return self

    async def run(self, ctx: Context) -> Outcome:
        tree = Tree(step_config(self))
        beams, count, ended_by = [tree.root], self.n, "max_steps"
        for depth in range(1, self.max_steps + 1):
            async with ctx.span(f"depth-{depth}", depth=depth, expand=[b.id for b in beams]) as sub:
                children = [c for group in await expand(sub, tree, beams, count, self.prm) for c in group]
                done, active = tree.settle(children)
                active.sort(key=lambda c: -(c.score or 0.0))  # stable: ties keep the earlier
                beams, dropped = active[: self.n // self.width], active[self.n // self.width :]
                for beam in beams:
                    beam.status = "kept"
                for node in dropped:
                    node.status = "pruned"
                note(sub, kept=[b.id for b in beams], complete=[c.id for c in done])
            if ctx.ledger.exhausted:
                ended_by = "budget"
                break
            if len(tree.finished()) >= self.n:
                ended_by = "paths"
                break
            if not beams:
                ended_by = "frontier"
                break
            count = self.width
        return finish(ctx, tree, ended_by)
