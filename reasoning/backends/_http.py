"""HTTP plumbing shared by the OpenAI-compatible and LiteLLM backends.

Retries (tenacity, exponential backoff with full jitter: 429, 408/409, 5xx, malformed
bodies, timeouts and connection errors, never other 4xx nor a client without credentials),
all within one request timeout; translation of provider errors into the framework's;
building a ``GenerationResponse`` from an OpenAI-style response body; and reading one
sample's server-sent-event stream (``sse_chunks``, ``StreamedSample``).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from ..errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadModel,
    ConfigError,
    MalformedResponse,
)
from ..types import Completion, ConfidenceStop, FinishReason, GenerationRequest, token_confidence
from .base import byte_bound_prompt_tokens

T = TypeVar("T")

MAX_BACKOFF = 30.0  # seconds, cap of one backoff sleep
# Seconds one backend call may take, retries and backoff included (--request-timeout).
DEFAULT_REQUEST_TIMEOUT = 300.0
CONNECT_TIMEOUT = 10.0  # seconds; a dead host should not cost the full read timeout
_TRANSIENT_STATUS = {408, 409, 429}


# ---- retries and errors (shared with litellm_backend) ------------------------------------


def check_timeout(timeout: float) -> None:
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"the request timeout must be a positive number of seconds, got {timeout!r}")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: rate limits, server errors, malformed bodies, timeouts, connection failures."""
    import openai

    if isinstance(exc, MalformedResponse | openai.APIConnectionError):  # timeouts included
        return True
    if _missing_credentials(exc) is not None:  # litellm reports it as a 500: no retry fixes it
        return False
    status = getattr(exc, "status_code", None)
    return (
        isinstance(exc, openai.OpenAIError)
        and isinstance(status, int)
        and (status in _TRANSIENT_STATUS or status >= 500)
    )


async def with_retries(
    call: Callable[[], Awaitable[T]],
    retries: int,
    backoff: float,
    translate: Callable[[BaseException, int], BaseException],
    timeout: float | None = None,
) -> tuple[T, int]:
    """Await ``call()``, retrying transient failures; return (result, attempts made).

    The first attempt runs without tenacity (the hot path); only after a transient failure
    does tenacity take over, counting that failure as its first attempt. Everything, retries
    and backoff included, ends after ``timeout`` seconds (a ``TimeoutError``). The final
    error goes through ``translate(error, attempts)``.
    """
    attempts = [0]

    async def counted() -> T:
        attempts[0] += 1
        return await call()

    try:
        async with asyncio.timeout(timeout):
            return await _retrying(counted, retries, backoff, translate)
    except TimeoutError as exc:  # ours: the request timeout passed (the ledger's deadline cancels instead)
        _reraise(exc, translate(exc, attempts[0]))


async def _retrying(
    call: Callable[[], Awaitable[T]],
    retries: int,
    backoff: float,
    translate: Callable[[BaseException, int], BaseException],
) -> tuple[T, int]:
    import openai  # already loaded by the caller's client; a dict lookup here

    retried = (openai.OpenAIError, MalformedResponse)  # litellm's errors subclass openai's; others pass unchanged
    try:
        return await call(), 1
    except retried as exc:
        if retries <= 0 or not is_transient(exc):
            _reraise(exc, translate(exc, 1))
        first_error: BaseException | None = exc

    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    retrying = AsyncRetrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait_random_exponential(multiplier=backoff, max=MAX_BACKOFF),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )
    attempts = 1
    try:
        async for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                if first_error is not None:
                    error, first_error = first_error, None
                    raise error
                return await call(), attempts
    except retried as exc:
        _reraise(exc, translate(exc, attempts))
    raise AssertionError("unreachable: tenacity either returns or reraises")


def _reraise(original: BaseException, translated: BaseException) -> NoReturn:
    if translated is original:
        raise original
    raise translated from original


def translate_error(
    exc: BaseException, *, name: str, model: str, url: str, attempts: int, key_hint: str = "", hint: str = "",
    timeout: float | None = None,
) -> BaseException:
    """Map an ``openai`` (or litellm) error, a malformed body or the request timeout
    (``TimeoutError``) to our typed errors; others are returned as is."""
    import openai

    tried = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
    within = f"within the request timeout ({timeout:g} s, --request-timeout)" if timeout else "within the timeout"
    if isinstance(exc, TimeoutError):
        return BackendTimeout(f"{name}: no answer from {url} {within} ({tried})")
    if isinstance(exc, MalformedResponse):
        return MalformedResponse(f"{name}: {url} answered with a malformed response ({tried}): {exc}")
    if not isinstance(exc, openai.OpenAIError):
        return exc
    status = getattr(exc, "status_code", None)
    detail = _provider_message(exc)
    if (missing := _missing_credentials(exc)) is not None:
        where = f": {key_hint}" if key_hint else ""
        return AuthenticationError(f"{name}: no API key for {url}{where} ({missing})")
    if (unreadable := _unreadable_answer(exc)) is not None:  # litellm reports these as a 500
        return MalformedResponse(f"{name}: {url} answered with a malformed response ({tried}): {unreadable}")
    if status in (401, 403):
        where = f" ({key_hint})" if key_hint else ""
        return AuthenticationError(
            f"{name}: {url} rejected the credentials (HTTP {status}): {detail}. Check the API key / env var{where}."
        )
    if status == 404:
        return BadModel(
            f"{name}: model {model!r} not found at {url} (HTTP 404; is the model name, "
            f"and the /v1 in the URL, right?): {detail}"
        )
    if (cause := _connection_failure(exc)) is not None:
        if _disconnected(cause):  # some transports report a dropped connection as a timeout
            return BackendUnavailable(
                f"{name}: {url} closed the connection without answering ({tried}): {type(cause).__name__}: {cause}"
            )
        if isinstance(cause, (openai.APITimeoutError, TimeoutError)) or "Timeout" in type(cause).__name__:
            return BackendTimeout(f"{name}: no answer from {url} {within} ({tried}): {cause!r}")
        return BackendUnavailable(
            f"{name}: cannot reach {url} ({tried}): {type(cause).__name__}: {cause}. Is the server up?"
        )
    suffix = f" ({hint})" if hint and status == 400 else ""
    if status is None:
        return BackendError(f"{name}: {type(exc).__name__} {tried}: {detail}{suffix}")
    return BackendError(f"{name}: HTTP {status} from {url} {tried}: {detail}{suffix}")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, outermost first (at most 10)."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(found) < 10:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _connection_failure(exc: BaseException) -> BaseException | None:
    """The root connection error or timeout behind ``exc``, if any (litellm reports a refused
    connection as a 500 InternalServerError, with the real cause in the chain)."""
    import aiohttp
    import httpx
    import openai

    kinds = (openai.APIConnectionError, httpx.TransportError, aiohttp.ClientConnectionError, ConnectionError,
             TimeoutError)
    return next((cause for cause in reversed(_chain(exc)) if isinstance(cause, kinds)), None)


def _disconnected(cause: BaseException) -> bool:
    """The server closed the connection (or reset it) without an answer."""
    import aiohttp
    import httpx

    return isinstance(cause, (httpx.RemoteProtocolError, aiohttp.ServerDisconnectedError, ConnectionResetError))


def _missing_credentials(exc: BaseException) -> str | None:
    """The SDK's own refusal to send a request without an API key (a plain ``OpenAIError``,
    which litellm wraps in a 500), if that is what ``exc`` is."""
    import openai

    for cause in _chain(exc):
        if type(cause) is openai.OpenAIError and ("credentials" in str(cause).lower() or "api_key" in str(cause)):
            return str(cause).rstrip(".")
    return None


def _unreadable_answer(exc: BaseException) -> str | None:
    """What litellm could not read in the provider's answer (a body that is not JSON, or one
    without ``choices``), if that is what lies behind ``exc``."""
    import openai

    for cause in _chain(exc)[1:]:
        if isinstance(cause, json.JSONDecodeError):
            return f"the body is not JSON ({cause})"
        status_or_connection = isinstance(cause, openai.APIStatusError | openai.APIConnectionError)
        if isinstance(cause, openai.APIError) and not status_or_connection:  # litellm could not read the answer
            return _provider_message(cause)
    return None


def checked_body(raw: bytes | str) -> dict[str, Any]:
    """An OpenAI-style response body, or ``MalformedResponse`` (retried like a 5xx)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as bad:
        raise MalformedResponse(f"the body is not JSON ({bad}): {_excerpt(raw)}") from None
    if not isinstance(data, dict) or not isinstance(choices := data.get("choices"), list):
        raise MalformedResponse(f"no 'choices' list in the body: {_excerpt(raw)}")
    if not all(isinstance(choice, dict) for choice in choices):
        raise MalformedResponse(f"'choices' holds something other than objects: {_excerpt(raw)}")
    if not isinstance(data.get("usage"), dict | None):
        raise MalformedResponse(f"'usage' is not an object: {_excerpt(raw)}")
    return data


def _excerpt(raw: bytes | str, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _provider_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"]).rstrip(".")
    return str(exc).rstrip(".")


# ---- response mapping (shared) --------------------------------------------------------


def finish_reason(raw: str | None) -> FinishReason:
    if raw == "length":
        return "length"
    if raw == "content_filter":  # the provider cut the text: not a usable answer
        return "error"
    return "stop"  # "stop", "eos", "tool_calls", None (some servers omit it)


def split_completion_tokens(total: int, texts: list[str], finishes: list[str], max_tokens: int) -> list[int]:
    """Per-sample token counts that sum to ``total`` when the provider reports only the total.

    Samples cut by "length" made exactly ``max_tokens`` tokens; the rest of the total is
    split over the others in proportion to their UTF-8 bytes (+1, the end-of-sequence
    token), capped at ``max_tokens`` (water-filling). Exact in sum, an estimate per sample.
    """
    n = len(texts)
    if n == 1:
        return [total]
    counts = [0] * n
    free = [i for i in range(n) if finishes[i] != "length"]
    rest = total - max_tokens * (n - len(free))
    if rest < 0 or (not free and rest):  # provider disagrees with the rule: split everything
        free, rest = list(range(n)), total
    else:
        for i in range(n):
            if finishes[i] == "length":
                counts[i] = max_tokens
    cap = max_tokens if rest <= max_tokens * len(free) else math.inf
    while free:
        weights = {i: len(texts[i].encode()) + 1 for i in free}
        scale = rest / sum(weights.values())
        over = [i for i in free if weights[i] * scale > cap]
        if over:  # these hit the cap; re-split what is left among the others
            for i in over:
                counts[i] = max_tokens
            rest -= max_tokens * len(over)
            free = [i for i in free if i not in over]
            continue
        shares = {i: weights[i] * scale for i in free}
        for i in free:
            counts[i] = int(shares[i])
        left = rest - sum(counts[i] for i in free)
        for i in sorted(free, key=lambda i: shares[i] - int(shares[i]), reverse=True)[:left]:
            counts[i] += 1
        break
    return counts


def build_response(
    choices: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    request: GenerationRequest,
    chat: bool,
) -> tuple[list[Completion], int, int]:
    """Completions, prompt_tokens, completion_tokens from one OpenAI-format response (dicts)."""
    texts: list[str] = []
    finishes: list[str] = []
    logprobs: list[list[float] | None] = []
    confidences: list[list[float] | None] = []
    stops: list[str | None] = []
    for choice in choices:
        if chat:
            text = (choice.get("message") or {}).get("content") or ""
        else:
            text = choice.get("text") or ""
        # vLLM serve names the stop string that ended a choice; OpenAI's API does not (None).
        stop = choice.get("stop_reason") if isinstance(choice.get("stop_reason"), str) else None
        if request.include_stop and stop is not None and not text.endswith(stop):
            text += stop  # a server that drops stop strings from the text: keep them, as asked
        texts.append(text)
        stops.append(stop)
        finishes.append(finish_reason(choice.get("finish_reason")))
        logprobs.append(_token_logprobs(choice.get("logprobs"), chat) if request.logprobs else None)
        if request.top_logprobs:
            tops = _top_candidates(choice.get("logprobs"), chat)
            confidences.append(None if tops is None else [top_confidence(t, request.top_logprobs) for t in tops])
        else:
            confidences.append(None)

    # One logprob (or one set of top candidates) per token: exact per-sample counts.
    per_token = logprobs if request.logprobs else confidences
    counts = [len(x) for x in per_token] if all(x is not None for x in per_token) else None  # type: ignore[arg-type]
    if usage and usage.get("completion_tokens") is not None:
        completion_tokens = int(usage["completion_tokens"])
        if counts is None or sum(counts) != completion_tokens:
            counts = split_completion_tokens(completion_tokens, texts, finishes, request.max_tokens)
    elif counts is None:  # no usage at all: a per-sample upper bound (tokens <= bytes, <= max_tokens)
        counts = [
            request.max_tokens if f == "length" else min(len(t.encode()) + 1, request.max_tokens)
            for t, f in zip(texts, finishes, strict=True)
        ]
        completion_tokens = sum(counts)
    else:
        completion_tokens = sum(counts)
    if usage and usage.get("prompt_tokens") is not None:
        prompt_tokens = int(usage["prompt_tokens"])
    else:  # unknown: report the bound the ledger reserved
        prompt_tokens = byte_bound_prompt_tokens(request)
    completions = [
        Completion(text=t, completion_tokens=c, finish_reason=f, token_logprobs=lp, stop_sequence=s,  # type: ignore[arg-type]
                   token_confidences=tc)
        for t, c, f, lp, s, tc in zip(texts, counts, finishes, logprobs, stops, confidences, strict=True)
    ]
    return completions, prompt_tokens, completion_tokens


def cached_tokens(usage: dict[str, Any] | None) -> int:
    """Prompt tokens the server served from its prefix cache (``prompt_tokens_details.cached_tokens``,
    reported by vLLM serve with prefix caching and by OpenAI), 0 when not reported."""
    details = (usage or {}).get("prompt_tokens_details") or {}
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _token_logprobs(raw: Any, chat: bool) -> list[float] | None:
    if not raw:
        return None
    if chat:
        content = raw.get("content")
        return None if content is None else [t["logprob"] for t in content]
    values = raw.get("token_logprobs")
    return None if values is None else [v for v in values if v is not None]


def _top_candidates(raw: Any, chat: bool) -> list[list[float]] | None:
    """Per token, the logprobs of the candidates the server returned (``top_logprobs``)."""
    if not raw:
        return None
    if chat:
        content = raw.get("content")
        return None if content is None else [_chat_top(entry) for entry in content]
    tops = raw.get("top_logprobs")
    return None if tops is None else [[float(v) for v in (top or {}).values()] for top in tops]


def _chat_top(entry: dict[str, Any]) -> list[float]:
    return [float(candidate["logprob"]) for candidate in entry.get("top_logprobs") or ()]


def top_confidence(candidates: list[float], k: int) -> float:
    """DeepConf's confidence of one token from the candidates a server returned: the k most
    likely (vLLM's completions endpoint also returns the sampled token when it is not among
    them, so there may be k + 1; a server that returns fewer than k gives what it has)."""
    return token_confidence(sorted(candidates, reverse=True)[:k])


def merge_responses(parts: list[tuple[list[Completion], int, int]]) -> tuple[list[Completion], int, int]:
    completions = [c for part in parts for c in part[0]]
    return completions, sum(p[1] for p in parts), sum(p[2] for p in parts)


# ---- the backend ------------------------------------------------------------------------


# ---- streaming (one sample per stream) --------------------------------------------------


async def sse_chunks(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a server-sent-event stream, up to ``data: [DONE]``. An error event
    (vLLM sends ``{"error": ...}`` when generation fails mid-stream) or a chunk that is not a
    JSON object is a ``MalformedResponse`` (retried like a 5xx)."""
    async for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, comments (":"), "event:" / "id:" fields
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise MalformedResponse(f"a streamed chunk is not JSON: {_excerpt(data)}") from None
        if not isinstance(chunk, dict):
            raise MalformedResponse(f"a streamed chunk is not an object: {_excerpt(data)}")
        if chunk.get("error") is not None or chunk.get("object") == "error":
            error = chunk.get("error", chunk)
            message = error.get("message") if isinstance(error, dict) else error
            raise MalformedResponse(f"the stream reported an error: {message}")
        if not isinstance(chunk.get("choices", []), list) or not isinstance(chunk.get("usage"), dict | None):
            raise MalformedResponse(f"a streamed chunk has a malformed 'choices' or 'usage': {_excerpt(data)}")
        yield chunk


@dataclass(slots=True)
class StreamedSample:
    """One sample read from its own stream (a request with n = 1), chunk by chunk.

    Tokens are counted by their logprob entries, one per token whatever a chunk carries (a
    server may put several tokens in one chunk): the backend asks for logprobs on every
    stream for this, so a stream closed early still has an exact count. A server that sends
    no logprobs at all is counted one token per chunk with text (vLLM's default chunking).
    ``rule`` (a ``ConfidenceStop``) is applied token by token, exactly as
    ``ConfidenceStop.stops_at``; at the token where it fires the sample ends
    (finish_reason "confidence") with the tokens up to and including that one.
    """

    chat: bool
    top_k: int = 0  # candidates per reported token confidence (request.top_logprobs); 0: none
    rule: ConfidenceStop | None = None
    parts: list[str] = field(default_factory=list)
    entries: int = 0  # tokens counted by their logprob entries
    text_chunks: int = 0  # chunks with text (the count when a server sends no logprobs)
    logprobs: list[float] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    rule_confidences: list[float] = field(default_factory=list)
    _window_sum: float = 0.0
    finish: FinishReason | None = None
    stop_sequence: str | None = None
    usage: dict[str, Any] | None = None
    stopped_at: int | None = None  # the token where the rule fired
    dropped: int = 0  # tokens received after the cut, in the chunk that carried it (not kept)

    @property
    def tokens(self) -> int:
        return self.entries if self.entries or not self.text_chunks else self.text_chunks

    @property
    def finished(self) -> bool:
        return self.finish is not None

    def feed(self, choice: dict[str, Any]) -> bool:
        """Add one chunk's choice; True once the sample has ended (finish_reason, or the rule)."""
        if self.finished:
            return True
        if self.chat:
            text = (choice.get("delta") or {}).get("content") or ""
        else:
            text = choice.get("text") or ""
        tokens = _stream_tokens(choice.get("logprobs"), self.chat)
        if not tokens:
            if text:
                if self.rule is not None or self.top_k:
                    raise BackendError("the server streamed tokens without their logprobs: no token confidences "
                                       "(does it support logprobs / top_logprobs?)")
                self.text_chunks += 1
            self.parts.append(text)
        else:
            for t, (_, sampled, candidates) in enumerate(tokens):
                self.entries += 1
                self.logprobs.append(sampled)
                if (self.rule is not None or self.top_k) and not candidates:
                    raise BackendError("the server streamed no top_logprobs: no token confidences")
                if self.top_k:
                    self.confidences.append(top_confidence(candidates, self.top_k))
                if self.rule is not None and self._push(top_confidence(candidates, self.rule.top_k)):
                    last = t == len(tokens) - 1
                    # The chunk's text when the cut is at its end; else the kept tokens' own text.
                    self.parts.append(text if last else b"".join(raw for raw, _, _ in tokens[: t + 1])
                                      .decode("utf-8", "replace"))
                    self.stopped_at, self.dropped = self.entries - 1, len(tokens) - t - 1
                    self.finish = "confidence"
                    return True
            self.parts.append(text)
        raw = choice.get("finish_reason")
        if raw is not None:
            self.finish = finish_reason(raw)
            stop = choice.get("stop_reason")
            self.stop_sequence = stop if isinstance(stop, str) else None
            return True
        return False

    def _push(self, confidence: float) -> bool:
        """``ConfidenceStop.stops_at``, one token at a time (the same sums in the same order,
        so it fires at exactly the index ``stops_at`` gives for the same confidences)."""
        rule, values = self.rule, self.rule_confidences
        assert rule is not None
        i = len(values)
        values.append(confidence)
        self._window_sum += confidence
        if i >= rule.window:
            self._window_sum -= values[i - rule.window]
        return i + 1 >= rule.window and self._window_sum / rule.window < rule.threshold

    def completion(self, request: GenerationRequest, cancelled: bool = False) -> Completion:
        """The sample as a completion; ``cancelled``: its stream was closed before it ended."""
        text = "".join(self.parts)
        finish: FinishReason = "cancelled" if cancelled else (self.finish or "error")
        stop = self.stop_sequence if finish == "stop" else None
        if request.include_stop and stop is not None and not text.endswith(stop):
            text += stop  # a server that drops stop strings from the text: keep them, as asked
        tokens = self.tokens
        reported = (self.usage or {}).get("completion_tokens")
        if finish in ("stop", "length") and isinstance(reported, int) and not isinstance(reported, bool):
            tokens = reported  # the server's own count of a stream read to its end
        return Completion(
            text=text,
            completion_tokens=tokens,
            finish_reason=finish,
            # (None when the server sent no logprobs: the count is by chunks then)
            token_logprobs=list(self.logprobs) if request.logprobs and (self.entries or not self.text_chunks) else None,
            stop_sequence=stop,
            token_confidences=list(self.confidences) if request.top_logprobs else None,
        )


def _stream_tokens(raw: Any, chat: bool) -> list[tuple[bytes, float, list[float]]]:
    """The tokens of one streamed chunk: (their text as bytes, the sampled token's logprob, the
    candidates' logprobs)."""
    if not raw:
        return []
    if chat:
        tokens = []
        for entry in raw.get("content") or ():
            data = entry.get("bytes")
            text = bytes(data) if isinstance(data, list) else str(entry.get("token") or "").encode()
            tokens.append((text, float(entry.get("logprob", 0.0)), _chat_top(entry)))
        return tokens
    texts = raw.get("tokens") or []
    values = raw.get("token_logprobs") or []
    tops = raw.get("top_logprobs") or []
    return [
        (str(text).encode(), float(values[i]) if i < len(values) and values[i] is not None else 0.0,
         [float(v) for v in (tops[i] or {}).values()] if i < len(tops) else [])
        for i, text in enumerate(texts)
    ]
