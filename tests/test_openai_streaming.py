"""Stopping samples while they run on the OpenAI-compatible backend (issue 21): token
confidences from top-k logprobs, DeepConf's confidence stop and stop_early by streaming, over
real HTTP against the stub server on 127.0.0.1 (no mocks): the stub streams server-sent
events, scripts each token's confidence and records when a client closes a stream."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from reasoning.benchmarks.stub_server import StubServer, logprob

import reasoning as rz
from reasoning.backends._http import StreamedSample
from reasoning.backends.openai_compat import OpenAICompatible
from reasoning.errors import UnsupportedRequest
from reasoning.strategy import Outcome, Strategy
from reasoning.types import Completion, ConfidenceStop, GenerationRequest, GenerationResponse, Message

NO_AIOHTTP = importlib.util.find_spec("httpx_aiohttp") is None
TRANSPORTS = ["httpx", pytest.param("aiohttp", marks=pytest.mark.skipif(NO_AIOHTTP, reason="needs httpx-aiohttp"))]
HANG = 30.0  # seconds a stub stream waits before a token it should never get to send


def chat(text: str = "What is six times seven?", **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(messages=(Message("user", text),), **kwargs)


def backend(server: StubServer, **kwargs: Any) -> OpenAICompatible:
    kwargs.setdefault("backoff", 0.001)
    kwargs.setdefault("timeout", 10.0)  # a stream the client fails to close hangs: fail, not wait HANG
    return OpenAICompatible("stub-model", server.base_url, **kwargs)


def run(b: OpenAICompatible, make: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        try:
            return await make()
        finally:
            await b.aclose()

    return asyncio.run(main())


def generate(b: OpenAICompatible, request: GenerationRequest) -> GenerationResponse:
    return run(b, lambda: b.generate(request))


def words(count: int) -> str:
    return " ".join(f"w{j}" for j in range(count))


def wait_for(condition: Callable[[], bool], seconds: float = 2.0) -> bool:
    """The server notices a closed stream on its own loop thread: give it a moment."""
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def server():
    with StubServer() as s:
        yield s


# ---- token confidences -------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_token_confidences_are_minus_the_mean_of_the_top_k_logprobs(server: StubServer, transport: str) -> None:
    # The stub's 3 candidates of token j: logprob(j), logprob(j) - 0.5, logprob(j) - 1.0, with
    # logprob(j) = -0.05, -0.10, -0.15, -0.20, -0.25: the confidence is -logprob(j) + 0.5.
    by_hand = [0.55, 0.60, 0.65, 0.70, 0.75]
    response = generate(backend(server, transport=transport), chat(n=2, max_tokens=5, top_logprobs=3))
    body = server.requests[-1].body
    assert body["logprobs"] is True and body["top_logprobs"] == 3 and "stream" not in body  # no stream needed
    for c in response.completions:
        assert c.token_confidences == pytest.approx(by_hand)
        assert c.token_logprobs is None  # not asked
        assert c.completion_tokens == 5


def test_token_confidences_on_the_completions_endpoint(server: StubServer) -> None:
    response = generate(backend(server), GenerationRequest(prompt="Q: 6 x 7 =", max_tokens=4, top_logprobs=2,
                                                           logprobs=True))
    assert server.requests[-1].path == "/v1/completions" and server.requests[-1].body["logprobs"] == 2
    [c] = response.completions
    assert c.token_confidences == pytest.approx([0.3, 0.35, 0.4, 0.45])  # -logprob(j) + 0.25
    assert c.token_logprobs == [logprob(j) for j in range(4)]


def test_streamed_token_confidences_follow_the_servers_schedule() -> None:
    schedule = [1.0, 2.0, 0.5, 4.0]
    with StubServer(confidences=lambda body, index: schedule) as server:
        request = chat(n=2, max_tokens=4, top_logprobs=5, stop_early=lambda finished: False)
        response = generate(backend(server), request)
    assert all(r.body["stream"] is True and r.body["top_logprobs"] == 5 for r in server.requests)
    assert [c.token_confidences for c in response.completions] == [schedule, schedule]


def test_top_logprobs_above_twenty_are_refused_before_any_request(server: StubServer) -> None:
    with pytest.raises(UnsupportedRequest):
        generate(backend(server), chat(top_logprobs=21))
    with pytest.raises(UnsupportedRequest):
        generate(backend(server), chat(confidence_stop=ConfidenceStop(1.0, window=4, top_k=32)))
    assert server.count == 0


# ---- the confidence stop --------------------------------------------------------------------

# Two confident tokens... then unsure ones: window 3, threshold 1.5 stops at token 5.
SCHEDULE = [2.0, 2.0, 2.0, 2.0, 0.5, 0.5, 0.5] + [0.5] * 23
RULE = ConfidenceStop(1.5, window=3, top_k=4)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_confidence_stop_cuts_at_the_token_stops_at_gives_and_closes_the_stream(transport: str, endpoint: str) -> None:
    at = RULE.stops_at(SCHEDULE)
    assert at == 5
    # 30 tokens to send; after token 8 the stub waits HANG seconds: only a closed stream ends in time.
    with StubServer(confidences=lambda body, index: SCHEDULE,
                    token_delay=lambda body, index, j: HANG if j >= 8 else 0.0) as server:
        server.responder = lambda body: words(30)
        prompt = {"messages": (Message("user", "Think."),)} if endpoint == "chat" else {"prompt": "Think."}
        request = GenerationRequest(**prompt, n=2, max_tokens=50, confidence_stop=RULE, top_logprobs=4,
                                    logprobs=True)
        started = time.monotonic()
        response = generate(backend(server, transport=transport), request)
        assert time.monotonic() - started < HANG / 3
        assert wait_for(lambda: all(r.disconnected for r in server.requests))
        records = server.requests
    assert len(records) == 2 and all(r.body["n"] == 1 and r.body["stream"] is True for r in records)
    assert all(r.body["stream_options"] == {"include_usage": True} for r in records)
    assert all(not r.finished and r.tokens_sent < 30 and r.usage is None for r in records)
    for c in response.completions:
        assert c.finish_reason == "confidence" and c.stop_reason == "confidence"
        assert c.completion_tokens == at + 1 and c.text == words(at + 1)  # up to and including token 5
        assert c.token_confidences == SCHEDULE[: at + 1]
        assert c.token_logprobs == [-x for x in SCHEDULE[: at + 1]]
    # Two streams, two calls; no stream finished, so each prompt counts as the bound reserved for it.
    b = backend(server)
    assert response.calls == 2 and response.completion_tokens == 2 * (at + 1)
    assert response.prompt_tokens == 2 * b.count_prompt_tokens(request)


def test_a_sample_the_rule_never_stops_runs_to_its_end_with_its_usage() -> None:
    with StubServer(confidences=lambda body, index: [2.0]) as server:
        request = chat(n=2, max_tokens=6, confidence_stop=RULE)
        response = generate(backend(server), request)
        records = server.requests
    assert all(r.finished and not r.disconnected for r in records)
    assert [c.finish_reason for c in response.completions] == ["length", "length"]
    assert all(c.token_confidences is None for c in response.completions)  # top_logprobs not asked
    assert response.completion_tokens == 12 == sum(r.usage["completion_tokens"] for r in records)
    assert response.prompt_tokens == sum(r.usage["prompt_tokens"] for r in records)


def test_a_cut_inside_a_chunk_of_several_tokens_keeps_the_tokens_up_to_the_cut() -> None:
    # vLLM may put several tokens in one chunk (stream intervals, speculative decoding).
    sample = StreamedSample(chat=True, top_k=2, rule=ConfidenceStop(1.0, window=2, top_k=2))

    def entry(token: str, confidence: float) -> dict[str, Any]:
        return {"token": token, "logprob": -confidence, "bytes": list(token.encode()),
                "top_logprobs": [{"token": token, "logprob": -confidence}, {"token": "x", "logprob": -confidence}]}

    chunk = {"delta": {"content": "a b c d"}, "finish_reason": None,
             "logprobs": {"content": [entry("a", 2.0), entry(" b", 0.5), entry(" c", 0.5), entry(" d", 0.5)]}}
    assert sample.feed(chunk) is True
    completion = sample.completion(chat(logprobs=True, top_logprobs=2))
    assert completion.finish_reason == "confidence" and completion.text == "a b c"
    assert completion.completion_tokens == 3 and completion.token_confidences == [2.0, 0.5, 0.5]
    assert sample.dropped == 1


# ---- stop_early: in-flight cancellation --------------------------------------------------------


def _early_server() -> StubServer:
    """Seed 0 writes 3 tokens and seed 1 five (one per 0.05 s); seeds 2 and 3 have 30 to write,
    send 4 at once, then hang: closed when seed 1 finishes, they have sent exactly 4."""

    def delay(body: dict[str, Any], index: int, j: int) -> float:
        if body["seed"] < 2:
            return 0.05
        return HANG if j >= 4 else 0.0

    server = StubServer(token_delay=delay)
    server.responder = lambda body: words({0: 3, 1: 5}.get(body["seed"], 30))
    return server


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stop_early_closes_the_streams_still_running(transport: str) -> None:
    seen: list[list[str]] = []

    def decided(finished: Sequence[Completion]) -> bool:
        seen.append([c.text for c in finished])
        return len(finished) >= 2

    with _early_server() as server:
        request = chat(n=4, seed=0, max_tokens=50, top_logprobs=2, stop_early=decided)
        started = time.monotonic()
        response = generate(backend(server, transport=transport), request)
        assert time.monotonic() - started < HANG / 3
        assert wait_for(lambda: all(r.disconnected or r.finished for r in server.requests))
        records = sorted(server.requests, key=lambda r: r.body["seed"])
    assert seen == [[words(3)], [words(3), words(5)]]  # in finishing order; decided at the second
    assert [(r.finished, r.disconnected, r.tokens_sent) for r in records] == [
        (True, False, 3), (True, False, 5), (False, True, 4), (False, True, 4)]
    assert [c.finish_reason for c in response.completions] == ["stop", "stop", "cancelled", "cancelled"]
    assert [c.completion_tokens for c in response.completions] == [3, 5, 4, 4]
    assert [c.text for c in response.completions] == [words(3), words(5), words(4), words(4)]
    assert response.completions[2].token_confidences == pytest.approx([0.3, 0.35, 0.4, 0.45])
    # Each stream is a call with its own prompt; the closed ones had no usage chunk: they count
    # the prompt tokens the finished streams of the same prompt reported.
    prompt = records[0].usage["prompt_tokens"]
    assert records[1].usage["prompt_tokens"] == prompt and records[2].usage is None
    assert response.calls == 4 and response.prompt_tokens == 4 * prompt
    assert response.completion_tokens == 3 + 5 + 4 + 4
    assert response.info["cancelled"] == 2


def test_stop_early_that_never_decides_reads_every_sample_to_its_end(server: StubServer) -> None:
    response = generate(backend(server), chat(n=3, max_tokens=50, stop_early=lambda finished: False))
    assert server.count == 3 and all(r.finished for r in server.requests)
    assert all(r.body["n"] == 1 and r.body["logprobs"] is True for r in server.requests)  # logprobs count tokens
    assert [c.token_logprobs for c in response.completions] == [None] * 3  # ...but were not asked for
    assert all(c.finish_reason == "stop" for c in response.completions)
    assert response.completion_tokens == sum(r.usage["completion_tokens"] for r in server.requests)
    assert response.cached_prompt_tokens == sum(r.usage["prompt_tokens_details"]["cached_tokens"]
                                                for r in server.requests) > 0


def test_streams_not_sent_yet_when_it_decides_are_never_sent(server: StubServer) -> None:
    # concurrency 1: one stream at a time; the first to finish decides.
    response = generate(backend(server, concurrency=1), chat(n=4, max_tokens=50, stop_early=lambda f: True))
    assert server.count == 1 and response.calls == 1
    assert [c.finish_reason for c in response.completions] == ["stop", "cancelled", "cancelled", "cancelled"]
    assert response.completion_tokens == response.completions[0].completion_tokens
    assert response.prompt_tokens == server.requests[0].usage["prompt_tokens"]


def test_cancelling_the_call_closes_every_stream() -> None:
    with StubServer(token_delay=lambda body, index, j: HANG if j >= 2 else 0.0) as server:
        b = backend(server)

        async def cut_short() -> None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(b.generate(chat(n=3, max_tokens=50, stop_early=lambda f: False)), 0.5)

        run(b, cut_short)
        assert wait_for(lambda: server.count == 3 and all(r.disconnected for r in server.requests))


class InFlight(Strategy):
    """One call of n samples that stops once two have finished."""

    name = "in-flight-test"

    async def run(self, ctx):
        samples = await ctx.generate(n=4, max_tokens=50, seed=0, stop_early=lambda finished: len(finished) >= 2)
        return Outcome(samples[0].answer if samples else None, None, samples,
                       {"answers": [s.answer for s in samples]})


def test_the_ledger_charges_the_partial_tokens_of_cancelled_samples_not_the_reservation() -> None:
    with _early_server() as server:
        b = backend(server)
        budget = rz.Budget(tokens=10_000)
        result = run(b, lambda: rz.asolve("What is 6 x 7?", InFlight(), b, budget))
        records = sorted(server.requests, key=lambda r: r.body["seed"])
    prompt = records[0].usage["prompt_tokens"]
    assert result.usage.completion_tokens == 3 + 5 + 4 + 4  # not 4 x 50 reserved
    assert result.usage.calls == 4 and result.usage.prompt_tokens == 4 * prompt
    [node] = result.trace.calls()
    assert "usage_anomaly" not in node.info  # a stream per sample was reserved as such
    assert [c["finish_reason"] for c in node.completions] == ["stop", "stop", "cancelled", "cancelled"]
    assert result.info["answers"][2:] == [None, None]  # a cut trace has no answer


# ---- the non-streaming path is untouched ---------------------------------------------------------


def test_plain_requests_do_not_stream(server: StubServer) -> None:
    response = generate(backend(server), chat(n=3, max_tokens=50))
    [record] = server.requests
    assert set(record.body) == {"model", "n", "max_tokens", "temperature", "top_p", "messages"}
    assert not record.stream and response.calls == 1
    assert all(c.token_confidences is None for c in response.completions)
