"""Where candidates come from: n raw samples, or n outcomes of a sampler strategy, scored by a verifier."""

from __future__ import annotations

import asyncio

from reasoning.context import Context, Sample
from reasoning.strategy import Strategy, Verifier


async def sample_candidates(
    ctx: Context,
    n: int,
    *,
    sampler: Strategy | None = None,
    verifier: Verifier | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> list[Sample]:
    """n candidates in one batched call, or n concurrent runs of ``sampler``; with a
    ``verifier``, each scored by it (sets ``sample.score``).

    Asks for logprobs when the verifier scores with them. May return fewer than n
    (budget shrink) or none (budget refused).
    """
    if sampler is None:
        samples = await ctx.generate(
            n=n,
            max_tokens=max_tokens,
            temperature=temperature,
            logprobs=getattr(verifier, "needs_logprobs", False),
        )
    else:

        async def one(index: int):
            async with ctx.span(f"{sampler.name}-{index}") as sub:
                return await sampler.run(sub)

        outcomes = await asyncio.gather(*(one(i) for i in range(n)))
        samples = [o.as_sample() for o in outcomes if o.answer is not None or o.text]
    if verifier is not None and samples:
        await ctx.verify(samples, verifier)
    return samples
