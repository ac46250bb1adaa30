"""Early-stop self-consistency: vote in waves, stop once the vote is decided (Adaptive-Consistency 2023),
with an optional DeepConf-style offline confidence filter (a variant of DeepConf's, see below).

After Aggarwal et al. 2023, "Let's Sample Step by Step: Adaptive-Consistency for Efficient
Reasoning and Coding with LLMs". Samples are drawn in waves of ``wave`` (one batched call
each), never more than ``max_n`` in all. After each wave the majority vote of the samples so
far (``strategies.voting.majority``) is checked, and sampling stops when either:

* **decided** (exact): the leader cannot be overtaken even if every remaining sample
  (``max_n`` minus those drawn) voted for one challenger, an answer not seen yet included;
  a tie goes to the answer seen first, as in ``majority``. Without filtering, the answer is
  then exactly the one all ``max_n`` samples would have voted for;
* **confident** (``confidence``, None to disable): the Beta stopping rule of
  Adaptive-Consistency. With a uniform Dirichlet prior over answers, the posterior of the
  answer probabilities given the vote counts is Dirichlet(counts + 1), and the leader's
  share among the top two, p1 / (p1 + p2), is then Beta(v1 + 1, v2 + 1) whatever the other
  answers (Dirichlet aggregation). The rule stops when P(p1 > p2) >= ``confidence``. It is an
  approximation in that it compares the leader with the runner-up only. For integer counts
  P(Beta(a, b) > 1/2) = P(Binomial(a + b - 1, 1/2) <= a - 1), computed exactly with
  ``math.comb`` (no scipy). Unanimous samples give P = 1 - 1/2^(v1+1): 4 of them pass 0.95.

Otherwise it stops at ``max_n`` or when the budget refuses a wave (a wave shrunk by the budget
still counts; the answer is the vote of whatever was drawn).

In flight (``in_flight``, the default, on backends with ``Capabilities.early_stop``: vLLM, the
OpenAI-compatible backend, the local backend): instead of waves, all ``max_n`` samples start at once in one call
and the two rules are checked each time a sample finishes, with every sample not finished yet
counted as still to vote, and a tie counted as a loss for the leader: the final vote reads the
samples in their order, not in the order they finished, so a tie could go either way (so
"decided" stays exact). Once a rule fires, the samples still
running are aborted (the engine request is aborted / the streams closed); only the tokens they
had decoded are charged, and ``info["cancelled"]`` counts them. Samples finish shortest first,
so the vote at the stop is over the samples that finished first, not over a random wave: a
bias towards short answers that waves do not have (its_hub's adaptive self-consistency, which
cancels in-flight requests the same way, has it too). The waves are kept for backends that
cannot abort (every sample would run to its end anyway) and with ``in_flight=False``.

DeepConf-style offline filter, a variant (``drop_low_confidence``; the faithful method is the
``deepconf`` strategy = fraction, 0 = off, the
default: then this is Adaptive-Consistency alone). After Fu et al. 2025, "Deep Think with
Confidence" (official code: ``facebookresearch/deepconf``). When the backend returns token
logprobs, a trace's confidence is its *lowest group confidence*: the lowest mean token
confidence over any ``window`` consecutive tokens (the whole trace if shorter). Before every
vote the floor(fraction x scored) least confident traces are dropped (ties drop the later
sample); with ``confidence_weighted`` (the default, as in DeepConf's offline vote) each kept
trace then votes with weight exp(its confidence), the geometric-mean probability of its
sampled tokens over its least confident window. Traces without logprobs are kept, with
weight 1. The stopping rules read the kept traces' unweighted counts; with filtering, a
later wave can change which earlier traces are dropped, so "decided" is exact only without
it. DeepConf's offline mode is one wave of all traces: ``wave=max_n, confidence=None``;
``drop_low_confidence=0.9`` is DeepConf-low (keep the top 10 %), ``0.1`` DeepConf-high (top 90 %).

What differs from DeepConf (paper and official code), and why:

=====================  ================================================  ==========================================
                       DeepConf                                          here
=====================  ================================================  ==========================================
token confidence       C_i = -(1/k) sum_j log P_i(j) over the top-k      the sampled token's logprob: the backends
                       candidates, k = 20 (``logprobs=20`` in vLLM)      return no top-k lists (documented gap)
trace confidence       lowest group confidence, windows of 2,048         the same rule on our token confidence;
                       tokens (also bottom-10 % groups, tail)            ``window`` 2,048 by default
filter                 keep traces >= the (100 - eta)-th percentile,     drop floor(fraction x scored), the least
                       eta = 10 % (low) or 90 % (high)                   confident first (rounding differs)
vote                   weighted by the trace's confidence among kept     weighted by exp(confidence): ours is a
                                                                         logprob (<= 0), so it is mapped to (0, 1]
online mode            16 warm-up traces set the threshold: the          not here: the vote stops sampling
                       (100 - eta)-th percentile of their confidences    (Adaptive-Consistency), never a trace's
                       (90th for DeepConf-low); a trace stops when a     confidence. DeepConf itself, online and
                       window falls below it                             offline, is the ``deepconf`` strategy
=====================  ================================================  ==========================================

``Outcome.info``: ``n`` (samples drawn), ``waves``, ``stop`` (decided | confident | max_n |
budget), the vote (``votes``, ``share``; weighted when the filter weights them), ``p_leader``
(the Beta posterior of the unweighted counts at the stop) and per-wave ``history``; with
filtering, ``dropped``, ``confidences`` and, weighted, ``weights`` (of the kept traces).
Tokens saved against full self-consistency are the benchmark's to compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from reasoning.context import Context, Sample
from pydantic import Field, model_validator

from reasoning.strategy import MaxTokens, Outcome, Strategy, Temperature

from .deepconf import lowest_group_confidence  # the one sliding-window rule (DeepConf's)
from .registry import register
from .voting import majority


def leader_is_safe(tally: dict[str, float], remaining: int, ties_to_first: bool = True) -> bool:
    """True when no way of casting ``remaining`` more votes can change the majority winner.

    ``tally`` is in first-seen order (as ``majority`` builds it); ties go to the earlier answer.
    ``ties_to_first=False``: the final vote will see the samples in another order than this
    tally did (in flight they finish out of order), so a tie is not safe either.
    """
    if not tally:
        return False
    order = list(tally)
    leader = max(order, key=tally.__getitem__)
    lead = tally[leader]
    for key in order:
        if key == leader:
            continue
        challenger = tally[key] + remaining
        if challenger > lead or (challenger == lead and (not ties_to_first or order.index(key) < order.index(leader))):
            return False
    # An answer not seen yet would come after the leader: it must beat it outright.
    return remaining <= lead if ties_to_first else remaining < lead


def p_leader_ahead(tally: dict[str, float]) -> float:
    """Posterior P(p_leader > p_runner_up) under a uniform Dirichlet prior (see module docstring)."""
    counts = sorted(tally.values(), reverse=True)
    if not counts:
        return 0.0
    v1 = round(counts[0])
    v2 = round(counts[1]) if len(counts) > 1 else 0
    trials = v1 + v2 + 1  # Beta(v1 + 1, v2 + 1): P(X > 1/2) = P(Binomial(v1 + v2 + 1, 1/2) <= v1)
    return sum(math.comb(trials, k) for k in range(v1 + 1)) / 2**trials


def confidence_weights(samples: Sequence[Sample], window: int) -> list[float]:
    """Each sample's vote weight: exp(lowest group confidence), in (0, 1]; 1 without logprobs."""
    return [
        math.exp(lowest_group_confidence(s.completion.token_logprobs, window))
        if s.completion is not None and s.completion.token_logprobs
        else 1.0
        for s in samples
    ]


def drop_least_confident(
    samples: list[Sample], fraction: float, window: int
) -> tuple[list[Sample], list[float | None]]:
    """(kept samples in their order, each sample's confidence or None when it has no logprobs)."""
    confidences = [
        lowest_group_confidence(s.completion.token_logprobs, window)
        if s.completion is not None and s.completion.token_logprobs
        else None
        for s in samples
    ]
    scored = [i for i, c in enumerate(confidences) if c is not None]
    # Least confident first; among equals the later sample goes first.
    ranked = sorted(scored, key=lambda i: (confidences[i], -i))
    dropped = set(ranked[: math.floor(fraction * len(scored))])
    return [s for i, s in enumerate(samples) if i not in dropped], confidences


@register("early-stop-sc")
class EarlyStopSC(Strategy):
    size_option = "max_n"

    max_n: int = Field(16, ge=1, description="most samples drawn")
    wave: int = Field(4, ge=1, description="samples drawn per wave, between stopping checks")
    confidence: float | None = Field(0.95, gt=0.5, lt=1, description="stop once the leader's posterior probability "
                                     "of staying ahead reaches this (None: only when it can no longer lose)")
    drop_low_confidence: float = Field(0.0, ge=0, lt=1, description="fraction of lowest-confidence traces left out of the vote")
    window: int = Field(2048, ge=1, description="tokens in the sliding window of a trace's confidence (DeepConf: 2,048)")
    confidence_weighted: bool = Field(True, description="with the filter on, weight each kept trace's vote by "
                                      "exp(its confidence), as DeepConf's confidence-weighted vote")
    in_flight: bool = Field(True, description="on backends that can abort samples: start all max_n at once, check "
                            "the rules as each finishes and abort the rest (else waves)")
    max_tokens: MaxTokens = None
    temperature: Temperature = None

    @model_validator(mode="after")
    def _one_wave_at_most(self) -> EarlyStopSC:
        self.wave = min(self.wave, self.max_n)  # `--n 2` with the default wave of 4: one wave of 2
        return self

    def _check(self, samples: list[Sample], filtering: bool, in_flight: bool = False) -> tuple[str | None, dict]:
        """The stopping rules over ``samples`` (drawn so far): (the rule that fires or None, history row)."""
        voters = drop_least_confident(samples, self.drop_low_confidence, self.window)[0] if filtering else samples
        tally = majority(voters).tally
        p = p_leader_ahead(tally)
        row = {"n": len(samples), "votes": dict(tally), "p_leader": p}
        if len(samples) >= self.max_n:
            return None, row
        if leader_is_safe(tally, self.max_n - len(samples), ties_to_first=not in_flight):
            return "decided", row
        if self.confidence is not None and tally and p >= self.confidence:
            return "confident", row
        return None, row

    async def _in_flight(self, ctx: Context, filtering: bool) -> tuple[list[Sample], list[dict], str]:
        history: list[dict] = []
        fired: list[str] = []

        def decided(finished: list[Sample]) -> bool:
            rule, row = self._check(finished, filtering, in_flight=True)
            history.append(row)
            if rule is not None:
                fired.append(rule)
            return rule is not None

        drawn = await ctx.generate(n=self.max_n, max_tokens=self.max_tokens, temperature=self.temperature,
                                   logprobs=filtering, name="in-flight", stop_early=decided)
        if not drawn:
            return [], history, "budget"
        finished = [s for s in drawn if s.completion is None or s.completion.finish_reason != "cancelled"]
        stop = fired[0] if fired else ("max_n" if len(finished) >= self.max_n else "budget")
        return drawn, history, stop

    async def run(self, ctx: Context) -> Outcome:
        filtering = self.drop_low_confidence > 0 and ctx.backend.capabilities.logprobs
        if self.in_flight and ctx.backend.capabilities.early_stop:
            drawn, history, stop = await self._in_flight(ctx, filtering)
            samples = [s for s in drawn if s.completion is None or s.completion.finish_reason != "cancelled"]
            cancelled = len(drawn) - len(samples)
            return self._outcome(samples, history, stop, filtering,
                                 {"in_flight": True, "cancelled": cancelled,
                                  "cancelled_tokens": sum(s.completion.completion_tokens for s in drawn
                                                          if s.completion is not None
                                                          and s.completion.finish_reason == "cancelled")})
        samples: list[Sample] = []
        history: list[dict] = []
        stop = "max_n"
        while len(samples) < self.max_n:
            drawn = await ctx.generate(
                n=min(self.wave, self.max_n - len(samples)), max_tokens=self.max_tokens,
                temperature=self.temperature, logprobs=filtering, name=f"wave-{len(history) + 1}",
            )
            if not drawn:
                stop = "budget"
                break
            samples += drawn
            rule, row = self._check(samples, filtering)
            history.append(row)
            if rule is not None:
                stop = rule
                break
        return self._outcome(samples, history, stop, filtering, {})

    def _outcome(self, samples: list[Sample], history: list[dict], stop: str, filtering: bool, extra: dict) -> Outcome:
        info: dict = {"n": len(samples), "waves": len(history), "stop": stop, "history": history, **extra}
        voters = samples
        weights = None
        if filtering:
            voters, confidences = drop_least_confident(samples, self.drop_low_confidence, self.window)
            info.update(dropped=len(samples) - len(voters), confidences=confidences)
            if self.confidence_weighted:
                weights = confidence_weights(voters, self.window)
                info["weights"] = weights
        elif self.drop_low_confidence > 0:
            info["dropped"] = "not filtered: the backend returns no logprobs"
        vote = majority(voters, weights)
        info.update(votes=vote.tally, share=vote.share, p_leader=p_leader_ahead(majority(voters).tally))
        return Outcome(vote.answer, vote.sample.text if vote.sample else None, samples, info)
