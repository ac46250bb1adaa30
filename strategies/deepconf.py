"""DeepConf: vote over confident traces only, and stop weak traces while they run.

After Fu, Wang, Tian, Zhao 2025, "Deep Think with Confidence" (arXiv 2508.15260; official
code ``facebookresearch/deepconf``: ``deepconf/wrapper.py``, ``processors.py``, ``utils.py``).

**Token confidence** C_i = -(1/k) sum_j log P_i(j) over the k = ``top_k`` (20) most likely
tokens at step i: high when the model's next-token distribution is peaked. A trace's **group
confidences** are the means of C over every ``window`` consecutive tokens (2,048 in the
paper; a trace shorter than the window has one group, all its tokens); its **lowest group
confidence** (``min_conf``) is the trace's confidence.

**Online** (``mode="online"``, the default, the paper's Algorithm 2 as the official code runs
it): ``warmup`` traces (16) are sampled in full; the threshold s is the (100 - ``keep_percent``)
-th percentile of their lowest group confidences (``keep_percent`` = 10: DeepConf-low, s is
the 90th percentile; 90: DeepConf-high, the 10th). The other ``n - warmup`` traces are then
sampled with a ``ConfidenceStop(s, window, top_k)``: a trace whose group confidence over its
last ``window`` tokens falls below s is ended there (on vLLM inside the engine, as the
official logits processor does: that step emits end of sequence, nothing is decoded after the
decision). The vote is the official one: warm-up traces whose lowest group confidence is >= s
and online traces that were not stopped and whose lowest group confidence is >= s (a trace
shorter than a window cannot be stopped but can fall below s), each weighted by it.
``consensus`` (the paper's adaptive sampling, tau = 0.95; off by default, as in the official
code) also aborts the online traces still running once the leader's weighted share among
the voters reaches it (in-flight cancellation: their partial tokens are charged).

**Offline** (``mode="offline"``): all ``n`` traces in full; keep those whose lowest group
confidence is >= the (100 - ``keep_percent``)-th percentile of all, and vote weighted by it.

Needs token confidences (``Capabilities.top_logprobs`` >= ``top_k``: vLLM, the OpenAI-compatible
backend, the local backend, Scripted) and, online, a backend that stops on confidence while sampling
(``Capabilities.confidence_stop``: vLLM built with ``confidence_stop=True``, the OpenAI-compatible
backend, the local backend, Scripted); anything else is refused with a clear error.

Differences from the paper and the official code, all visible in ``Outcome.info``:
- The paper's models write 10k-60k-token traces, where a 2,048-token window fits many times.
  A GSM8K answer of a 0.5B model is ~250 tokens: with ``window=2048`` no online trace could
  ever be stopped (the rule waits for a full window), so benchmarks here set ``window`` to the
  traces' scale and say so; the default stays the paper's.
- With chunked prefill the official per-request processor may see a step whose token is then
  discarded; ours counts the same steps (prompts here are short enough that this never happens).
- Defaults n = 256, warmup = 16, keep_percent = 10, window = 2048, top_k = 20 are the official
  code's; its sampling (temperature 0.6, top-p 0.95) is the run's to set (``--temperature``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from reasoning.context import Context, Sample
from reasoning.errors import ConfigError
from reasoning.strategy import MaxTokens, Outcome, Strategy, Temperature
from reasoning.types import ConfidenceStop

from .registry import register
from .voting import majority


def group_confidences(confidences: Sequence[float], window: int) -> list[float]:
    """Mean token confidence of every ``window`` consecutive tokens (one group, all of them,
    when the trace is shorter), as the official ``compute_least_grouped``."""
    if not confidences:
        return []
    if len(confidences) < window:
        return [sum(confidences) / len(confidences)]
    total = sum(confidences[:window])
    means = [total / window]
    for i in range(window, len(confidences)):
        total += confidences[i] - confidences[i - window]
        means.append(total / window)
    return means


def lowest_group_confidence(confidences: Sequence[float], window: int) -> float | None:
    groups = group_confidences(confidences, window)
    return min(groups) if groups else None


def percentile(values: Sequence[float], q: float) -> float:
    """numpy's default (linear) percentile, q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of nothing")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def trace_confidence(sample: Sample, window: int) -> float | None:
    completion = sample.completion
    if completion is None or not completion.token_confidences:
        return None
    return lowest_group_confidence(completion.token_confidences, window)


@register("deepconf")
class DeepConf(Strategy):
    n: int = Field(256, ge=1, description="traces in all, warm-up included (the official online code: 256)")
    mode: Literal["online", "offline"] = Field("online", description="online: warm-up sets a threshold, later "
                                               "traces stop below it; offline: filter complete traces")
    warmup: int = Field(16, ge=1, description="online: traces sampled in full to set the threshold")
    keep_percent: float = Field(10, gt=0, le=100, description="eta: 10 = DeepConf-low (threshold at the 90th "
                                "percentile), 90 = DeepConf-high (the 10th)")
    window: int = Field(2048, ge=1, description="tokens per confidence group (the paper: 2,048)")
    top_k: int = Field(20, ge=1, le=20, description="top candidates in a token's confidence (the paper: 20)")
    consensus: float | None = Field(None, gt=0.5, le=1, description="online: abort the traces still running "
                                    "once the leader's weighted share reaches this (the paper's tau: 0.95)")
    max_tokens: MaxTokens = None
    temperature: Temperature = None

    @model_validator(mode="after")
    def _warmup_fits(self) -> DeepConf:
        self.warmup = min(self.warmup, self.n)
        return self

    async def run(self, ctx: Context) -> Outcome:
        caps = ctx.backend.capabilities
        if caps.top_logprobs < self.top_k:
            raise ConfigError(f"deepconf needs {self.top_k} top logprobs per token; {ctx.backend.name} returns "
                              f"{caps.top_logprobs} (use vLLM, an OpenAI-compatible server, or lower top_k)")
        if self.mode == "offline":
            return await self._offline(ctx)
        if not caps.confidence_stop:
            raise ConfigError(f"deepconf online needs a backend that stops traces while they run; "
                              f"{ctx.backend.name} cannot (on vLLM build the backend with confidence_stop=True, "
                              f"--backend 'vllm:PATH?confidence_stop=1'; else use mode='offline')")
        return await self._online(ctx)

    def _draw(self, ctx: Context, n: int, name: str, **options):
        return ctx.generate(n=n, max_tokens=self.max_tokens, temperature=self.temperature,
                            top_logprobs=self.top_k, name=name, **options)

    async def _offline(self, ctx: Context) -> Outcome:
        samples = await self._draw(ctx, self.n, "traces")
        confidences = [trace_confidence(s, self.window) for s in samples]
        scored = [c for c in confidences if c is not None]
        threshold = percentile(scored, 100 - self.keep_percent) if scored else None
        voters = [(s, c) for s, c in zip(samples, confidences, strict=True)
                  if c is not None and threshold is not None and c >= threshold]
        return self._outcome(samples, voters, {"mode": "offline", "threshold": threshold,
                                               "min_conf": confidences, "stopped": [False] * len(samples)})

    async def _online(self, ctx: Context) -> Outcome:
        warm = await self._draw(ctx, self.warmup, "warmup")
        warm_conf = [trace_confidence(s, self.window) for s in warm]
        scored = [c for c in warm_conf if c is not None]
        if not scored:  # refused by the budget, or nothing came back with confidences
            return self._outcome(warm, [], {"mode": "online", "threshold": None, "min_conf": warm_conf,
                                            "stopped": [False] * len(warm), "warmup": len(warm)})
        threshold = percentile(scored, 100 - self.keep_percent)
        voters = [(s, c) for s, c in zip(warm, warm_conf, strict=True) if c is not None and c >= threshold]
        online: list[Sample] = []
        if self.n > self.warmup:
            decided = None
            if self.consensus is not None:
                kept = list(voters)

                def decided(finished: list[Sample]) -> bool:
                    ballots = kept + self._voters(finished, threshold)
                    vote = majority([s for s, _ in ballots], [c for _, c in ballots])
                    return vote.share >= self.consensus

            online = await self._draw(ctx, self.n - self.warmup, "online", stop_early=decided,
                                      confidence_stop=ConfidenceStop(threshold, self.window, self.top_k))
            voters += self._voters(online, threshold)
        samples = warm + online
        info = {
            "mode": "online", "threshold": threshold, "warmup": len(warm),
            "min_conf": warm_conf + [trace_confidence(s, self.window) for s in online],
            "stopped": [False] * len(warm) + [s.completion is not None and s.completion.finish_reason == "confidence"
                                              for s in online],
            "cancelled": sum(s.completion is not None and s.completion.finish_reason == "cancelled" for s in online),
        }
        return self._outcome(samples, voters, info)

    def _voters(self, online: Sequence[Sample], threshold: float) -> list[tuple[Sample, float]]:
        """Online traces that ran to their end (not stopped, not aborted) with a lowest group
        confidence >= the threshold, with that confidence. The official code leaves out every
        online trace below it, also one shorter than a window, which the engine cannot stop."""
        kept = []
        for sample in online:
            if sample.completion is None or sample.completion.finish_reason in ("confidence", "cancelled"):
                continue
            confidence = trace_confidence(sample, self.window)
            if confidence is not None and confidence >= threshold:
                kept.append((sample, confidence))
        return kept

    def _outcome(self, samples: list[Sample], voters: list[tuple[Sample, float]], info: dict) -> Outcome:
        vote = majority([s for s, _ in voters], [c for _, c in voters])
        voted = {id(s) for s, _ in voters}
        info.update(
            n=len(samples), voters=len(voters), votes=vote.tally, share=vote.share,
            tokens=[s.completion.completion_tokens if s.completion else 0 for s in samples],
            answers=[s.answer for s in samples],
            voted=[id(s) in voted for s in samples],  # per sample: in the vote, or filtered / stopped
        )
        return Outcome(vote.answer, vote.sample.text if vote.sample else None, samples, info)
