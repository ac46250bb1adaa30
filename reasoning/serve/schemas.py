"""Request and response bodies at the HTTP edge (the OpenAI chat-completions shape)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls...: accepted, not used

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ReasoningOptions(BaseModel):
    """``extra_body={"reasoning": {...}}``: overrides what the model name says."""

    model_config = ConfigDict(extra="forbid")

    strategy: str | None = None
    n: int | None = None
    verifier: str | None = None
    budget: dict[str, Any] | str | None = None
    # The strategy's own options (numbers, strings, booleans; see GET /v1/strategies).
    options: dict[str, Any] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # Other OpenAI parameters (top_p, seed, user, tools...) are accepted and ignored:
    # the strategy decides how to sample.
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    n: int | None = None  # OpenAI's number of choices: only 1 is served
    reasoning: ReasoningOptions | None = None

    def problem(self) -> str:
        """The last user message is the problem; system messages and earlier turns are not used."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        return ""


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
