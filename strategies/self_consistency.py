"""Self-consistency (Wang et al., ICLR 2023): sample n reasoning paths, majority-vote the answers.

With a verifier, votes are weighted by its scores (weighted self-consistency). With a
sampler strategy, each vote is that strategy's outcome instead of one raw sample.

Sample count: the paper's main results vote over 40 sampled paths per question (``n=40``);
the default here is 8, a cheaper setting, so an accuracy at the default is not the paper's
operating point (its accuracy rises with the number of sampled paths, up to the 40 it reports).
"""

from __future__ import annotations

from reasoning.context import Context, Sample
from pydantic import Field

from reasoning.strategy import MaxTokens, Outcome, SampleReuse, Strategy, Temperature, Verifier

from .candidates import sample_candidates
from .registry import register
from .voting import majority


@register("self-consistency")
class SelfConsistency(Strategy, SampleReuse):
    n: int = Field(8, ge=1, description="reasoning paths sampled and voted on (the paper: 40)")
    verifier: Verifier | None = Field(None, description="weights each vote by this verifier's score")
    sampler: Strategy | None = Field(None, description="each vote is this strategy's outcome instead of one sample")
    max_tokens: MaxTokens = None
    temperature: Temperature = None

    async def run(self, ctx: Context) -> Outcome:
        return self.choose(await self.draw(ctx, self.n))

    async def draw(self, ctx: Context, n: int) -> list[Sample]:
        # scored by the verifier, if any (sets sample.score)
        return await sample_candidates(ctx, n, sampler=self.sampler, verifier=self.verifier,
                                       max_tokens=self.max_tokens, temperature=self.temperature)

    def choose(self, samples: list[Sample]) -> Outcome:
        weights = [s.score or 0.0 for s in samples] if self.verifier else None
        vote = majority(samples, weights)
        text = vote.sample.text if vote.sample else None
        return Outcome(vote.answer, text, samples, {"votes": vote.tally, "share": vote.share, "n": len(samples)})

