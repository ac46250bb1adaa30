"""Where candidates come from: n raw samples, or n outcomes of a sampler strategy."""

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
    """n candidates in one batched call, or n concurrent runs of ``sampler``.

    Asks for logprobs when the verifier scores with them. May return fewer than n
    (budget shrink) or none (budget refused).
    """
    if sampler is None:
        return await ctx.generate(
            n=n,
            max_tokens=max_tokens,
            temperature=temperature,
            logprobs=getattr(verifier, "needs_logprobs", False),
        )

    async def one(index: int):
        async with ctx.span(f"{sampler.name}-{index}") as sub:
            return await sampler.run(sub)

    outcomes = await asyncio.gather(*(one(i) for i in range(n)))
    return [o.as_sample() for o in outcomes if o.answer is not None or o.text]
