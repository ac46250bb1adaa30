"""The OpenAI-compatible HTTP server: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``.

The strategy runs to the end, then its chosen solution is the reply: ``usage`` is the
strategy's total over all its calls, ``reasoning`` (a top-level field) and the headers
``x-reasoning-cost-usd`` / ``x-reasoning-stopped-by`` report cost and the limit that
stopped it. ``stream=true`` sends that final answer as SSE chunks once the strategy has
finished (not token by token). Handlers are async and share one backend per upstream
model, so concurrent clients do not serialise each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Self, TypeVar

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from reasoning.errors import BackendError, ConfigError
from reasoning.solve import Result

from .errors import error_response, upstream_message
from .schemas import ChatCompletionRequest
from .service import ReasoningService, RequestRejected, SolveRequest

log = logging.getLogger("reasoning.serve")
T = TypeVar("T")
DEFAULT_MAX_REQUEST_BYTES = 1_000_000
STREAM_PIECE_CHARS = 64


class BodyTooLarge(Exception):
    pass


def upstream_failure(failed: BackendError) -> Response:
    status, code, message = upstream_message(failed)
    return error_response(status, message, code=code)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a hostname: we cannot know what it resolves to later
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to expose the server beyond this machine without authentication."""
    if not api_key and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host!r} without an API key: anyone who can reach it could spend your "
            "budget. Pass --api-key KEY (or set REASONING_API_KEY), or bind to 127.0.0.1"
        )


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():  # chunked uploads have no content-length: count as we go
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def reasoning_field(result: Result) -> dict[str, Any]:
    return {
        "answer": result.answer,
        "stopped_by": result.stopped_by,
        "usd": result.usage.usd,
        "calls": result.usage.calls,
        "seconds": round(result.usage.seconds, 6),
        "strategy": result.strategy,
    }


def usage_field(result: Result) -> dict[str, int]:
    usage = result.usage
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.tokens}


def reasoning_headers(result: Result) -> dict[str, str]:
    return {"x-reasoning-cost-usd": f"{result.usage.usd:.8f}", "x-reasoning-stopped-by": result.stopped_by or "none"}


def reply_text(result: Result) -> tuple[str, str]:
    text = result.text or result.answer or ""
    # Nothing to say means every call was refused or cut: "length" is the OpenAI word for it.
    return text, "stop" if text else "length"


def completion_body(model: str, result: Result) -> dict[str, Any]:
    text, finish = reply_text(result)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                     "logprobs": None}],
        "usage": usage_field(result),
        "reasoning": reasoning_field(result),
    }


async def sse_chunks(model: str, result: Result, include_usage: bool) -> AsyncIterator[str]:
    text, finish = reply_text(result)
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return f"data: {json.dumps({**base, 'choices': [choice], **extra})}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for start in range(0, len(text), STREAM_PIECE_CHARS):
        yield chunk({"content": text[start:start + STREAM_PIECE_CHARS]})
    yield chunk({}, finish, reasoning=reasoning_field(result))
    if include_usage:
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage_field(result)})}\n\n"
    yield "data: [DONE]\n\n"


def solve_request(body: ChatCompletionRequest, service: ReasoningService) -> SolveRequest:
    if body.n not in (None, 1):
        raise RequestRejected("only n=1 choice is served; set the number of samples with the model name "
                              "(self-consistency-8) or reasoning.n", param="n")
    name = service.parse_model(body.model)
    options = body.reasoning
    return SolveRequest(
        problem=body.problem(),
        strategy=(options.strategy if options and options.strategy else name.strategy),
        n=options.n if options and options.n is not None else name.n,
        verifier=options.verifier if options else None,
        budget=options.budget if options else None,
        upstream=name.upstream,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        options=options.options if options else None,
    )


class ClientDisconnected(Exception):
    """The client hung up before its answer was ready."""


DISCONNECT_POLL_S = 0.25


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it as soon as the client disconnects."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise ClientDisconnected
    finally:
        if not task.done():  # this handler itself was cancelled (server shutdown)
            task.cancel()


def create_app(service: ReasoningService, *, api_key: str | None = None,
               max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> Starlette:
    expected = api_key.encode() if api_key else None

    def authorized(request: Request) -> bool:
        if expected is None:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)

    def unauthorized() -> Response:
        return error_response(401, "missing or incorrect API key: send 'Authorization: Bearer KEY'",
                              code="invalid_api_key", headers={"www-authenticate": "Bearer"})

    async def chat_completions(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        try:
            raw = await read_body(request, max_request_bytes)
        except BodyTooLarge:
            return error_response(413, f"request body over {max_request_bytes} bytes", code="request_too_large")
        try:
            body = ChatCompletionRequest.model_validate_json(raw)
        except ValidationError as bad:
            first = bad.errors()[0]
            where = ".".join(map(str, first["loc"])) or None
            message = "request body is not valid JSON" if first["type"] == "json_invalid" else f"{where}: {first['msg']}"
            return error_response(400, message, param=where, code=first["type"])
        try:
            result = await until_disconnected(request, service.solve(solve_request(body, service)))
        except ClientDisconnected:
            # Nobody will read the answer: the solve was cancelled (its in-flight calls aborted)
            # instead of spending the rest of its budget. 499 is nginx's "client closed request".
            log.info("client disconnected; solve cancelled")
            return Response(status_code=499)
        except RequestRejected as bad:
            return error_response(bad.status, str(bad), param=bad.param, code=bad.code)
        except ConfigError as bad:
            return error_response(400, str(bad), code="invalid_request")
        except BackendError as failed:
            return upstream_failure(failed)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(sse_chunks(body.model, result, include_usage), media_type="text/event-stream",
                                     headers={**reasoning_headers(result), "cache-control": "no-cache"})
        return JSONResponse(completion_body(body.model, result), headers=reasoning_headers(result))

    async def models(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        names = []
        for strategy in service.strategy_names():
            names.append(strategy)
            names.extend(f"{strategy}/{model}" for model in service.pool.model_names())
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "reasoning"} for name in names]
        return JSONResponse({"object": "list", "data": data})

    async def strategies(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        return JSONResponse({"object": "list", "data": service.strategy_schemas()})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, exc.detail or "error", code=str(exc.status_code))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s", request.url.path, exc_info=exc)
        return error_response(500, "internal server error (logged on the server)", code="internal_error")

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/strategies", strategies, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await service.aclose()  # close upstream connections on the loop that opened them

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: unexpected},
                     lifespan=lifespan)


def uvicorn_server(app: Starlette, host: str, port: int, *, log_level: str = "info"):
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug",
                            timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


class ServerThread:
    """Run an app with uvicorn on 127.0.0.1 and a free port in a background thread (tests, notebooks).

        with ServerThread(app) as server:
            OpenAI(base_url=server.base_url, api_key=...)
    """

    def __init__(self, app: Starlette, host: str = "127.0.0.1", start_timeout: float = 20) -> None:
        self.app = app
        self.host = host
        self.start_timeout = start_timeout
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.port = self._socket.getsockname()[1]
        self._server = uvicorn_server(app, host, self.port, log_level="warning")
        self._thread = threading.Thread(target=self._run, name="reasoning-serve", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
