"""Pessimistic verification: prefer the answer whose correctness is most certain.

After Heimdall (Shi & Jin, 2025, "Heimdall: test-time scaling on the generative
verification"), whose pessimistic verification picks the solution that minimises the
uncertainty of being wrong instead of the one with the highest mean verification score.
Candidates are grouped by final answer (``verifiers.normalize_answer``, the same key as
majority voting); the verdicts of every verification chain of every member are pooled, and
the group is scored by a LOWER CONFIDENCE BOUND on its probability of being judged correct:

    Wilson score lower bound, soft counts
        m   = number of verification chains over the group's members
        y   = sum of their P(Yes)            (soft Yes count; hard verdicts give 0/1)
        p   = y / m
        LB  = (p + z²/2m - z * sqrt(p(1-p)/m + z²/4m²)) / (1 + z²/m),   LB = 0 when m = 0

with ``z = 1.96`` by default (the two-sided 95 % normal quantile). A single lucky chain with
P(Yes) = 1 gets LB = 0.21 (two such chains: 0.34); six chains at 0.9 get LB = 0.50: many consistent Yes verdicts
beat one high score, and an answer reached by several solutions is rewarded through its
larger m, as in Heimdall.

A candidate without an answer forms a group of its own. A base verifier that leaves no
per-chain record (anything but GenRM) contributes its score as one soft verdict per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from reasoning.context import Context, Sample
from reasoning.strategy import Verifier

from reasoning.answers.normalize import normalize_answer

DEFAULT_Z = 1.96


def wilson_lower_bound(yes: float, m: float, z: float = DEFAULT_Z) -> float:
    """Wilson score lower bound of a proportion with ``yes`` successes out of ``m`` trials."""
    if m <= 0:
        return 0.0
    p = min(1.0, max(0.0, yes / m))
    z2 = z * z
    centre = p + z2 / (2 * m)
    spread = z * math.sqrt(p * (1 - p) / m + z2 / (4 * m * m))
    return max(0.0, (centre - spread) / (1 + z2 / m))


@dataclass(slots=True)
class Group:
    key: str
    members: list[int] = field(default_factory=list)  # sample indices, in order
    yes: float = 0.0  # pooled P(Yes) over all chains
    chains: int = 0
    lower: float = 0.0

    @property
    def mean(self) -> float:
        return self.yes / self.chains if self.chains else 0.0


def group_by_answer(samples: Sequence[Sample], scores: Sequence[float], z: float = DEFAULT_Z) -> list[Group]:
    """Groups in order of first appearance, with pooled verdicts and Wilson lower bounds."""
    groups: dict[str, Group] = {}
    for index, sample in enumerate(samples):
        key = normalize_answer(sample.answer) if sample.answer is not None else ""
        key = key or f"#no-answer-{index}"
        group = groups.setdefault(key, Group(key))
        group.members.append(index)
        record = sample.info.get("genrm")
        if record is not None:
            group.yes += sum(record["p_yes"])
            group.chains += len(record["p_yes"])
        else:
            group.yes += scores[index]
            group.chains += 1
    for group in groups.values():
        group.lower = wilson_lower_bound(group.yes, group.chains, z)
    return list(groups.values())


class Pessimistic(Verifier):
    """Scores each candidate with its answer group's Wilson lower bound (see module doc).

    Runs ``base`` (default ``GenRM()``) first; usable by any best-of-N or weighted vote.
    """

    set_dependent = True  # a sample's score pools the verdicts of its whole answer group

    name = "pessimistic"

    def __init__(self, base: Verifier | None = None, z: float = DEFAULT_Z):
        if z < 0:
            raise ValueError(f"z must be >= 0, got {z}")
        if base is None:
            from .genrm import GenRM

            base = GenRM()
        self.base = base
        self.z = z

    @property
    def needs_logprobs(self) -> bool:
        return getattr(self.base, "needs_logprobs", False)

    async def score(self, ctx: Context, samples: list[Sample]) -> list[float]:
        base_scores = await self.base.score(ctx, samples)
        scores = [0.0] * len(samples)
        for group in group_by_answer(samples, base_scores, self.z):
            for index in group.members:
                scores[index] = group.lower
                samples[index].info["pessimistic"] = {
                    "group": group.key, "yes": group.yes, "chains": group.chains,
                    "mean": group.mean, "lower": group.lower, "own": base_scores[index],
                }
        return scores
