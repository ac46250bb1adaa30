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
    ) -> None:
        self.answers = list(answers)
        self.responder = responder
        self.completion_tokens = completion_tokens
        self.latency = latency
        self.capabilities = Capabilities(
            native_n=native_n, logprobs=logprobs, token_ids=True, exact_prompt_tokens=True
        )
        self._prices = usd_per_token or (0.0, 0.0)
        self._priced = usd_per_token is not None
        self.params = params
        self.failures = list(failures)
        self.misreport = misreport
        self.rng = random.Random(seed)
        self.name = name
        self.calls = 0
        self.requests: list[GenerationRequest] = []
        self._sample_index = 0

    @classmethod
    def from_spec(cls, rest: str, *, api_base: str | None = None, api_key: str | None = None, **options: Any) -> Scripted:
        """``scripted:A,B?latency=S&misreport=F``."""
        answers, _, query = rest.partition("?")
        for item in filter(None, query.split("&")):
            key, _, value = item.partition("=")
            if key not in ("latency", "misreport"):
                raise ConfigError(f"scripted backend option {key!r} unknown; only latency=SECONDS, misreport=FACTOR")
            options[key] = float(value)
        return cls(answers.split(",") if answers else ("42",), **options)

    def prices(self) -> tuple[float, float]:
        return self._prices

    @property
    def priced(self) -> bool:
        return self._priced

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        if request.prompt_token_ids is not None:
            return len(request.prompt_token_ids)
        return len(request.prompt_text().split()) + 4

    def _text(self, request: GenerationRequest, index: int) -> str:
        if self.responder is not None:
            return self.responder(request, index)
        answer = self.answers[index % len(self.answers)]
        return f"Let me think step by step. The result is \\boxed{{{answer}}}."

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
        for _ in range(request.n):
            text = self._text(request, self._sample_index)
            self._sample_index += 1
            tokens = self._tokens(text)
            finish = "stop"
            if tokens > request.max_tokens:
                # Like a real engine: cut the text, report exactly max_tokens.
                keep = max(1, len(text) * request.max_tokens // tokens)
                text, tokens, finish = text[:keep], request.max_tokens, "length"
            logprobs = [-self.rng.random() for _ in range(tokens)] if request.logprobs else None
            completions.append(Completion(text, tokens, finish, logprobs))
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
        )


class FlakyError(BackendError):
    """The error Scripted raises for injected failures in tests."""
