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

Several replicas (issue 15): ``base_url`` may list several servers of one model (a list, or
URLs separated by commas, as ``--api-base URL1,URL2`` gives it). Each attempt of a request goes
to the replica ``Replicas`` picks (``reasoning.backends._replicas``: least outstanding
requests, a problem's requests to one replica, replicas that refuse or drop connections set
aside until a ``GET /v1/models`` probe finds them up). An attempt whose connection fails,
before or during the answer (a replica that dies mid-run), marks its replica down and moves at
once to another one, without a backoff and without counting as a retry; when none is up, the
retries (with backoff) probe them again, then ``BackendUnavailable`` names each replica and why.
Only the answer that succeeded is counted, so a request that moved is charged once: the work a
dead replica did on it and never delivered is not reported (nor billed by a server that died).
A stream that breaks is read again from its start on another replica. ``concurrency`` is per
replica. One URL behaves exactly as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib.util
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..aio import gather_all
from ..budget import CallShape
from ..errors import ConfigError, MalformedResponse, UnsupportedRequest
from ..types import Capabilities, Completion, GenerationRequest, GenerationResponse
from ._http import (  # noqa: F401 (re-exported: tests and older imports use them from here)
    CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    StreamedSample,
    _connection_failure,
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
from ._replicas import DEFAULT_HEALTH_INTERVAL, NoReplicaUp, Replica, Replicas, replica_urls
from .base import Backend

T = TypeVar("T")

# The most top-k candidates per token OpenAI's API (and vLLM serve's default max_logprobs) returns.
MAX_TOP_LOGPROBS = 20


class OpenAICompatible(Backend):
    """Any server speaking the OpenAI HTTP API: ``/chat/completions`` and ``/completions``.

    ``extra`` is merged into every JSON body (e.g. ``{"top_k": 20}`` for vLLM).
    ``usd_per_token`` = (prompt, completion) USD per token, for paid endpoints; without it
    the server's price is unknown and a ``usd`` budget is refused (``(0, 0)``: a free one).
    ``timeout``: seconds one call may take, retries included (then ``BackendTimeout``).
    ``base_url``: one server, or several replicas of the same model (a list, or URLs separated
    by commas); then ``affinity`` sends every request of one problem to one replica (its prefix
    cache), ``health_interval`` is the seconds between probes of a replica that is down, and
    ``concurrency`` applies to each replica (see the module docstring). ``affinity_header``
    names an HTTP header that carries each request's affinity key (its problem), for a router
    in front of several replicas that pins sessions by a header (the litellm proxy with
    ``session_affinity``: ``x-litellm-session-id``).
    """

    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str],
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
        affinity: bool = True,
        health_interval: float = DEFAULT_HEALTH_INTERVAL,
        affinity_header: str | None = None,
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
        urls = replica_urls(base_url)
        self.base_url = ",".join(urls)  # one URL, or the replicas' as --api-base lists them
        self.replicas = Replicas(urls, probe=self._probe, affinity=affinity, health_interval=health_interval)
        self.affinity_header = affinity_header
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
    def _resources(self, replica: Replica) -> tuple[Any, asyncio.Semaphore]:
        """A replica's client and semaphore on the running loop (rebuilt per loop: httpx pools
        and semaphores are bound to one, and tests call ``asyncio.run`` repeatedly)."""
        loop = asyncio.get_running_loop()
        if replica.loop is not loop:
            import httpx
            import openai

            http_client = openai.DefaultAioHttpClient if self.transport == "aiohttp" else openai.DefaultAsyncHttpxClient
            http = http_client(
                limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT)),
            )
            replica.client = openai.AsyncOpenAI(
                base_url=replica.url, api_key=self.api_key, max_retries=0, http_client=http
            )
            replica.semaphore = asyncio.Semaphore(self.concurrency)
            replica.loop = loop
        assert replica.semaphore is not None
        return replica.client, replica.semaphore

    async def _on_replica(self, key: str | None, call: Callable[[Replica], Awaitable[T]],
                          moves: list[int] | None = None) -> tuple[T, Replica, int]:
        """One attempt of a request of problem ``key``: ``call(replica)`` on the replica picked
        for it; a connection that fails there marks it down and the attempt moves to another
        replica at once. Returns (result, the replica that answered, replicas given up by this
        attempt); ``moves[0]`` counts every replica given up, across attempts that failed too."""
        import openai

        replicas = self.replicas
        if len(replicas) == 1:
            return await call(replicas.replicas[0]), replicas.replicas[0], 0
        tried: set[Replica] = set()
        while True:
            try:
                replica = await replicas.pick(key, tried)
            except NoReplicaUp as none:
                import httpx

                raise _no_replica_up()(message=str(none), request=httpx.Request("POST", replicas.replicas[0].url)) from None
            try:
                return await call(replica), replica, len(tried)
            except openai.APIConnectionError as failed:  # refused, reset, dropped mid-answer, connect timeout
                replicas.mark_down(replica, failed)
                tried.add(replica)
                if moves is not None:
                    moves[0] += 1
            finally:
                replicas.done(replica)

    async def _probe(self, replica: Replica) -> None:
        """Returns when ``replica`` answers ``GET /models`` (any status below 500), else raises."""
        import httpx
        import openai

        client, _ = self._resources(replica)
        try:
            await client.get("/models", cast_to=httpx.Response, options={"timeout": min(self.timeout, CONNECT_TIMEOUT)})
        except openai.APIStatusError as answered:
            if answered.status_code >= 500:
                raise

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

    async def _post(self, path: str, body: dict[str, Any], key: str | None = None
                    ) -> tuple[tuple[dict[str, Any], Replica, int], int]:
        """((the answer's body, the replica that gave it, replicas given up), attempts)."""
        import httpx

        async def on(replica: Replica) -> dict[str, Any]:
            client, semaphore = self._resources(replica)
            async with semaphore:
                response = await client.post(path, body=body, cast_to=httpx.Response, options=self._headers(key))
            return checked_body(response.content)  # a malformed body is retried like a 5xx

        moves = [0]  # replicas given up over every attempt, not only the one that succeeded
        (data, replica, _), attempts = await with_retries(lambda: self._on_replica(key, on, moves), self.max_retries,
                                                          self.backoff, self._translate, self.timeout)
        return (data, replica, moves[0]), attempts

    def _translate(self, exc: BaseException, attempts: int) -> BaseException:
        return translate_error(
            exc,
            name=self.name,
            model=self.model,
            url=self._url_of(exc),
            attempts=attempts,
            key_hint="the api_key argument",
            hint="if the server rejects n > 1, pass native_n=False",
            timeout=self.timeout,
        )

    def _headers(self, key: str | None) -> Any:
        """The request options that send the affinity key in ``affinity_header`` (none without)."""
        return {"headers": {self.affinity_header: key}} if self.affinity_header and key else {}

    def _url_of(self, exc: BaseException) -> str:
        """The server an error came from: the URL, or with several replicas the one whose request
        failed (all of them when none was up)."""
        if len(self.replicas) == 1:
            return self.base_url
        if not isinstance(exc, _no_replica_up()):
            request = getattr(exc, "request", None)
            sent = str(getattr(request, "url", ""))
            for replica in self.replicas.replicas:
                if sent.startswith(replica.url + "/"):
                    return replica.url
        return f"the {len(self.replicas)} replicas ({', '.join(r.url for r in self.replicas.replicas)})"

    async def generate(self, request: GenerationRequest) -> GenerationResponse:
        self.check_supported(request)
        chat = request.messages is not None
        path = "/chat/completions" if chat else "/completions"
        if _streams(request):
            return await self._generate_streamed(request, path, chat)
        if request.n == 1 or self.capabilities.native_n:
            (data, replica, moved), attempts = await self._post(path, self._body(request, request.n, request.seed),
                                                                request.affinity)
            completions, prompt_tokens, completion_tokens = build_response(
                data["choices"], data.get("usage"), request, chat
            )
            calls, retries, served, failovers = 1, attempts - 1, [replica], moved
            cached = cached_tokens(data.get("usage"))
        else:
            # Fan-out: n single-sample requests; seed + i keeps seeded samples distinct.
            seeds = [None if request.seed is None else request.seed + i for i in range(request.n)]
            results = await gather_all([self._post(path, self._body(request, 1, s), request.affinity) for s in seeds])
            completions, prompt_tokens, completion_tokens = merge_responses(
                [build_response(d["choices"], d.get("usage"), request, chat) for (d, _, _), _ in results]
            )
            calls, retries = request.n, sum(a - 1 for _, a in results)
            served, failovers = [r for (_, r, _), _ in results], sum(m for (_, _, m), _ in results)
            cached = sum(cached_tokens(d.get("usage")) for (d, _, _), _ in results)
            data = results[0][0][0]
        info: dict[str, Any] = {"model": data.get("model")}
        if retries:
            info["retries"] = retries
        self._routing_info(info, served, failovers)
        return self._response_of(completions, prompt_tokens, completion_tokens, calls, info, cached)

    def _routing_info(self, info: dict[str, Any], served: list[Replica], failovers: int) -> None:
        """With several replicas: which served the call (``replica``, or ``replicas`` when its
        parts ran on more than one) and how many times a part moved off a failing one."""
        if len(self.replicas) == 1:
            return
        urls = list(dict.fromkeys(r.url for r in served))
        if len(urls) == 1:
            info["replica"] = urls[0]
        elif urls:
            info["replicas"] = urls
        if failovers:
            info["failovers"] = failovers

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

            def read(replica: Replica) -> Awaitable[None]:
                return self._read_stream(replica, path, body, request, chat, stream, ended)

            moves = [0]
            try:
                (_, stream.replica, _), attempts = await with_retries(
                    lambda: self._on_replica(request.affinity, read, moves), self.max_retries, self.backoff,
                    self._translate, self.timeout)
                stream.retries, stream.failovers = attempts - 1, moves[0]
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
        self._routing_info(info, [s.replica for s in streams if s.replica is not None],
                           sum(s.failovers for s in streams))
        return self._response_of(completions, prompt_tokens, completion_tokens, calls, info, cached)

    async def _read_stream(self, replica: Replica, path: str, body: dict[str, Any], request: GenerationRequest,
                           chat: bool, stream: _Stream, ended: Callable[[_Stream], None]) -> None:
        """One attempt at one sample's stream, on ``replica``; ``stream.sample`` holds what it has
        received. A connection that breaks before the sample ended is an ``APIConnectionError``
        (retried, on another replica when there are several), the sample read again from its start."""
        import httpx
        import openai

        client, semaphore = self._resources(replica)
        sample = stream.sample = StreamedSample(chat, request.top_logprobs, request.confidence_stop)
        async with semaphore:
            stream.sent = True
            response = await client.post(path, body=body, cast_to=httpx.Response, stream=True,
                                         options=self._headers(request.affinity))
            chunks = sse_chunks(response.aiter_lines())
            try:
                while True:
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    except Exception as failed:
                        if sample.finished:  # a failure while waiting for its usage is no reason to redo it
                            return
                        if _connection_failure(failed) is not None:  # the server went away mid-stream
                            raise openai.APIConnectionError(message=f"the stream broke: {type(failed).__name__}: "
                                                            f"{failed}", request=response.request) from failed
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
        loop = asyncio.get_running_loop()
        self.replicas.stop_probes()
        for replica in self.replicas.replicas:
            if replica.client is not None and replica.loop is loop:
                await replica.client.close()
            replica.client, replica.loop, replica.semaphore = None, None, None

    @classmethod
    def from_spec(cls, rest: str, *, api_base: str | None = None, api_key: str | None = None,
                  **options: Any) -> OpenAICompatible:
        """``openai:MODEL[?affinity=off&health_interval=S&affinity_header=NAME]`` (see ``__init__``)."""
        model, _, query = rest.partition("?")
        if not model or not api_base:
            raise ConfigError("openai backend needs a model and --api-base: --backend openai:MODEL --api-base URL "
                              "(several replicas: --api-base URL1,URL2)")
        for item in filter(None, query.split("&")):
            key, _, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if key == "affinity" and value in ("on", "off"):
                options["affinity"] = value == "on"
            elif key == "health_interval":
                try:
                    options["health_interval"] = float(value)
                except ValueError:
                    raise ConfigError(f"openai backend option health_interval={value!r}: expected seconds") from None
            elif key == "affinity_header" and value:
                options["affinity_header"] = value
            else:
                raise ConfigError(f"openai backend option {item!r} unknown; use affinity=on|off, health_interval=SECONDS, "
                                  "affinity_header=NAME")
        return cls(model, base_url=api_base, api_key=api_key, **options)

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": self.base_url,
            "native_n": self.capabilities.native_n,
            "concurrency": self.concurrency,
            "transport": self.transport,
            **({"replicas": self.replicas.describe(), "affinity": self.replicas.affinity}
               if len(self.replicas) > 1 else {}),
            **({"affinity_header": self.affinity_header} if self.affinity_header else {}),
        }


@functools.cache
def _no_replica_up() -> type[Exception]:
    import openai

    class NoReplicaUpError(openai.APIConnectionError):
        """Every replica is down: a connection error (retried after a backoff, then reported)."""

    return NoReplicaUpError


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
    replica: Replica | None = None  # the replica whose answer it kept
    failovers: int = 0


def _aiohttp_transport_available() -> bool:
    import openai

    return hasattr(openai, "DefaultAioHttpClient") and importlib.util.find_spec("httpx_aiohttp") is not None
