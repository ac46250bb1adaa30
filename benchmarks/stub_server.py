"""A real OpenAI-compatible HTTP server for tests and benchmarks, on 127.0.0.1 only.

    with StubServer(failures=[429, 200], latency=0.01) as server:
        backend = OpenAICompatible("stub-model", server.base_url)
        ...
        assert server.count == 2

or, from a shell: ``python -m reasoning.benchmarks.stub_server --port 8000``.

Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health.

Deterministic rules (tests rely on them):
  * A token is a whitespace-separated word (``str.split()``). Prompt tokens are the words of
    every message's content (chat) or of the prompt (completions; a list of token ids counts
    its length). So prompt tokens <= UTF-8 bytes: the byte bound of backends always holds.
  * The responder gives one text per sample; the server then cuts it at the earliest ``stop``
    string (finish_reason "stop") and at ``max_tokens`` words (finish_reason "length", the
    kept words joined by single spaces). completion_tokens is the word count of what is sent.
  * Token logprobs (when asked) are ``-0.05 * (1 + j % 5)`` for the j-th token of a sample.
    With ``top_logprobs: k`` (chat) or ``logprobs: k`` (completions) each token carries k
    candidates: the sampled token, then ``<alt1>``... with ``logprob(j) - 0.5 * r`` (r = rank,
    0 for the sampled token); so its DeepConf confidence is ``-logprob(j) + 0.25 * (k - 1)``.
    ``confidences(body, index)`` scripts it instead: token j of sample ``index`` then has k
    candidates all at ``-C`` (C the j-th value of the schedule, the last one repeated), the
    sampled one first: its confidence is exactly C (for C a dyadic number such as 0.5, 2.0).
  * ``"stream": true`` answers in server-sent events as vLLM serve does: per choice a role
    chunk (chat), then one chunk per token (its text is the token, leading whitespace
    included, so the chunks join to the text a non-streamed answer has; its logprobs when
    asked), the last token's chunk carrying finish_reason and stop_reason; then, with
    ``stream_options: {"include_usage": true}``, a chunk with no choices and the usage; then
    ``data: [DONE]``. ``token_delay`` (seconds, or ``(body, index, j) -> seconds``) waits
    before token j of choice ``index``. A client that closes the stream is noticed at once
    (also while waiting): the request's ``disconnected`` is set and ``tokens_sent`` says how
    many token chunks had been written; ``usage`` is recorded only when its chunk was sent.

Request handling order: record, auth (401), injected failure (next code of ``failures``),
unknown model (404), n > 1 without ``supports_n`` (400), ``latency``, respond. Besides
HTTP status codes, ``failures`` takes the broken upstream's answers (``MALFORMED``):
"bad_json" (a 200 whose body is not JSON), "no_choices" (a 200 JSON body without
``choices``) and "close" (the connection is closed without an answer). Attributes
(``failures``, ``latency``, ``responder``...) may be changed while the server runs.
``requests`` keeps every request (body, headers, the status answered, the usage reported);
``max_in_flight`` is the most generation requests served at once. ``stub_process()`` runs
the server in a child process, so that a benchmark's client does not share its GIL.

A crash, for failover tests: ``crash()`` (from any thread), or ``crash_after=k`` (the first
generation request to arrive once k answers were delivered sets it off), stops listening and
drops every open connection at once, answers half-way included, as a killed process would;
nothing is answered afterwards. A request's ``delivered`` says its answer was written in full
before any crash (set just before its last bytes are handed to the socket, in the same step of
the server's loop, so a client that has the whole answer always finds it set; for a stream, once
its usage chunk is written), and ``served()`` adds up the usage of the delivered answers: what a
client can have been charged for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from aiohttp import web

Responder = Callable[[dict[str, Any]], "str | Sequence[str]"]
# Token confidences of one sample: (request body, sample index) -> one value per token.
ConfidenceSchedule = Callable[[dict[str, Any], int], Sequence[float]]
TokenDelay = Callable[[dict[str, Any], int, int], float]
# Injected answers of a broken upstream (entries of ``failures`` besides status codes).
MALFORMED = ("bad_json", "no_choices", "close")

DEFAULT_MODEL = "stub-model"
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
}


def _prompt_word_list(body: dict[str, Any]) -> list[str]:
    if "messages" in body:
        return [w for m in body["messages"] for w in _content_text(m.get("content")).split()]
    prompt = body.get("prompt", "")
    return prompt.split() if isinstance(prompt, str) else [str(t) for t in prompt or []]


def _common(a: list[str], b: list[str]) -> int:
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def prompt_words(body: dict[str, Any]) -> int:
    """Prompt tokens of a request body, by the stub's word rule."""
    if "messages" in body:
        return sum(len(_content_text(m.get("content")).split()) for m in body["messages"])
    prompt = body.get("prompt", "")
    if isinstance(prompt, str):
        return len(prompt.split())
    if prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt)
    return sum(len(p.split()) for p in prompt if isinstance(p, str))


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def default_responder(body: dict[str, Any]) -> list[str]:
    """Distinct, deterministic texts derived from the prompt size, seed and sample index."""
    words = prompt_words(body)
    seed = body.get("seed")
    return [
        f"Read {words} prompt words (seed {seed}, sample {i}). The answer is \\boxed{{42}}."
        for i in range(int(body.get("n") or 1))
    ]


# One sentence of GSM8K-style working, repeated by ``long_responder`` to a realistic length.
_WORKING = ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day, so she makes 9 * $2 = $<<9*2=18>>18 "
            "every day at the market.")


def long_responder(words: int) -> Responder:
    """``default_responder``'s texts after about ``words`` words of GSM8K-style working (numbers,
    ``$`` signs, ``<<..>>`` calculations), so that extraction and parsing see answers as long as a
    model's (benchmarks: ``--words``)."""
    unit = _WORKING.split()
    working = " ".join(unit[i % len(unit)] for i in range(words))

    def respond(body: dict[str, Any]) -> list[str]:
        return [f"{working}\n{text}" if working else text for text in default_responder(body)]

    return respond


def logprob(j: int) -> float:
    return -0.05 * (1 + j % 5)


def top_candidates(j: int, k: int, confidence: float | None = None) -> list[float]:
    """The k candidate logprobs of token j, the sampled token's first (see the module docstring)."""
    if confidence is not None:
        return [-confidence] * k
    return [logprob(j) - 0.5 * r for r in range(k)]


def _tokens(text: str) -> list[str]:
    """The text as the stub's tokens (one per word, its leading whitespace included; trailing
    whitespace joins the last one): they join back to ``text``, and there are ``len(text.split())``."""
    tokens = re.findall(r"\s*\S+", text)
    if tokens:
        tokens[-1] += text[len("".join(tokens)):]
    return tokens


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    body: dict[str, Any] | None
    headers: dict[str, str]
    status: int = 0  # the status answered (0 while in flight)
    usage: dict[str, int] | None = None  # the usage reported, for successful generations
    stream: bool = False  # answered as server-sent events
    tokens_sent: int = 0  # streamed token chunks written (all choices)
    disconnected: bool = False  # the client closed the stream before [DONE]
    finished: bool = False  # a stream written to its end ([DONE])
    delivered: bool = False  # the answer was written in full (streamed or not) before any crash


def _error_body(status: int, message: str, code: str | None = None) -> tuple[int, dict[str, Any]]:
    """An OpenAI-style error: {"error": {"message", "type", "param", "code"}}."""
    error = {
        "message": message,
        "type": _ERROR_TYPES.get(status, "server_error"),
        "param": None,
        "code": code or str(status),
    }
    return status, {"error": error}


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    status, body = _error_body(status, message, code)
    return web.json_response(body, status=status)


def _finish(text: str, stop: list[str], max_tokens: int | None,
            include_stop: bool = False) -> tuple[str, list[str], str, str | None]:
    """Apply stop strings, then the max_tokens word cap; return (text, tokens, finish, the stop
    string that ended it), as vLLM serve does (``include_stop_str_in_output`` keeps it)."""
    finish, matched = "stop", None
    cuts = [(i, s) for s in stop if s and (i := text.find(s)) >= 0]
    if cuts:
        at, matched = min(cuts)
        text = text[: at + (len(matched) if include_stop else 0)]
    words = text.split()
    if max_tokens is not None and len(words) > max_tokens:
        words = words[:max_tokens]
        text = " ".join(words)
        finish, matched = "length", None
    return text, words, finish, matched


class StubServer:
    """The server, run in a background thread with its own event loop."""

    def __init__(
        self,
        *,
        responder: Responder | None = None,
        api_key: str | None = None,
        unknown_models: Iterable[str] = (),
        models: Sequence[str] = (DEFAULT_MODEL,),
        failures: Iterable[int | str] = (),
        latency: float = 0.0,
        supports_n: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        confidences: ConfidenceSchedule | None = None,
        token_delay: float | TokenDelay = 0.0,
        crash_after: int | None = None,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the stub server only binds to loopback addresses")
        self.responder: Responder = responder or default_responder
        self._prompts_seen: list[list[str]] = []
        self.api_key = api_key
        self.unknown_models = set(unknown_models)
        self.models = list(models)
        self.failures: deque[int | str] = deque(failures)
        self.latency = latency
        self.supports_n = supports_n
        self.confidences = confidences
        self.token_delay = token_delay
        self.crash_after = crash_after
        self.crashed = False
        self._delivered_count = 0
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._start_error: BaseException | None = None

    # ---- inspection ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def count(self) -> int:
        """Generation requests received (chat + completions), failed ones included."""
        return sum(1 for r in self.requests if r.method == "POST")

    def generation_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST"]

    def delivered(self) -> list[RecordedRequest]:
        """Generation requests whose answer (status 200) was written in full."""
        return [r for r in self.requests if r.method == "POST" and r.delivered]

    def served(self) -> dict[str, int]:
        """The usage of the answers delivered: prompt_tokens, completion_tokens, cached_tokens and
        calls (one per delivered answer)."""
        done = [r for r in self.delivered() if r.usage is not None]
        return {
            "prompt_tokens": sum(r.usage["prompt_tokens"] for r in done),  # type: ignore[index]
            "completion_tokens": sum(r.usage["completion_tokens"] for r in done),  # type: ignore[index]
            "cached_tokens": sum((r.usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)  # type: ignore[union-attr]
                                 for r in done),
            "calls": len(done),
        }

    def crash(self) -> None:
        """Die now, as a killed server would (see the module docstring); from any thread."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            self.crashed = True
            return
        done = threading.Event()

        def crash_then_signal() -> None:
            self._crash_now()
            done.set()

        self._loop.call_soon_threadsafe(crash_then_signal)
        done.wait()

    def _crash_now(self) -> None:
        """On the server's loop: stop listening, drop every connection, answer nothing more."""
        self.crashed = True
        if self._runner is None:
            return
        for site in self._runner.sites:
            if site._server is not None:  # the listening socket: new connections are refused
                site._server.close()
        if self._runner.server is not None:
            for handler in self._runner.server.connections:
                if handler.transport is not None:
                    handler.transport.abort()

    def reset(self) -> None:
        self.requests.clear()
        self.failures.clear()
        self.max_in_flight = self.in_flight

    # ---- app -----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _models(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest("GET", request.path, None, dict(request.headers)))
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    def _authorized(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _chat(self, request: web.Request) -> web.Response:
        return await self._generate(request, chat=True)

    async def _completions(self, request: web.Request) -> web.Response:
        return await self._generate(request, chat=False)

    async def _generate(self, request: web.Request, chat: bool) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "request body is not valid JSON")
        record = RecordedRequest("POST", request.path, body, dict(request.headers))
        self.requests.append(record)
        if self.crash_after is not None and self._delivered_count >= self.crash_after:
            self._crash_now()
        if self.crashed:
            return _dropped(request)
        self.in_flight += 1  # only touched on the server's loop thread
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._authorized(request) and self.failures and self.failures[0] in MALFORMED:
                return self._malformed(request, record, str(self.failures.popleft()))
            status, payload = await self._respond(request, body, chat)
            record.status = status
            if self.crashed:  # died while this one was being worked on
                return _dropped(request)
            if status == 200 and body.get("stream"):
                return await self._stream(request, record, body, payload, chat)
        finally:
            self.in_flight -= 1
        response = web.json_response(payload, status=status)
        if status == 200:
            record.usage = payload["usage"]
            try:
                await response.prepare(request)
                self._delivered(record, True)  # no await between this and the body's write
                await response.write_eof()
            except ConnectionError:  # the client left (or the server crashed) while it was written
                self._delivered(record, False)
        return response

    def _delivered(self, record: RecordedRequest, done: bool) -> None:
        """Mark an answer delivered (not after a crash), or take the mark back (its write failed)."""
        done = done and not self.crashed
        if done != record.delivered:
            record.delivered = done
            self._delivered_count += 1 if done else -1

    # ---- streaming -------------------------------------------------------------------

    async def _stream(self, request: web.Request, record: RecordedRequest, body: dict[str, Any],
                      payload: dict[str, Any], chat: bool) -> web.StreamResponse:
        """Send ``payload`` (a non-streamed answer) as vLLM serve streams it."""
        record.stream = True
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        base = {"id": payload["id"], "object": "chat.completion.chunk" if chat else "text_completion",
                "created": payload["created"], "model": payload["model"]}

        async def send(data: Any) -> None:
            text = data if isinstance(data, str) else json.dumps({**base, **data})
            await response.write(f"data: {text}\n\n".encode())

        chunks = self._chunks(body, payload["choices"], chat)
        try:
            await response.prepare(request)
            for delay, data, is_token in chunks:
                if delay > 0 and not await _pause(request, delay):
                    raise ConnectionResetError("the client closed the stream")
                if _gone(request):
                    raise ConnectionResetError("the client closed the stream")
                await send(data)
                record.tokens_sent += is_token
            # Marked before the client can have the usage it is charged from, taken back if not sent.
            self._delivered(record, True)
            if (body.get("stream_options") or {}).get("include_usage"):
                record.usage = payload["usage"]
                try:
                    await send({"choices": [], "usage": payload["usage"]})
                except BaseException:
                    record.usage = None
                    self._delivered(record, False)
                    raise
            await send("[DONE]")
            await response.write_eof()
            record.finished = True
        except (ConnectionResetError, asyncio.CancelledError):
            record.disconnected = True
            if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
        return response

    def _chunks(self, body: dict[str, Any], choices: list[dict[str, Any]],
                chat: bool) -> Iterator[tuple[float, dict[str, Any], bool]]:
        """(seconds to wait first, chunk, whether it carries a token), choices interleaved by token."""
        logprobs = body.get("logprobs")
        want = bool(logprobs) if chat else logprobs is not None
        top = body.get("top_logprobs") if chat else logprobs
        per_choice = []
        for choice in choices:
            text = choice["message"]["content"] if chat else choice["text"]
            schedule = list(self.confidences(body, choice["index"])) if self.confidences is not None else None
            per_choice.append((choice, _tokens(text), schedule, text))
        if chat:
            for choice, *_ in per_choice:
                yield 0.0, {"choices": [{"index": choice["index"], "delta": {"role": "assistant", "content": ""},
                                         "logprobs": None, "finish_reason": None}]}, False
        longest = max((len(tokens) for _, tokens, _, _ in per_choice), default=0)
        for j in range(max(longest, 1)):
            for choice, tokens, schedule, text in per_choice:
                index = choice["index"]
                if j >= max(len(tokens), 1):
                    continue
                last = j == max(len(tokens), 1) - 1
                token = tokens[j] if tokens else text  # no word at all: its whitespace, in one chunk
                entry = None
                if want and tokens:
                    confidence = schedule[min(j, len(schedule) - 1)] if schedule else None
                    entry = _token_entry(token, j, None if top is None else int(top), confidence, chat)
                out: dict[str, Any] = {"index": index, "finish_reason": choice["finish_reason"] if last else None,
                                       "stop_reason": choice["stop_reason"] if last else None}
                if chat:
                    out["delta"] = {"content": token}
                    out["logprobs"] = {"content": [entry]} if entry is not None else None
                else:
                    out["text"] = token
                    out["logprobs"] = entry
                delay = self.token_delay(body, index, j) if callable(self.token_delay) else self.token_delay
                yield float(delay), {"choices": [out]}, bool(tokens)

    def _malformed(self, request: web.Request, record: RecordedRequest, kind: str) -> web.Response:
        """A broken upstream's answer (see ``MALFORMED``); recorded with status 200 (0: closed)."""
        if kind == "close":
            assert request.transport is not None
            request.transport.abort()  # no status line, no body: the client sees a dropped connection
            return web.Response()
        record.status = 200
        if kind == "bad_json":
            return web.Response(text='{"id": "chatcmpl-broken", "choices": [', content_type="application/json")
        return web.json_response({"id": "chatcmpl-broken", "object": "chat.completion", "usage": None})

    async def _respond(self, request: web.Request, body: dict[str, Any], chat: bool) -> tuple[int, dict[str, Any]]:
        if not self._authorized(request):
            return _error_body(401, "Incorrect API key provided.", "invalid_api_key")
        if self.failures and (status := self.failures.popleft()) != 200:
            return _error_body(status, f"injected failure {status}")
        model = body.get("model")
        if model in self.unknown_models:
            return _error_body(
                404, f"The model `{model}` does not exist or you do not have access to it.", "model_not_found"
            )
        n = int(body.get("n") or 1)
        if n > 1 and not self.supports_n:
            return _error_body(400, "n > 1 is not supported by this provider; n must be 1", "invalid_n")
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        try:
            texts = self.responder(body)
        except Exception as exc:  # noqa: BLE001 - a test's responder failed: answer 500 as a server would
            return _error_body(500, f"responder failed: {exc!r}")
        if isinstance(texts, str):
            texts = [texts] * n
        return 200, self._payload(body, list(texts), chat)

    def _payload(self, body: dict[str, Any], texts: list[str], chat: bool) -> dict[str, Any]:
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        logprobs = body.get("logprobs")
        want_logprobs = bool(logprobs) if chat else logprobs is not None
        choices, completion_tokens = [], 0
        top = body.get("top_logprobs")
        for index, raw in enumerate(texts):
            text, words, finish, matched = _finish(raw, stop, max_tokens, bool(body.get("include_stop_str_in_output")))
            completion_tokens += len(words)
            schedule = list(self.confidences(body, index)) if self.confidences is not None and want_logprobs else None
            if chat:
                choice: dict[str, Any] = {
                    "index": index,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": _chat_logprobs(words, None if top is None else int(top), schedule)
                    if want_logprobs else None,
                    "finish_reason": finish,
                    "stop_reason": matched,
                }
            else:
                choice = {
                    "index": index,
                    "text": text,
                    "logprobs": _text_logprobs(words, int(logprobs or 0), schedule) if want_logprobs else None,
                    "finish_reason": finish,
                    "stop_reason": matched,
                }
            choices.append(choice)
        prompt_tokens = prompt_words(body)
        # A prefix cache as vLLM serve reports it: words of this prompt that a previous prompt began with.
        words = _prompt_word_list(body)
        cached = max((_common(words, seen) for seen in self._prompts_seen), default=0)
        self._prompts_seen.append(words)
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-stub-{len(self.requests)}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model", DEFAULT_MODEL),
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": min(cached, prompt_tokens)},
            },
        }

    # ---- lifecycle -----------------------------------------------------------------

    async def _start_site(self) -> None:
        # shutdown_timeout: do not wait a minute for sleeping handlers when a test ends.
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def _serve(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start_site())
        except OSError as exc:  # port taken: let start() raise it in the caller's thread
            self._start_error = exc
            ready.set()
            return
        ready.set()
        self._loop.run_forever()
        assert self._runner is not None
        self._loop.run_until_complete(self._runner.cleanup())
        # Handlers still sleeping (latency) would be destroyed pending: cancel them first.
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def start(self) -> Self:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="stub-server", daemon=True)
        self._thread.start()
        ready.wait()
        if self._start_error is not None:
            raise self._start_error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _dropped(request: web.Request) -> web.Response:
    """No answer: the connection is dropped (a crashed server's)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response()


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _pause(request: web.Request, seconds: float) -> bool:
    """Wait ``seconds``; False as soon as the client has gone (checked every 5 ms)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not _gone(request):
        left = end - loop.time()
        if left <= 0:
            return True
        await asyncio.sleep(min(left, 0.005))
    return False


def _candidate(r: int, token: str) -> str:
    return token if r == 0 else f"<alt{r}>"


def _token_entry(token: str, j: int, top: int | None, confidence: float | None, chat: bool) -> dict[str, Any]:
    """Token j's logprobs: chat's ``content`` entry, or a completion's (one token) logprobs
    object. ``top``: the body's top_logprobs (chat; None: not given, the sampled token alone)
    or its logprobs (completions)."""
    candidates = top_candidates(j, max(top or 0, 1), confidence)
    if chat:
        return _chat_entry(token, candidates[0], candidates[:1] if top is None else candidates[:top])
    return _text_entry(token, candidates[0], candidates[:top] if top else None)


def _chat_entry(token: str, lp: float, top: list[float]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": lp,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": _candidate(r, token), "logprob": v, "bytes": list(_candidate(r, token).encode())}
                         for r, v in enumerate(top)],
    }


def _text_entry(token: str, lp: float, top: list[float] | None) -> dict[str, Any]:
    return {
        "tokens": [token],
        "token_logprobs": [lp],
        "top_logprobs": [{_candidate(r, token): v for r, v in enumerate(top)}] if top else None,
        "text_offset": [0],
    }


def _chat_logprobs(words: list[str], top: int | None = None,
                   schedule: Sequence[float] | None = None) -> dict[str, Any]:
    """``top``: the body's top_logprobs (None: not given, the sampled token alone)."""
    content = []
    for j, word in enumerate(words):
        token = word if j == 0 else " " + word
        confidence = schedule[min(j, len(schedule) - 1)] if schedule else None
        content.append(_token_entry(token, j, top, confidence, chat=True))
    return {"content": content}


def _text_logprobs(words: list[str], top: int, schedule: Sequence[float] | None = None) -> dict[str, Any]:
    tokens = [w if j == 0 else " " + w for j, w in enumerate(words)]
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    candidates = [top_candidates(j, max(top, 1), schedule[min(j, len(schedule) - 1)] if schedule else None)
                  for j in range(len(tokens))]
    return {
        "tokens": tokens,
        "token_logprobs": [c[0] for c in candidates],
        "top_logprobs": [{_candidate(r, t): v for r, v in enumerate(c[:top])} for t, c in zip(tokens, candidates,
                                                                                              strict=True)]
        if top > 0 else None,
        "text_offset": offsets,
    }


@contextlib.contextmanager
def stub_process(*args: str) -> Iterator[str]:
    """Run the stub in a child process (no GIL shared with the client); yields base_url.

    ``args`` are CLI flags, e.g. ``stub_process("--latency", "0.01")``.
    """
    with subprocess.Popen(
        [sys.executable, "-m", "reasoning.benchmarks.stub_server", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,  # the repository root, for -m
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "listening on http://127.0.0.1:PORT/v1"
            if not line.startswith("listening on "):
                raise RuntimeError(f"stub server failed to start: {line!r}")
            yield line.split()[-1]
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    parser.add_argument("--no-n", action="store_true", help="reject n > 1 with 400")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds before each streamed token")
    parser.add_argument("--unknown-model", action="append", default=[], help="answer 404 for it")
    parser.add_argument("--fail", default="", help="status codes (or bad_json, no_choices, close) to answer first, "
                        "e.g. 429,500")
    parser.add_argument("--words", type=int, default=0,
                        help="about this many words of working before each answer (default: none)")
    opts = parser.parse_args(argv)
    server = StubServer(
        api_key=opts.api_key,
        unknown_models=opts.unknown_model,
        failures=[code if code in MALFORMED else int(code) for code in opts.fail.split(",") if code],
        latency=opts.latency,
        supports_n=not opts.no_n,
        token_delay=opts.token_delay,
        responder=long_responder(opts.words) if opts.words else None,
        host=opts.host,
        port=opts.port,
    )

    async def serve() -> None:
        await server._start_site()
        print(f"listening on {server.base_url}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
