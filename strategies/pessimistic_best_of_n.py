"""Pessimistic best-of-N: GenRM verification, then the answer that is most certainly right.

After Heimdall (Shi & Jin 2025): instead of the single highest mean P(Yes), group the
solutions by final answer, pool all verification chains of each group, and pick the group
with the highest Wilson lower confidence bound on P(Yes) (``verifiers.pessimistic``: z = 1.96
by default). Within the winning group the member with the highest own mean P(Yes) is
returned (ties to the earlier one). Sampling, budget split and fallbacks are GenRM
best-of-N's (``strategies.genrm_best_of_n``).
"""

from __future__ import annotations

from pydantic import Field

from reasoning.context import Sample
from reasoning.strategy import Verifier
from reasoning.verifiers.pessimistic import DEFAULT_Z, Pessimistic

from .genrm_best_of_n import GenRMBestOfN
from .registry import register
from .voting import best_index


@register("pessimistic-best-of-n")
class PessimisticBestOfN(GenRMBestOfN):
    z: float = Field(DEFAULT_Z, ge=0, description="z of the Wilson lower bound over each answer group's verdicts")

    def wrap_verifier(self, verifier: Verifier) -> Verifier:
        return verifier if isinstance(verifier, Pessimistic) else Pessimistic(verifier, z=self.z)

    def select(self, samples: list[Sample], scores: list[float]) -> int:
        """Highest group lower bound, then highest own mean P(Yes), then the earlier sample."""
        own = [s.info.get("pessimistic", {}).get("own", 0.0) for s in samples]
        return best_index(scores, own)
