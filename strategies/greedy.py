"""Greedy: one sample at temperature 0. The baseline every other strategy must beat."""

from __future__ import annotations

from reasoning.context import Context
from reasoning.strategy import MaxTokens, Outcome, Strategy

from .registry import register


@register("greedy")
class Greedy(Strategy):
    size_option = None
    fixed_temperature = 0.0

    max_tokens: MaxTokens = None

    async def run(self, ctx: Context) -> Outcome:
        samples = await ctx.generate(n=1, temperature=self.fixed_temperature, max_tokens=self.max_tokens)
        if not samples:
            return Outcome(None)
        return Outcome(samples[0].answer, samples[0].text, samples)
