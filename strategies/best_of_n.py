"""Best-of-N: sample n candidates, score each with a verifier, keep the best.

``aggregate="max"`` keeps the single best-scored candidate; ``"sum"`` adds scores per
answer first (weighted best-of-N), which is more robust to a noisy verifier. With a
sampler strategy each candidate is that strategy's outcome (e.g. best-of-N over
self-consistency groups); all candidates and verifications draw from one ledger.
"""

from __future__ import annotations

from reasoning.context import Context, Sample
from typing import Literal

from pydantic import Field

from reasoning.strategy import MaxTokens, Outcome, SampleReuse, Strategy, Temperature, Verifier

from .candidates import sample_candidates
from .registry import register
from .voting import best_index, majority


def _default_verifier() -> Verifier:
    from reasoning.verifiers import LLMJudge  # the default verifier needs nothing but the model

    return LLMJudge()


@register("best-of-n")
class BestOfN(Strategy, SampleReuse):
    n: int = Field(8, ge=1, description="candidates sampled and scored")
    verifier: Verifier = Field(default_factory=_default_verifier, description="scores candidates (default: LLM judge)")
    aggregate: Literal["max", "sum"] = Field("max", description="max: best single candidate; sum: best answer by total score")
    sampler: Strategy | None = Field(None, description="each candidate is this strategy's outcome instead of one sample")
    max_tokens: MaxTokens = None
    temperature: Temperature = None

    async def run(self, ctx: Context) -> Outcome:
        return self.choose(await self.draw(ctx, self.n))

    async def draw(self, ctx: Context, n: int) -> list[Sample]:
        # scored by the verifier, if any (sets sample.score)
        return await sample_candidates(ctx, n, sampler=self.sampler, verifier=self.verifier,
                                       max_tokens=self.max_tokens, temperature=self.temperature)

    def choose(self, samples: list[Sample]) -> Outcome:
        if not samples:
            return Outcome(None)
        scores = [s.score or 0.0 for s in samples]
        if self.aggregate == "sum":
            best = majority(samples, scores).sample
            if best is None:  # no sample has an answer to add scores for
                return Outcome(None, None, samples, {"scores": scores})
        else:
            best = samples[best_index(scores)]
        return Outcome(best.answer, best.text, samples, {"scores": scores})
