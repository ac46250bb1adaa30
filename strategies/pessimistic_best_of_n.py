"""Pessimistic best-of-N: GenRM verification, then the answer that is most certainly right.

After Heimdall (Shi & Jin 2025, "Heimdall: test-time scaling on the generative
verification"): instead of the single highest mean P(Yes), group the solutions by final
answer, pool all verification chains of each group, and pick the group with the best
pessimistic score (``verifiers.pessimistic``):

* ``rule="heimdall"`` (default, the paper's Pessimistic Verification): with N solutions, M
  verifications each and N_k solutions of answer a_k,
  ``r̄_k − α·sqrt(ln(N·M) / (N_k·M + 1))``, ``alpha`` = 0.1 by default (the penalty's
  form and α are from recollection: the stored copies of the paper's text end before its
  formula; see ``verifiers.pessimistic`` for what was checked and the ±1-reward-scale caveat);
* ``rule="wilson"`` (this project's earlier, more pessimistic variant): the Wilson lower
  confidence bound on the group's P(Yes), ``z`` = 1.96 by default.

Within the winning group the member with the highest own mean P(Yes) is returned (ties to
the earlier one). A solution without an answer never wins (as in GenRM best-of-N). Sampling,
budget split, cost accounting and fallbacks are GenRM best-of-N's
(``strategies.genrm_best_of_n``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reasoning.context import Sample
from reasoning.strategy import Verifier
from reasoning.verifiers.pessimistic import DEFAULT_ALPHA, DEFAULT_Z, Pessimistic

from .genrm_best_of_n import GenRMBestOfN
from .registry import register
from .voting import best_index


@register("pessimistic-best-of-n")
class PessimisticBestOfN(GenRMBestOfN):
    rule: Literal["heimdall", "wilson"] = Field(
        "heimdall", description="how an answer group is scored: heimdall (the paper's mean - alpha*sqrt(ln(N*M)/"
        "(N_k*M+1))) or wilson (Wilson lower bound of its P(Yes), more pessimistic)")
    alpha: float = Field(DEFAULT_ALPHA, ge=0, description="alpha of Heimdall's penalty (rule=heimdall); "
                       "0.1 is from recollection, the paper's value is not checked")
    z: float = Field(DEFAULT_Z, ge=0, description="z of the Wilson lower bound (rule=wilson)")

    def wrap_verifier(self, verifier: Verifier) -> Verifier:
        if isinstance(verifier, Pessimistic):
            return verifier
        return Pessimistic(verifier, z=self.z, rule=self.rule, alpha=self.alpha)

    def select(self, samples: list[Sample], scores: list[float]) -> int:
        """Among samples with an answer: highest group score, then highest own mean P(Yes),
        then the earlier sample."""
        own = [s.info.get("pessimistic", {}).get("own", 0.0) for s in samples]
        return best_index([float(self.answered(s)) for s in samples], scores, own)
