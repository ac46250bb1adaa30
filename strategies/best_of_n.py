"""Best-of-N: sample n candidates, score each with a verifier, keep the best.

``aggregate="max"`` keeps the single best-scored candidate; ``"sum"`` adds scores per
answer first (weighted best-of-N), which is more robust to a noisy verifier. With a
sampler strategy each candidate is that strategy's outcome (e.g. best-of-N over
self-consistency groups); all candidates and verifications draw from one ledger.
"""

from __future__ import annotations

from reasoning.context import Context, Sample
from reasoning.strategy import Outcome, SampleReuse, Strategy, Verifier

from .candidates import sample_candidates
from .registry import register
from .voting import majority


@register("best-of-n")
class BestOfN(Strategy, SampleReuse):
    def __init__(
        self,
        n: int = 8,
        verifier: Verifier | None = None,
        *,
        aggregate: str = "max",
        sampler: Strategy | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if aggregate not in ("max", "sum"):
            raise ValueError(f"aggregate must be 'max' or 'sum', got {aggregate!r}")
        if verifier is None:
            from verifiers import LLMJudge  # the default verifier needs nothing but the model

            verifier = LLMJudge()
        self.n = n
        self.verifier = verifier
        self.aggregate = aggregate
        self.sampler = sampler
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def run(self, ctx: Context) -> Outcome:
        return self.choose(await self.draw(ctx, self.n))

    async def draw(self, ctx: Context, n: int) -> list[Sample]:
        samples = await sample_candidates(
            ctx, n, sampler=self.sampler, verifier=self.verifier,
            max_tokens=self.max_tokens, temperature=self.temperature,
        )
        if samples:
            await ctx.verify(samples, self.verifier)  # sets sample.score
        return samples

    def choose(self, samples: list[Sample]) -> Outcome:
        if not samples:
            return Outcome(None)
        scores = [s.score or 0.0 for s in samples]
        if self.aggregate == "sum":
            vote = majority(samples, scores)
            best = vote.sample
        else:
            # Highest score; ties to the earlier sample.
            best = samples[max(range(len(samples)), key=lambda i: (scores[i], -i))]
        return Outcome(best.answer, best.text, samples, {"scores": scores})
