"""A deterministic backend for strategy logic and property tests.

It is never the only test of anything real: it stands in for a model so that voting,
budget enforcement and composition can be checked exactly and quickly.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any
from dataclasses import dataclass

from ..errors import BackendError, ConfigError
from ..types import Capabilities, Completion, GenerationRequest, GenerationResponse
from .base import Backend

Responder = Callable[[GenerationRequest, int], str]


@dataclass
class ScriptedFailure:
    """Raise ``error`` on the given call numbers (1-based): before any work, or with
    ``mid_call`` after the call's latency (the provider did the work, then the call failed)."""

    on_calls: frozenset[int]
    error: Exception
    mid_call: bool = False


class Scripted(Backend):
    """Answers from a script.

    ``answers`` cycles through final answers, each wrapped as ``"... \\boxed{a}"``;
    ``responder(request, index)`` overrides it with any text. Token counts are
    deterministic: prompt tokens = whitespace-separated words of the prompt (+ a fixed
    template cost), completion tokens = ``completion_tokens`` (an int or a callable of
    the text), clipped to max_tokens with finish_reason "length" as a real engine would.
    ``misreport`` multiplies the usage it reports (tokens, calls, USD; rounded), to stand in
    for an upstream that over-reports (> 1), under-reports (< 1) or reports negative usage.

    Stopping while sampling, modelled as an engine decoding all n samples in lockstep, one
    token each per step: ``confidences(text, index)`` scripts each sample's token confidences
    (default: uniform in [0.5, 1.5)), returned when ``top_logprobs`` is asked and used by a
    ``confidence_stop`` (the sample ends at ``ConfidenceStop.stops_at``, finish_reason
    "confidence", its text cut in proportion). ``stop_early`` sees samples finish shortest
    first; once it says stop, each sample still running keeps the tokens it had decoded by
    then (finish_reason "cancelled", text cut in proportion) and only those are reported.

    A ``score`` request (teacher-forced log-probabilities of a given text) returns
    ``scorer(request)``'s log-probabilities, one per whitespace-separated word of the scored
    text (default: -1.0 each); its words count as prompt tokens, none as completion tokens.
    """

    def __init__(
        self,
        answers: Sequence[str] = ("42",),
        *,
        responder: Responder | None = None,
        completion_tokens: int | Callable[[str], int] = 20,
        latency: float = 0.0,
        native_n: bool = True,
        logprobs: bool = True,
        usd_per_token: tuple[float, float] | None = (0.0, 0.0),  # None: an unpriced model
        params: int | None = None,
        failures: Sequence[ScriptedFailure] = (),
        misreport: float = 1.0,
        seed: int = 0,
        name: str = "scripted",
        prefix_cache: bool = True,
        confidences: Callable[[str, int], Sequence[float]] | None = None,
        confidence_stop: bool = True,
        early_stop: bool = True,
        scorer: Callable[[GenerationRequest], Sequence[float]] | None = None,
        load_seconds: float = 0.0,
    ) -> None:
        self.answers = list(answers)
        self.load_seconds = load_seconds  # how long load() takes, as an engine's start does
        self._loaded = False
        self.responder = responder
        self.completion_tokens = completion_tokens
        self.latency = latency
        self.capabilities = Capabilities(
            native_n=native_n, logprobs=logprobs, token_ids=True, exact_prompt_tokens=True,
            top_logprobs=20 if logprobs else 0, confidence_stop=confidence_stop, early_stop=early_stop,
            score=logprobs,
        )
        self.scorer = scorer
        self.confidences = confidences
        self._prices = usd_per_token or (0.0, 0.0)
        self._priced = usd_per_token is not None
        self.params = params
        self.failures = list(failures)
        self.misreport = misreport
        self.rng = random.Random(seed)
        self.name = name
        self.prefix_cache = prefix_cache  # token-id prompts report the prefix seen before as cached
        self._seen: list[list[int]] = []
        self.calls = 0
        self.requests: list[GenerationRequest] = []
        self._sample_index = 0

    @classmethod
    def from_spec(cls, rest: str, *, api_base: str | None = None, api_key: str | None = None, **options: Any) -> Scripted:
        """``scripted:A,B?latency=S&misreport=F&load=S``."""
        answers, _, query = rest.partition("?")
        for item in filter(None, query.split("&")):
            key, _, value = item.partition("=")
            if key not in ("latency", "misreport", "load"):
                raise ConfigError(f"scripted backend option {key!r} unknown; only latency=SECONDS, misreport=FACTOR, "
                                  "load=SECONDS")
            options["load_seconds" if key == "load" else key] = float(value)
        return cls(answers.split(",") if answers else ("42",), **options)

    async def load(self) -> None:
        if self.load_seconds and not self._loaded:  # once, as an engine starts once
            self._loaded = True
            await asyncio.sleep(self.load_seconds)

    def prices(self) -> tuple[float, float]:
        return self._prices

    @property
    def priced(self) -> bool:
        return self._priced

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        if request.prompt_token_ids is not None:
            return len(request.prompt_token_ids)
        if request.score is not None:  # the scored text's words are prompt tokens too
            return self.count_prompt_tokens(request.replace(score=None)) + len(request.score.split())
        return len(request.prompt_text().split()) + 4

    def _text(self, request: GenerationRequest, index: int) -> str:
        if self.responder is not None:
            return self.responder(request, index)
        answer = self.answers[index % len(self.answers)]
        return f"Let me think step by step. The result is \\boxed{{{answer}}}."

    # A toy character-level tokenizer, so token-id continuations work here as on vLLM: the
    # prompt is rendered as "<role>content" turns, one token per character.
    @staticmethod
    def encode(text: str) -> list[int]:
        return [ord(c) for c in text]

    @staticmethod
    def decode(ids: Sequence[int]) -> str:
        return "".join(chr(i) for i in ids)

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        if request.prompt_token_ids is not None:
            return list(request.prompt_token_ids)
        if request.messages is None:
            return self.encode(request.prompt or "")
        rendered = "".join(f"<{m.role}>{m.content}" for m in request.messages)
        return self.encode(rendered if request.continue_final_message else rendered + "<assistant>")

    def continuation(self, request: GenerationRequest) -> str:
        """The assistant text a request continues ("" for a fresh answer): what a responder
        of a step-wise search looks at."""
        rendered = self.decode(self.prompt_ids(request))
        return rendered.rpartition("<assistant>")[2]

    def _cached(self, ids: list[int]) -> int:
        """Longest prefix of ``ids`` seen before (prompts and what was generated after them)."""
        best = 0
        for seen in self._seen:
            common = 0
            for a, b in zip(seen, ids):
                if a != b:
                    break
                common += 1
            best = max(best, common)
        return best

    def _tokens(self, text: str) -> int:
        if callable(self.completion_tokens):
            return self.completion_tokens(text)
        return self.completion_tokens

    async def generate(self, request: GenerationRequest) -> GenerationResponse:
        self.check_supported(request)
        copies = 1 if self.capabilities.native_n else request.n
        mid_call: ScriptedFailure | None = None
        for _ in range(copies):
            self.calls += 1
            for failure in self.failures:
                if self.calls in failure.on_calls:
                    if not failure.mid_call:
                        raise failure.error
                    mid_call = mid_call or failure
        self.requests.append(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        if mid_call is not None:
            raise mid_call.error
        completions = []
        if request.score is not None:
            words = len(request.score.split())
            scored = [float(x) for x in self.scorer(request)] if self.scorer is not None else [-1.0] * words
            if len(scored) != words:
                raise ConfigError(f"the scripted scorer gave {len(scored)} log-probabilities for {words} words")
            completions.append(Completion(request.score, 0, "stop", scored, self.encode(request.score)))
        for _ in range(request.n if request.score is None else 0):
            index = self._sample_index
            text = self._text(request, index)
            self._sample_index += 1
            stop_sequence = None
            hits = [(text.find(s), s) for s in request.stop if s and s in text]
            if hits:  # the earliest stop string ends the sample, as on a real engine
                at, stop_sequence = min(hits)
                text = text[: at + (len(stop_sequence) if request.include_stop else 0)]
            tokens = self._tokens(text)
            finish = "stop"
            if tokens > request.max_tokens:
                # Like a real engine: cut the text, report exactly max_tokens.
                keep = max(1, len(text) * request.max_tokens // tokens)
                text, tokens, finish, stop_sequence = text[:keep], request.max_tokens, "length", None
            logprobs = [-self.rng.random() for _ in range(tokens)] if request.logprobs else None
            confidences = None
            if request.top_logprobs or request.confidence_stop is not None:
                confidences = self._confidences(text, index, tokens)
                at = request.confidence_stop.stops_at(confidences) if request.confidence_stop is not None else None
                if at is not None:
                    keep = at + 1
                    text, tokens, finish, stop_sequence = _cut(text, keep, tokens), keep, "confidence", None
                    confidences = confidences[:keep]
                    logprobs = logprobs[:keep] if logprobs is not None else None
            completions.append(Completion(text, tokens, finish, logprobs, self.encode(text), stop_sequence,
                                          confidences if request.top_logprobs else None))
        if request.stop_early is not None and self.capabilities.early_stop:
            completions = _stopped_early(completions, request.stop_early, self.encode)
        prompt_ids = self.prompt_ids(request)
        cached = 0
        if request.prompt_token_ids is not None and self.prefix_cache:
            cached = self._cached(prompt_ids) * copies
            self._seen.append(prompt_ids)
            self._seen.extend(prompt_ids + c.token_ids for c in completions)
        prompt = self.count_prompt_tokens(request) * copies
        completion = sum(c.completion_tokens for c in completions)
        prompt_price, completion_price = self._prices
        scale = self.misreport
        return GenerationResponse(
            completions=completions,
            prompt_tokens=round(prompt * scale),
            completion_tokens=round(completion * scale),
            calls=round(copies * scale),
            usd=(prompt * prompt_price + completion * completion_price) * scale,
            info={"backend": self.name},
            cached_prompt_tokens=round(cached * scale),
            prompt_token_ids=prompt_ids,
        )


    def _confidences(self, text: str, index: int, tokens: int) -> list[float]:
        if self.confidences is None:
            return [0.5 + self.rng.random() for _ in range(tokens)]
        scripted = [float(c) for c in self.confidences(text, index)]
        return (scripted + [scripted[-1] if scripted else 1.0] * tokens)[:tokens]


def _cut(text: str, keep: int, tokens: int) -> str:
    return text[: max(0, len(text) * keep // max(1, tokens))]


def _stopped_early(completions: list[Completion], decided: Callable[[Sequence[Completion]], bool],
                   encode: Callable[[str], list[int]]) -> list[Completion]:
    """Lockstep decoding: samples finish shortest first (ties in index order); once ``decided``
    says stop, the ones still running keep the tokens decoded by that step."""
    order = sorted(range(len(completions)), key=lambda i: (completions[i].completion_tokens, i))
    finished: list[Completion] = []
    for rank, i in enumerate(order):
        finished.append(completions[i])
        if decided(finished):
            step = completions[i].completion_tokens
            for j in order[rank + 1:]:
                c = completions[j]
                if c.completion_tokens > step:  # still running at that step
                    text = _cut(c.text, step, c.completion_tokens)
                    completions[j] = Completion(
                        text, step, "cancelled",
                        c.token_logprobs[:step] if c.token_logprobs is not None else None,
                        encode(text), None, c.token_confidences[:step] if c.token_confidences is not None else None,
                    )
            break
    return completions


class FlakyError(BackendError):
    """The error Scripted raises for injected failures in tests."""
