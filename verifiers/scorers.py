"""Verifiers that score candidates for best-of-N and weighted voting.

Each is a ``reasoning.Verifier``: ``await score(ctx, samples) -> list[float]``; the ones
that call the model do it through ``ctx.generate``, so verification draws from the same
budget as generation.
"""

from __future__ import annotations

import asyncio
import math
import re

from reasoning.context import Context, Sample
from reasoning.registry import VERIFIERS
from reasoning.strategy import Verifier

_SCORE = re.compile(r"score\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


class LLMJudge(Verifier):
    """The model grades each solution 0-10 (prompt ``prompts/judge_score.md``).

    Score = mean of ``k`` sampled grades / 10; a grade that cannot be parsed counts 0,
    and a candidate whose verification the budget refused scores 0.
    """

    name = "judge"

    def __init__(self, k: int = 1, max_tokens: int = 256, temperature: float = 0.0, prompt: str = "judge_score"):
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k = k
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.prompt = prompt

    async def score(self, ctx: Context, samples: list[Sample]) -> list[float]:
        from reasoning.prompts import load_prompt

        template = load_prompt(self.prompt)

        async def one(sample: Sample) -> float:
            messages = template.render(problem=ctx.problem.text, solution=sample.text)
            grades = await ctx.generate(
                messages, n=self.k, max_tokens=self.max_tokens, temperature=self.temperature,
                name="judge", min_tokens=16,
            )
            values = [parse_grade(g.text) for g in grades]
            return sum(v for v in values if v is not None) / (10.0 * self.k)

        return list(await asyncio.gather(*(one(s) for s in samples)))


def parse_grade(text: str) -> float | None:
    """The last "Score: N" in a judge's reply, clipped to 0..10."""
    found = _SCORE.findall(text)
    if not found:
        return None
    return min(10.0, max(0.0, float(found[-1])))


class Confidence(Verifier):
    """Mean token log-probability of the sample, as a probability-like score in (0, 1].

    No extra model calls; needs a backend that returns logprobs (candidates are then
    sampled with ``logprobs=True``).
    """

    name = "confidence"
    needs_logprobs = True

    async def score(self, ctx: Context, samples: list[Sample]) -> list[float]:
        scores = []
        for sample in samples:
            mean = sample.completion.mean_logprob if sample.completion else None
            scores.append(math.exp(mean) if mean is not None else 0.0)
        return scores


def make_verifier(name: str) -> Verifier:
    """A verifier by CLI name (entry points, group ``reasoning.verifiers``), with its defaults."""
    return VERIFIERS.get(name)()
