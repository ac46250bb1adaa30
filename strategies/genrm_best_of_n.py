"""GenRM best-of-N: sample S solutions, verify each with V GenRM chains, keep the best.

After Singhi et al. 2025, "When To Solve, When To Verify: Compute-Optimal Problem Solving
and Generative Verification for LLM Reasoning" (official code ``nishadsinghi/sc-genrm-scaling``).
Each solution gets ``k_verifications`` verification chains-of-thought ending in a Yes/No
verdict (``verifiers.GenRM``); its score is the mean P(Yes) over the chains that reached a
verdict (a chain without one is dropped, not scored 0); the highest score wins, ties to the
earlier solution. A solution without an answer (none extracted, or one that normalises to
nothing) scores 0 and never wins: the answer is the best-scored solution *with* an answer, as
in the paper's code (``compute_best_of_k(..., set_invalid_to_zero=True)`` zeroes
``[invalidanswer]`` scores; its weighted vote gives them -1).

The paper's verification set-up is an option: ``verify_prompt="genrm_paper"`` (its 2-shot
GenRM-Base prompt format, ``prompts/genrm_paper.md``) with ``verify_max_tokens=1024`` (its
GenRM-Base verification length). The defaults (``genrm_verify``, our zero-shot prompt, and
512 tokens) are this project's.

Compute-matched accounting (the paper's): with S solutions, V verifications per solution and
λ = (verification length) / (solution length), GenRM costs

    C(S, V) = S · (1 + λ·V)        solution-lengths of generation,

so self-consistency with ``sc_matched_n(S, V, λ) = floor(C)`` samples uses the same compute.
The paper finds SC ahead at most practical budgets (GenRM needs up to 8x the compute to
match it) and that compute-optimal GenRM grows S faster than V. ``Outcome.info`` records the
observed λ (mean verification chain tokens / mean solution tokens) and the matched SC n.

Cost, as the paper counts it and as a bill counts it. The paper's compute is *generated*
tokens only (its x-axis is S·(1 + λ·V) solution-lengths; prompts are not counted).
``Outcome.info`` reports both: ``generated_tokens`` (completion tokens of the solutions plus
those of every verification chain; split in ``solution_tokens`` / ``verification_tokens``)
and ``tokens`` (those plus ``prompt_tokens``: each solution call's prompt once, and each
candidate's verification prompt, which holds the whole solution and, with the paper's 2-shot
prompt, two worked examples). Both are computed from the candidates chosen among, so a
sweep's subset of a pool reports the subset's cost.

Budget: solutions and verifications draw from the one ledger of the context. With
``solution_share`` set and a token limit in force (``tokens`` and/or ``completion_tokens``),
the solutions run in a slice holding that share of what remains; the verifications get the
rest (plus whatever the solutions left unspent). A budget shrink leaves some candidates
fewer verification chains: they still compete on the mean of the chains they got; a candidate
with no verdict scores 0; if no candidate got a single verdict the answer falls back to the
majority vote of the solutions (``info["fallback"] = "majority"``).
"""

from __future__ import annotations

import math

from reasoning.context import Context, Sample
from pydantic import Field, model_validator

from reasoning.strategy import MaxTokens, Outcome, SampleReuse, Strategy, Temperature, Verifier
from reasoning.verifiers.genrm import GenRM, call_prompt_tokens

from .registry import register
from .voting import best_index, key_of, majority


def genrm_compute(S: int, V: int, lam: float) -> float:
    """Compute of GenRM best-of-N in units of one solution generation: S·(1 + λ·V)."""
    return S * (1.0 + lam * V)


def sc_matched_n(S: int, V: int, lam: float) -> int:
    """Self-consistency sample count with (at most) the compute of GenRM with S, V, λ."""
    return max(1, math.floor(genrm_compute(S, V, lam) + 1e-9))


@register("genrm-best-of-n")
class GenRMBestOfN(Strategy, SampleReuse):
    size_option = "n_solutions"

    n_solutions: int = Field(4, ge=1, description="candidate solutions sampled")
    k_verifications: int = Field(4, ge=1, description="verification chains per solution")
    verifier: Verifier | None = Field(None, description="scores solutions (default: GenRM with k_verifications chains)")
    solution_share: float | None = Field(None, gt=0, lt=1, description="share of the budget for solutions "
                                         "(default: in proportion to their expected tokens)")
    max_tokens: MaxTokens = None
    temperature: Temperature = None
    verify_max_tokens: int = Field(512, ge=1, description="max tokens of one verification chain "
                                   "(the paper: 1,024 for GenRM-Base)")
    verify_prompt: str = Field("genrm_verify", description="prompt file (prompts/) of a verification chain: "
                               "genrm_verify (ours, zero-shot) or genrm_paper (the paper's 2-shot GenRM-Base format)")

    @model_validator(mode="after")
    def _resolve_verifier(self) -> GenRMBestOfN:
        self.verifier = self.wrap_verifier(self.verifier or GenRM(
            k=self.k_verifications, max_tokens=self.verify_max_tokens, prompt=self.verify_prompt))
        return self

    def wrap_verifier(self, verifier: Verifier) -> Verifier:
        """Subclasses may wrap the verifier (pessimistic best-of-N pools its verdicts)."""
        return verifier

    async def run(self, ctx: Context) -> Outcome:
        return self.choose(await self.draw(ctx, self.n_solutions))

    async def draw(self, ctx: Context, n: int) -> list[Sample]:
        solving = self.solution_context(ctx)
        samples = await solving.generate(
            n=n, max_tokens=self.max_tokens, temperature=self.temperature, name="solutions"
        )
        if samples:
            for sample in samples:  # its call's prompt tokens, for cost() (the trace is shared)
                sample.info["call_prompt_tokens"] = call_prompt_tokens(ctx, [sample])
            await ctx.verify(samples, self.verifier)  # sets sample.score
        return samples

    def choose(self, samples: list[Sample]) -> Outcome:
        if not samples:
            return Outcome(None)
        # A solution without an answer scores 0 (and select() never picks it over one with an answer).
        scores = [(s.score or 0.0) if self.answered(s) else 0.0 for s in samples]
        info = self.accounting(samples, scores)
        if not any(self.verified(s) for s in samples):
            vote = majority(samples)
            info["fallback"] = "majority"
            return Outcome(vote.answer, vote.sample.text if vote.sample else None, samples, info)
        best = samples[self.select(samples, scores)]
        return Outcome(best.answer, best.text, samples, info)

    def solution_context(self, ctx: Context) -> Context:
        """The context solutions are drawn in: a slice of ``solution_share`` of the tokens left."""
        if self.solution_share is None:
            return ctx
        limits = ("tokens", "completion_tokens")
        if all(math.isinf(ctx.ledger.remaining(limit)) for limit in limits):
            return ctx
        return ctx.share(self.solution_share, limits=limits, name="solutions")

    def select(self, samples: list[Sample], scores: list[float]) -> int:
        """Index of the highest score among samples with an answer; ties to the earlier sample."""
        return best_index([float(self.answered(s)) for s in samples], scores)

    @staticmethod
    def answered(sample: Sample) -> bool:
        """Whether the sample has an answer that can win (one that votes: ``voting.key_of``)."""
        return key_of(sample) is not None

    @staticmethod
    def verified(sample: Sample) -> bool:
        """Whether GenRM got at least one verdict for it (any other verifier: always)."""
        record = sample.info.get("genrm")
        return record is None or record.get("judged", record["chains"]) > 0

    def accounting(self, samples: list[Sample], scores: list[float]) -> dict:
        solution_tokens = [s.completion.completion_tokens for s in samples if s.completion]
        chain_tokens = [t for s in samples for t in s.info.get("genrm", {}).get("tokens", [])]
        info: dict = {
            "scores": scores,
            "chains": [s.info.get("genrm", {}).get("chains") for s in samples],
            "n_solutions": len(samples),
            **self.cost(samples),
        }
        if solution_tokens and chain_tokens and sum(solution_tokens):
            lam = (sum(chain_tokens) / len(chain_tokens)) / (sum(solution_tokens) / len(solution_tokens))
            info["lambda"] = lam
            info["compute"] = genrm_compute(len(samples), self.k_verifications, lam)
            info["sc_matched_n"] = sc_matched_n(len(samples), self.k_verifications, lam)
        return info

    @staticmethod
    def cost(samples: list[Sample]) -> dict[str, int]:
        """The candidates' cost: generated tokens (the paper's measure) and prompt + completion."""
        solution_tokens = sum(s.completion.completion_tokens for s in samples if s.completion)
        verification_tokens = sum(sum(s.info.get("genrm", {}).get("tokens", [])) for s in samples)
        calls: dict[int, int] = {}
        for s in samples:  # a solution call's prompt is paid once, however many samples it gave
            if s.trace_id is not None:
                calls[s.trace_id] = int(s.info.get("call_prompt_tokens", 0))
        prompt_tokens = sum(calls.values()) + sum(s.info.get("genrm", {}).get("prompt_tokens", 0) for s in samples)
        generated = solution_tokens + verification_tokens
        return {
            "generated_tokens": generated,
            "solution_tokens": solution_tokens,
            "verification_tokens": verification_tokens,
            "prompt_tokens": prompt_tokens,
            "tokens": generated + prompt_tokens,
        }
