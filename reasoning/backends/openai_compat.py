"""Direct backend for OpenAI-compatible servers (vllm serve, sglang, the stub), on ``openai.AsyncOpenAI``.

The lean path: the body is built by hand and posted with the client's low-level ``post``
returning the raw ``httpx.Response``, so no typed-param transformation or response models
are built per call; we read the JSON once. The client still supplies auth headers, base
URL, timeouts and typed ``openai`` errors. With ``httpx-aiohttp`` installed (the
``openai[aiohttp]`` extra) the client runs on aiohttp, whose connection pool costs far less
CPU per request than httpcore's at high concurrency (``transport="auto"``).

Retries: the client's own are off (``max_retries=0``); ``with_retries`` (tenacity,
exponential backoff with full jitter) retries 429, 408/409, 5xx, malformed bodies, timeouts
and connection errors, never other 4xx, all within ``timeout`` seconds
(``reasoning.backends._http``, shared with the LiteLLM backend).

Stopping samples while they run (issue 21), by streaming. A request with a
``confidence_stop`` or a ``stop_early`` is sent as n concurrent streams of one sample each
(``stream: true``, usage in a final chunk), so that each can be closed on its own; the
server's prefix cache makes the repeated prompt cheap, and usage says what it cost: calls = n,
the prompt counted once per stream. Closing a stream (the HTTP response) is how a client
aborts a request: vLLM serve aborts the sequence when its client disconnects.
- ``confidence_stop``: the server cannot stop inside its engine, so the rule runs here, token by
  token, on the top-k logprobs streamed with each token; at the token where
  ``ConfidenceStop.stops_at`` fires the stream is closed and the sample ends there (tokens up
  to and including that one, finish_reason "confidence"). Tokens the server decoded between
  that token and the close are not seen, so not counted (as vLLM's abort).
- ``stop_early``: called with the samples finished so far, in finishing order, each time one
  finishes; once it says stop, the streams still running are closed and their samples come
  back "cancelled" with the text and tokens received so far.
- Token counts: every stream asks for logprobs (``logprobs: true``, or ``logprobs: 1`` on the
  completions endpoint) even when the request did not, because a token's logprob entry is the
  one exact token count of a stream closed before its usage chunk (a chunk may carry several
  tokens). A stream read to its end reports usage; a closed one has none: its prompt tokens
  are those reported by the streams of the same prompt that did finish, else this backend's
  own prompt bound (``count_prompt_tokens``, what the ledger reserved), its cached tokens 0.
``top_logprobs`` alone needs no stream: it adds ``top_logprobs: k`` (chat) / ``logprobs: k``
(completions) to the body and fills ``Completion.token_confidences``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..aio import gather_all
from ..budget import CallShape
from ..errors import ConfigError, MalformedResponse, UnsupportedRequest
from ..types import Capabilities, Completion, GenerationRequest, GenerationResponse
from ._http import (  # noqa: F401 (re-exported: tests and older imports use them from here)
    CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    StreamedSample,
    build_response,
    cached_tokens,
    check_timeout,
    checked_body,
    merge_responses,
    split_completion_tokens,
    sse_chunks,
    translate_error,
    with_retries,
)
from .base import Backend

# The most top-k candidates per token OpenAI's API (and vLLM serve's default max_logprobs) returns.
MAX_TOP_LOGPROBS = 20


class OpenAICompatible(Backend):
    """Any server speaking the OpenAI HTTP API: ``/chat/completions`` and ``/completions``.

    ``extra`` is merged into every JSON body (e.g. ``{"top_k": 20}`` for vLLM).
    ``usd_per_token`` = (prompt, completion) USD per token, for paid endpoints; without it
    the server's price is unknown and a ``usd`` budget is refused (``(0, 0)``: a free one).
    ``timeout``: seconds one call may take, retries included (then ``BackendTimeout``).
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = "EMPTY",
        *,
        concurrency: int = 64,
        timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_retries: int = 4,
        native_n: bool = True,
        extra: dict[str, Any] | None = None,
        backoff: float = 0.5,
        usd_per_token: tuple[float, float] | None = None,
        params: int | None = None,
        transport: str = "auto",
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        check_timeout(timeout)
        if transport == "auto":
            transport = "aiohttp" if _aiohttp_transport_available() else "httpx"
        if transport not in ("httpx", "aiohttp"):
            raise ValueError(f"transport must be 'auto', 'httpx' or 'aiohttp', got {transport!r}")
        self.transport = transport
        self.model = model
        self.base_url = base_url.rstrip("/")
        # None means no key ("EMPTY"): never forward OPENAI_API_KEY to an arbitrary server.
        self.api_key = api_key or "EMPTY"
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.extra = dict(extra or {})
        self.usd_per_token = usd_per_token or (0.0, 0.0)
        self._priced = usd_per_token is not None
        self.params = params
        self.name = f"openai:{model}"
        self.capabilities = Capabilities(native_n=native_n, logprobs=True, top_logprobs=MAX_TOP_LOGPROBS,
                                         confidence_stop=True, early_stop=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._semaphore: asyncio.Semaphore | None = None

    def _resources(self) -> tuple[Any, asyncio.Semaphore]:
        """The client and semaphore of the running loop (rebuilt per loop: httpx pools and
        semaphores are bound to one, and tests call ``asyncio.run`` repeatedly)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            import httpx
            import openai

            http_client = openai.DefaultAioHttpClient if self.transport == "aiohttp" else openai.DefaultAsyncHttpxClient
            http = http_client(
                limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT)),
            )
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self.api_key, max_retries=0, http_client=http
            )
            self._semaphore = asyncio.Semaphore(self.concurrency)
            self._loop = loop
        assert self._semaphore is not None
        return self._client, self._semaphore

    def prices(self) -> tuple[float, float]:
        return self.usd_per_token

    @property
    def priced(self) -> bool:
        return self._priced

    def call_shape(self, request: GenerationRequest) -> CallShape:
        shape = super().call_shape(request)
        if _streams(request):  # one stream (one call, one copy of the prompt) per sample
            shape = dataclasses.replace(shape, prompt_copies_per_sample=True, calls_per_sample=True)
        return shape

    def check_supported(self, request: GenerationRequest) -> None:
        super().check_supported(request)
        rule = request.confidence_stop
        if rule is not None and rule.top_k > self.capabilities.top_logprobs:
            raise UnsupportedRequest(f"{self.name} returns at most {self.capabilities.top_logprobs} top logprobs per "
                                     f"token; the confidence stop needs {rule.top_k}")

    def _body(self, request: GenerationRequest, n: int, seed: int | None, stream: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "n": n,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        top = max(request.top_logprobs, request.confidence_stop.top_k if request.confidence_stop else 0)
        # A stream always asks for logprobs: one entry per token is its exact token count.
        logprobs = request.logprobs or stream
        if request.messages is not None:
            body["messages"] = [m.to_dict() for m in request.messages]
            if logprobs or top:
                body["logprobs"] = True
            if top:
                body["top_logprobs"] = top
            if request.continue_final_message:  # vLLM / sglang extension
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        else:
            body["prompt"] = request.prompt
            if logprobs or top:
                body["logprobs"] = max(top, 1)
        if request.stop:
            body["stop"] = list(request.stop)
            if request.include_stop:  # vLLM extension; otherwise build_response re-appends it
                body["include_stop_str_in_output"] = True
        if seed is not None:
            body["seed"] = seed
        if self.extra:
            body.update(self.extra)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def _post(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        import httpx

        client, semaphore = self._resources()

        async def attempt() -> dict[str, Any]:
            async with semaphore:
                response = await client.post(path, body=body, cast_to=httpx.Response)
            return checked_body(response.content)  # a malformed body is retried like a 5xx

        return await with_retries(attempt, self.max_retries, self.backoff, self._translate, self.timeout)

    def _translate(self, exc: BaseException, attempts: int) -> BaseException:
        return translate_error(
            exc,
            name=self.name,
            model=self.model,
            url=self.base_url,
            attempts=attempts,
            key_hint="the api_key argument",
            hint="if the server rejects n > 1, pass native_n=False",
            timeout=self.timeout,
        )

    async def generate(self, request: GenerationRequest) -> GenerationResponse:
        self.check_supported(request)
        chat = request.messages is not None
        path = "/chat/completions" if chat else "/completions"
        if _streams(request):
            return await self._generate_streamed(request, path, chat)
        if request.n == 1 or self.capabilities.native_n:
            data, attempts = await self._post(path, self._body(request, request.n, request.seed))
            completions, prompt_tokens, completion_tokens = build_response(
                data["choices"], data.get("usage"), request, chat
            )
            calls, retries = 1, attempts - 1
            cached = cached_tokens(data.get("usage"))
        else:
            # Fan-out: n single-sample requests; seed + i keeps seeded samples distinct.
            seeds = [None if request.seed is None else request.seed + i for i in range(request.n)]
            results = await gather_all([self._post(path, self._body(request, 1, s)) for s in seeds])
            completions, prompt_tokens, completion_tokens = merge_responses(
                [build_response(d["choices"], d.get("usage"), request, chat) for d, _ in results]
            )
            calls, retries = request.n, sum(a - 1 for _, a in results)
            cached = sum(cached_tokens(d.get("usage")) for d, _ in results)
            data = results[0][0]
        info: dict[str, Any] = {"model": data.get("model")}
        if retries:
            info["retries"] = retries
        return self._response_of(completions, prompt_tokens, completion_tokens, calls, info, cached)

    def _response_of(self, completions: list[Completion], prompt_tokens: int, completion_tokens: int, calls: int,
                info: dict[str, Any], cached: int) -> GenerationResponse:
        p_in, p_out = self.usd_per_token
        return GenerationResponse(
            completions=completions,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            calls=calls,
            usd=prompt_tokens * p_in + completion_tokens * p_out,
            info=info,
            cached_prompt_tokens=cached,
        )

    # ---- streaming: one stream per sample, each closable on its own ----------------------

    async def _generate_streamed(self, request: GenerationRequest, path: str, chat: bool) -> GenerationResponse:
        seeds = [None if request.seed is None else request.seed + i for i in range(request.n)]
        streams = [_Stream(i) for i in range(request.n)]
        finished: list[Completion] = []
        decided = False

        def ended(stream: _Stream) -> None:
            """A sample has ended (in its stream's task): ask ``stop_early``; close the others."""
            nonlocal decided
            assert stream.sample is not None
            finished.append(stream.sample.completion(request))
            if request.stop_early is None or decided:
                return
            if request.stop_early(list(finished)):
                decided = True
                for other in streams:
                    if not (other.sample is not None and other.sample.finished):
                        other.closed = True
                        if other.task is not None:
                            other.task.cancel()

        async def run(stream: _Stream) -> None:
            stream.task = asyncio.current_task()
            if stream.closed:  # stop_early decided before this one started
                return
            body = self._body(request, 1, seeds[stream.index], stream=True)
            try:
                _, attempts = await with_retries(lambda: self._read_stream(path, body, request, chat, stream, ended),
                                                 self.max_retries, self.backoff, self._translate, self.timeout)
                stream.retries = attempts - 1
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if stream.closed and task is not None and task.cancelling() == 1:  # closed by stop_early alone
                    task.uncancel()
                    return
                raise

        await gather_all([run(stream) for stream in streams])

        completions = [
            s.sample.completion(request, cancelled=s.closed) if s.sample is not None
            else Completion("", 0, "cancelled")  # closed before it was sent
            for s in streams
        ]
        reported = [s.sample.usage for s in streams if s.sample is not None and s.sample.usage]
        known = next((int(u["prompt_tokens"]) for u in reported if isinstance(u.get("prompt_tokens"), int)), None)
        # A stream closed before its usage chunk: the prompt tokens the finished streams of the
        # same prompt reported, else the bound the ledger reserved for it.
        fallback = known if known is not None else self.count_prompt_tokens(request)
        prompt_tokens = sum(
            int(s.sample.usage["prompt_tokens"]) if s.sample.usage and isinstance(s.sample.usage.get("prompt_tokens"), int)
            else fallback
            for s in streams if s.sample is not None and s.sent
        )
        completion_tokens = sum(c.completion_tokens for c in completions)
        calls = sum(s.sent for s in streams)
        info: dict[str, Any] = {"model": next((s.model for s in streams if s.model), None), "streamed": True}
        if retries := sum(s.retries for s in streams):
            info["retries"] = retries
        if cancelled := sum(s.closed for s in streams):
            info["cancelled"] = cancelled
        cached = sum(cached_tokens(s.sample.usage) for s in streams if s.sample is not None)
        return self._response_of(completions, prompt_tokens, completion_tokens, calls, info, cached)

    async def _read_stream(self, path: str, body: dict[str, Any], request: GenerationRequest, chat: bool,
                           stream: _Stream, ended: Callable[[_Stream], None]) -> None:
        """One attempt at one sample's stream; ``stream.sample`` holds what it has received."""
        import httpx

        client, semaphore = self._resources()
        sample = stream.sample = StreamedSample(chat, request.top_logprobs, request.confidence_stop)
        async with semaphore:
            stream.sent = True
            response = await client.post(path, body=body, cast_to=httpx.Response, stream=True)
            chunks = sse_chunks(response.aiter_lines())
            try:
                while True:
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    except Exception:
                        if sample.finished:  # a failure while waiting for its usage is no reason to redo it
                            return
                        raise
                    stream.model = stream.model or chunk.get("model")
                    if chunk.get("usage"):
                        sample.usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        if not sample.finished and sample.feed(choice):
                            ended(stream)  # may close the other streams (stop_early)
                    if sample.finish == "confidence":
                        return  # closing the response aborts the request on the server
            finally:
                await chunks.aclose()
                await response.aclose()
        if not sample.finished:
            raise MalformedResponse("the stream ended before its sample finished")

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.close()
        self._client, self._loop, self._semaphore = None, None, None

    @classmethod
    def from_spec(cls, rest: str, *, api_base: str | None = None, api_key: str | None = None,
                  **options: Any) -> OpenAICompatible:
        if not rest or not api_base:
            raise ConfigError("openai backend needs a model and --api-base: --backend openai:MODEL --api-base URL")
        return cls(rest, base_url=api_base, api_key=api_key, **options)

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": self.base_url,
            "native_n": self.capabilities.native_n,
            "concurrency": self.concurrency,
            "transport": self.transport,
        }


def _streams(request: GenerationRequest) -> bool:
    """Whether a request is sampled by streams (it stops samples while they run)."""
    return request.confidence_stop is not None or request.stop_early is not None


@dataclass(slots=True, eq=False)
class _Stream:
    """One sample's stream: its task, what it received, and whether stop_early closed it."""

    index: int
    task: asyncio.Task[Any] | None = None
    sample: StreamedSample | None = None
    closed: bool = False  # closed by stop_early before its sample ended
    sent: bool = False  # its request was sent (a call)
    retries: int = 0
    model: str | None = None


def _aiohttp_transport_available() -> bool:
    import openai

    return hasattr(openai, "DefaultAioHttpClient") and importlib.util.find_spec("httpx_aiohttp") is not None
