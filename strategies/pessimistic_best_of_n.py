"""Pessimistic best-of-N: GenRM verification, then the answer that is most certainly right.

After Heimdall (Shi & Jin 2025): instead of the single highest mean P(Yes), group the
solutions by final answer, pool all verification chains of each group, and pick the group
with the highest Wilson lower confidence bound on P(Yes) (``verifiers.pessimistic``: z = 1.96
by default). Within the winning group the member with the highest own mean P(Yes) is
returned (ties to the earlier one). Sampling, budget split and fallbacks are GenRM
best-of-N's (``strategies.genrm_best_of_n``).
"""

from __future__ import annotations

from reasoning.context import Sample
from verifiers.genrm import GenRM
from verifiers.pessimistic import DEFAULT_Z, Pessimistic

from .genrm_best_of_n import GenRMBestOfN
from .registry import register


@register("pessimistic-best-of-n")
class PessimisticBestOfN(GenRMBestOfN):
    def __init__(
        self,
        n_solutions: int = 4,
        k_verifications: int = 4,
        *,
        z: float = DEFAULT_Z,
        solution_share: float | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        verify_max_tokens: int = 512,
    ) -> None:
        verifier = Pessimistic(GenRM(k=k_verifications, max_tokens=verify_max_tokens), z=z)
        super().__init__(
            n_solutions, k_verifications, verifier=verifier, solution_share=solution_share,
            max_tokens=max_tokens, temperature=temperature, verify_max_tokens=verify_max_tokens,
        )
        self.z = z

    def select(self, samples: list[Sample], scores: list[float]) -> int:
        """Highest group lower bound, then highest own mean P(Yes), then the earlier sample."""
        own = [s.info.get("pessimistic", {}).get("own", 0.0) for s in samples]
        return max(range(len(samples)), key=lambda i: (scores[i], own[i], -i))
