"""Pessimistic verification: prefer the answer whose correctness is most certain.

After Heimdall (Shi & Jin, 2025, "Heimdall: test-time scaling on the generative
verification", arXiv 2504.10337), whose Pessimistic Verification treats each distinct answer
as an arm of a bandit and picks the answer with the best *pessimistic* estimate of being
right instead of the single highest verification score. Candidates are grouped by final
answer (``verifiers.normalize_answer``); the verdicts of every verification chain of every
member are pooled, and each group is scored by one of two rules (``rule``):

``heimdall`` (the default: the paper's rule). With N solutions, M verifications each, N_k
solutions whose answer is a_k and r̄_k the mean verification score over their N_k·M
verifications, the selected answer is

    â = argmax_k [ r̄_k − α · sqrt( ln(N·M) / (N_k·M + 1) ) ]

a count-based penalty that shrinks as an answer gathers more solutions (UCB's bonus, with
the sign flipped). ``alpha`` = 0.1 by default: a small α, so the mean verification score
decides unless two answers are close, and an answer with more solutions wins those. When
verifications are missing (a budget shrink) or dropped (no verdict: ``verifiers.GenRM``), N·M
is the number of verdicts over all candidates and N_k·M that over the group's members, which
is the formula exactly when every solution got its M verdicts. The score can be negative
(r̄ = 0 minus the penalty): with every verdict "No" the rule still ranks answers, by their
number of solutions, i.e. it falls back to a majority vote. For a vote *weighted* by these
scores use ``wilson``, which stays in [0, 1].

What of this was checked against the paper (issue 22), and what was not: the stored copies
of the paper's text reachable here (arXiv's HTML, 2504.10337v2, and reviews of it) end
before Section 4's formula. The review at
https://www.themoonlight.io/review/heimdall-test-time-scaling-on-the-generative-verification
restates the set-up in the paper's terms (N solutions, M verifications of each, r_k the
average reward, i.e. verification score, of the solutions whose answer is a_k, N_k their
number; the answer chosen by an argmax over a_i of r(a_i) minus a penalty), and is cut off
there. So the penalty's exact form and **α = 0.1 are this project's recollection, not
checked against the text**. One open point follows from that review's wording: Heimdall is
trained with rewards of ±1, and if r_k is the mean of ±1 verdicts (2·r̄ − 1 for the 0/1 r̄
used here), the paper's α corresponds to α/2 here, since 2r̄ − 1 − α·s ranks answers as
r̄ − (α/2)·s does.

``wilson`` (a variant of this project's, more pessimistic): the Wilson score lower bound of
the group's probability of being judged correct, over soft counts

        m   = number of verification chains over the group's members
        y   = sum of their P(Yes)            (soft Yes count; hard verdicts give 0/1)
        p   = y / m
        LB  = (p + z²/2m - z * sqrt(p(1-p)/m + z²/4m²)) / (1 + z²/m),   LB = 0 when m = 0

with ``z = 1.96`` by default (the two-sided 95 % normal quantile). A single lucky chain with
P(Yes) = 1 gets LB = 0.21 (two such chains: 0.34); six chains at 0.9 get LB = 0.50. With the
few chains per answer of small runs this is far more pessimistic than Heimdall's penalty: the
bound grows with every chain, so with k = 4 chains per solution it ranks answers much like a
vote weighted by their Yes verdicts.

A candidate without an answer forms a group of its own. A base verifier that leaves no
per-chain record (anything but GenRM) contributes its score as one soft verdict per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from reasoning.context import Context, Sample
from reasoning.strategy import Verifier

from reasoning.answers.normalize import normalize_answer

DEFAULT_Z = 1.96
DEFAULT_ALPHA = 0.1
RULES = ("heimdall", "wilson")
Rule = Literal["heimdall", "wilson"]


def heimdall_score(mean: float, chains: float, total_chains: float, alpha: float = DEFAULT_ALPHA) -> float:
    """Heimdall's pessimistic score of one answer: r̄ − α·sqrt(ln(N·M) / (N_k·M + 1)).

    ``mean`` is r̄ (the answer's mean verification score), ``chains`` its verdicts N_k·M and
    ``total_chains`` the verdicts over all solutions N·M (ln taken of at least 1: no verdict
    at all, no penalty).
    """
    return mean - alpha * math.sqrt(math.log(max(total_chains, 1.0)) / (chains + 1.0))


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
    yes: float = 0.0  # pooled P(Yes) over all chains with a verdict
    chains: int = 0  # chains with a verdict
    lower: float = 0.0  # the group's pessimistic score (the rule's)

    @property
    def mean(self) -> float:
        return self.yes / self.chains if self.chains else 0.0


def group_by_answer(
    samples: Sequence[Sample], scores: Sequence[float], z: float = DEFAULT_Z, *,
    rule: Rule = "heimdall", alpha: float = DEFAULT_ALPHA,
) -> list[Group]:
    """Groups in order of first appearance, with pooled verdicts and the rule's pessimistic score."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    groups: dict[str, Group] = {}
    for index, sample in enumerate(samples):
        key = normalize_answer(sample.answer) if sample.answer is not None else ""
        key = key or f"#no-answer-{index}"
        group = groups.setdefault(key, Group(key))
        group.members.append(index)
        record = sample.info.get("genrm")
        if record is not None:
            verdicts = [p for p in record["p_yes"] if p is not None]  # None: no verdict, dropped
            group.yes += sum(verdicts)
            group.chains += len(verdicts)
        else:
            group.yes += scores[index]
            group.chains += 1
    total = sum(group.chains for group in groups.values())
    for group in groups.values():
        if rule == "heimdall":
            group.lower = heimdall_score(group.mean, group.chains, total, alpha)
        else:
            group.lower = wilson_lower_bound(group.yes, group.chains, z)
    return list(groups.values())


class Pessimistic(Verifier):
    """Scores each candidate with its answer group's pessimistic score (see module doc):
    Heimdall's ``r̄ − α·sqrt(ln(N·M)/(N_k·M + 1))`` (``rule="heimdall"``, the default) or the
    Wilson lower bound (``rule="wilson"``).

    Runs ``base`` (default ``GenRM()``) first; usable by any best-of-N or weighted vote
    (a weighted vote wants ``wilson``: Heimdall's scores can be negative).
    """

    set_dependent = True  # a sample's score pools the verdicts of its whole answer group

    name = "pessimistic"

    def __init__(self, base: Verifier | None = None, z: float = DEFAULT_Z, *,
                 rule: Rule = "heimdall", alpha: float = DEFAULT_ALPHA):
        if z < 0:
            raise ValueError(f"z must be >= 0, got {z}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
        if base is None:
            from .genrm import GenRM

            base = GenRM()
        self.base = base
        self.z = z
        self.rule = rule
        self.alpha = alpha

    @property
    def needs_logprobs(self) -> bool:
        return getattr(self.base, "needs_logprobs", False)

    async def score(self, ctx: Context, samples: list[Sample]) -> list[float]:
        base_scores = await self.base.score(ctx, samples)
        scores = [0.0] * len(samples)
        groups = group_by_answer(samples, base_scores, self.z, rule=self.rule, alpha=self.alpha)
        total = sum(group.chains for group in groups)
        for group in groups:
            for index in group.members:
                scores[index] = group.lower
                samples[index].info["pessimistic"] = {
                    "rule": self.rule, "group": group.key, "yes": group.yes, "chains": group.chains,
                    "total_chains": total, "mean": group.mean, "lower": group.lower, "own": base_scores[index],
                }
        return scores
