"""Value types shared by backends, the ledger and strategies.

Plain dataclasses: they sit on the hot path (one per backend call / sample), so no
validation overhead here; pydantic lives at the edges (config, results, server).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from collections.abc import Callable, Sequence
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
# "confidence": stopped by the request's ConfidenceStop (its group confidence fell below the
# threshold); "cancelled": aborted in flight (deadline, or the request's ``stop_early`` decided).
FinishReason = Literal["stop", "length", "confidence", "cancelled", "error"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class ConfidenceStop:
    """Stop a sample while it runs once its *group confidence* falls below ``threshold``
    (DeepConf online, Fu et al. 2025). A token's confidence is C = -(1/k) sum of the log
    probabilities of the k most likely next tokens (k = ``top_k``), computed from the model's
    distribution at that step (high when it is peaked); the group confidence is the mean C of
    the last ``window`` tokens, checked once ``window`` tokens exist. The step at which it
    first falls below ``threshold`` emits end of sequence instead of its token, so nothing is
    decoded after the decision (vLLM: in the engine; HTTP servers: the stream is closed)."""

    threshold: float
    window: int = 2048
    top_k: int = 20

    def __post_init__(self) -> None:
        if self.window < 1 or self.top_k < 1:
            raise ValueError(f"ConfidenceStop needs window >= 1 and top_k >= 1, got {self.window}, {self.top_k}")
        if self.threshold != self.threshold:
            raise ValueError("ConfidenceStop threshold is not a number")

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "window": self.window, "top_k": self.top_k}

    def stops_at(self, confidences: Sequence[float]) -> int | None:
        """The index of the first token at which this rule stops a sample with these token
        confidences (that token is replaced by end of sequence), or None."""
        window, total = self.window, 0.0
        for i, c in enumerate(confidences):
            total += c
            if i >= window:
                total -= confidences[i - window]
            if i + 1 >= window and total / window < self.threshold:
                return i
        return None


def token_confidence(top_logprobs: Sequence[float]) -> float:
    """DeepConf's token confidence: minus the mean log probability of the top-k candidates."""
    return -sum(top_logprobs) / len(top_logprobs) if top_logprobs else 0.0


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One declarative request to a backend: a prompt and how to sample from it.

    Exactly one of ``messages`` (chat), ``prompt`` (raw text, no chat template) or
    ``prompt_token_ids`` (exact tokens, for prefix-sharing continuations) is set.
    A backend that cannot honour a field (e.g. token ids over an HTTP API) raises
    ``UnsupportedRequest`` instead of silently ignoring it.
    """

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    n: int = 1
    max_tokens: int = 1024
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    # Continue the last assistant message instead of starting a new turn.
    continue_final_message: bool = False
    # Keep the stop string that ended a sample at the end of its text and token ids, so that a
    # continuation from text and one from token ids see the same thing (tree search does).
    include_stop: bool = False
    # Return each token's confidence (Completion.token_confidences) from the top ``top_logprobs``
    # candidates of its step (DeepConf uses 20); 0: not asked.
    top_logprobs: int = 0
    # Stop a sample once its group confidence falls below a threshold (DeepConf online).
    confidence_stop: ConfidenceStop | None = None
    # Called with the samples finished so far (in finishing order) each time one finishes; once
    # it returns True the samples still running are aborted and come back with finish_reason
    # "cancelled", their partial tokens counted. Backends without ``Capabilities.early_stop``
    # ignore it (every sample runs to its end). Not part of the request's identity (cache keys,
    # traces): it decides when to stop reading, not what is sampled.
    stop_early: Callable[[Sequence[Completion]], bool] | None = field(default=None, compare=False)
    # Score this text instead of sampling: it is fed (teacher-forced) as the continuation of the
    # prompt (the assistant's reply, or the rest of the final assistant message with
    # ``continue_final_message``) and the one Completion returned has it as its text, the
    # model's log-probability of each of its tokens as ``token_logprobs`` and no completion
    # tokens: its tokens are prompt tokens (prefill). ATTS's target scores drafts this way.
    # Backends with ``Capabilities.score``; n must be 1.
    score: str | None = None
    # Which problem the request belongs to (``Context`` sets it on every call of one solve), so
    # that a backend with several replicas sends all of a problem's samples and continuations
    # to one server, whose prefix cache then serves them. A routing hint: not part of the
    # request's identity (cache keys, traces, equality), ignored by single-server backends.
    affinity: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.messages, self.prompt, self.prompt_token_ids))
        if given != 1:
            raise ValueError("GenerationRequest needs exactly one of messages, prompt, prompt_token_ids")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_logprobs < 0:
            raise ValueError(f"top_logprobs must be >= 0, got {self.top_logprobs}")
        if self.score is not None and self.n != 1:
            raise ValueError(f"a score request scores one text: n must be 1, got {self.n}")

    def replace(self, **changes: Any) -> GenerationRequest:
        return dataclasses.replace(self, **changes)

    def to_dict(self, *, prompt_token_ids: bool = True) -> dict[str, Any]:
        """The request as plain data; ``prompt_token_ids=False`` leaves its token ids out
        (a trace node of a continuation names its prefix instead of copying them)."""
        data = {
            "n": self.n,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": list(self.stop),
            "seed": self.seed,
            "logprobs": self.logprobs,
        }
        if self.messages is not None:
            data["messages"] = [m.to_dict() for m in self.messages]
        if self.prompt is not None:
            data["prompt"] = self.prompt
        if self.prompt_token_ids is not None and prompt_token_ids:
            data["prompt_token_ids"] = list(self.prompt_token_ids)
        if self.continue_final_message:
            data["continue_final_message"] = True
        if self.include_stop:
            data["include_stop"] = True
        if self.top_logprobs:
            data["top_logprobs"] = self.top_logprobs
        if self.confidence_stop is not None:
            data["confidence_stop"] = self.confidence_stop.to_dict()
        if self.score is not None:
            data["score"] = self.score
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        data = dict(data)
        if data.get("messages") is not None:
            data["messages"] = tuple(Message(**m) for m in data["messages"])
        if data.get("prompt_token_ids") is not None:
            data["prompt_token_ids"] = tuple(data["prompt_token_ids"])
        data["stop"] = tuple(data.get("stop") or ())
        if data.get("confidence_stop") is not None:
            data["confidence_stop"] = ConfidenceStop(**data["confidence_stop"])
        return cls(**data)

    def prompt_text(self) -> str:
        """All prompt text, for byte-based token bounds and cache keys (a scored text included:
        its tokens are prompt tokens)."""
        if self.messages is not None:
            return "".join(m.content for m in self.messages) + (self.score or "")
        return (self.prompt or "") + (self.score or "")


@dataclass(slots=True)
class Completion:
    text: str
    completion_tokens: int
    finish_reason: FinishReason = "stop"
    # Log-probability of each sampled token, when the backend can give them.
    token_logprobs: list[float] | None = None
    token_ids: list[int] | None = None
    # The stop string that ended it (finish_reason "stop"); None: end of sequence, or unknown.
    stop_sequence: str | None = None
    # DeepConf token confidence of each token (see ``token_confidence``), when asked for
    # (``GenerationRequest.top_logprobs``) and the backend can give it.
    token_confidences: list[float] | None = None

    @property
    def stop_reason(self) -> str:
        """Why it ended: ``"length"``, ``"eos"`` (end of sequence: the model finished), the stop
        string that ended it, or ``"confidence"`` / ``"cancelled"`` / ``"error"``."""
        if self.finish_reason != "stop":
            return self.finish_reason
        return self.stop_sequence if self.stop_sequence is not None else "eos"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "text": self.text,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
        }
        if self.stop_sequence is not None:
            data["stop_sequence"] = self.stop_sequence
        if self.token_logprobs is not None:
            data["token_logprobs"] = self.token_logprobs
        if self.token_ids is not None:
            data["token_ids"] = self.token_ids
        if self.token_confidences is not None:
            data["token_confidences"] = self.token_confidences
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        """The inverse of ``to_dict`` (every field it writes comes back, e.g. in a cache)."""
        return cls(**data)

    @property
    def mean_logprob(self) -> float | None:
        if not self.token_logprobs:
            return None
        return sum(self.token_logprobs) / len(self.token_logprobs)


@dataclass(slots=True)
class GenerationResponse:
    """What a backend reports for one request, exactly as it counted it."""

    completions: list[Completion]
    prompt_tokens: int
    completion_tokens: int
    calls: int = 1  # provider requests made (fan-out backends make n)
    usd: float = 0.0
    # Prompt tokens served from the prefix cache (0 when none or unknown): not recomputed.
    cached_prompt_tokens: int = 0
    # The exact prompt token ids, when the backend works in token ids (continuations use them).
    prompt_token_ids: list[int] | None = None
    # Backend-specific facts worth keeping in the trace (cache hits, KV usage, model id).
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Capabilities:
    native_n: bool = False  # one request returns n samples sharing the prompt
    logprobs: bool = False
    prefix_caching: bool = False
    token_ids: bool = False  # accepts prompt_token_ids / returns token ids
    exact_prompt_tokens: bool = False  # count_prompt_tokens is exact, not an upper bound
    max_n: int | None = None  # largest n one request may carry
    top_logprobs: int = 0  # most top-k candidates per token it can return (token confidences)
    confidence_stop: bool = False  # honours GenerationRequest.confidence_stop while sampling
    early_stop: bool = False  # honours GenerationRequest.stop_early (aborts, reports partial tokens)
    score: bool = False  # honours GenerationRequest.score (teacher-forced log-probabilities of a given text)
