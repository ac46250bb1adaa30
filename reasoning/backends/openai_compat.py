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
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

from ..aio import gather_all
from ..errors import ConfigError
from ..types import Capabilities, GenerationRequest, GenerationResponse
from ._http import (  # noqa: F401 (re-exported: tests and older imports use them from here)
    CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    build_response,
    cached_tokens,
    check_timeout,
    checked_body,
    merge_responses,
    split_completion_tokens,
    translate_error,
    with_retries,
)
from .base import Backend


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
        self.capabilities = Capabilities(native_n=native_n, logprobs=True)
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

    def _body(self, request: GenerationRequest, n: int, seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "n": n,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.messages is not None:
            body["messages"] = [m.to_dict() for m in request.messages]
            if request.logprobs:
                body["logprobs"] = True
            if request.continue_final_message:  # vLLM / sglang extension
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        else:
            body["prompt"] = request.prompt
            if request.logprobs:
                body["logprobs"] = 1
        if request.stop:
            body["stop"] = list(request.stop)
            if request.include_stop:  # vLLM extension; otherwise build_response re-appends it
                body["include_stop_str_in_output"] = True
        if seed is not None:
            body["seed"] = seed
        if self.extra:
            body.update(self.extra)
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


def _aiohttp_transport_available() -> bool:
    import openai

    return hasattr(openai, "DefaultAioHttpClient") and importlib.util.find_spec("httpx_aiohttp") is not None
