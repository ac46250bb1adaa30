"""OpenAICompatible and the stub server, over real HTTP on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasoning.benchmarks.stub_server import StubServer, logprob, stub_process
from reasoning.backends.openai_compat import OpenAICompatible, split_completion_tokens
from reasoning.errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadModel,
    MalformedResponse,
    UnsupportedRequest,
)
from reasoning.types import GenerationRequest, GenerationResponse, Message

NO_AIOHTTP = importlib.util.find_spec("httpx_aiohttp") is None
TRANSPORTS = ["httpx", pytest.param("aiohttp", marks=pytest.mark.skipif(NO_AIOHTTP, reason="needs httpx-aiohttp"))]


def chat(text: str = "What is six times seven?", **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(messages=(Message("user", text),), **kwargs)


def backend(server: StubServer, **kwargs: Any) -> OpenAICompatible:
    kwargs.setdefault("backoff", 0.001)
    return OpenAICompatible("stub-model", server.base_url, **kwargs)


def run(b: OpenAICompatible, make: Callable[[], Awaitable[Any]]) -> Any:
    """One event loop per test; close the client inside it."""

    async def main() -> Any:
        try:
            return await make()
        finally:
            await b.aclose()

    return asyncio.run(main())


def generate(b: OpenAICompatible, request: GenerationRequest) -> GenerationResponse:
    return run(b, lambda: b.generate(request))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server():
    with StubServer() as s:
        yield s


# ---- sampling and accounting ------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_native_n_one_request_and_usage_matches_server(server: StubServer, transport: str) -> None:
    b = backend(server, transport=transport)
    response = generate(b, chat(n=4, max_tokens=100))
    assert server.count == 1 and server.requests[0].body["n"] == 4
    usage = server.requests[0].usage
    assert response.calls == 1
    assert len(response.completions) == 4 and len({c.text for c in response.completions}) == 4
    assert response.prompt_tokens == usage["prompt_tokens"]
    assert response.completion_tokens == usage["completion_tokens"]
    assert sum(c.completion_tokens for c in response.completions) == usage["completion_tokens"]
    assert response.usd == 0.0


def test_fan_out_when_provider_rejects_n(server: StubServer) -> None:
    server.supports_n = False
    b = backend(server, native_n=False)
    assert not b.capabilities.native_n
    response = generate(b, chat(n=3, seed=7))
    requests = server.generation_requests()
    assert response.calls == 3 and len(requests) == 3
    assert all(r.body["n"] == 1 for r in requests)
    assert sorted(r.body["seed"] for r in requests) == [7, 8, 9]  # distinct samples
    assert len({c.text for c in response.completions}) == 3
    assert response.prompt_tokens == sum(r.usage["prompt_tokens"] for r in requests)
    assert response.completion_tokens == sum(r.usage["completion_tokens"] for r in requests)
    shape = b.call_shape(chat(n=3))
    assert shape.prompt_copies_per_sample and shape.calls_per_sample


def test_native_n_against_provider_without_n_explains(server: StubServer) -> None:
    server.supports_n = False
    with pytest.raises(BackendError, match="native_n=False"):
        generate(backend(server), chat(n=2))
    assert server.count == 1  # a 400 is not retried


def test_prompt_bound_is_an_upper_bound(server: StubServer) -> None:
    b = backend(server)
    request = chat("ünïcode words and more words " * 20, n=2)
    response = generate(b, request)
    assert b.count_prompt_tokens(request) >= response.prompt_tokens


def test_length_and_stop_and_sampling_params_pass_through(server: StubServer) -> None:
    b = backend(server)
    response = generate(b, chat(n=2, max_tokens=3, temperature=0.3, top_p=0.9, seed=123))
    assert all(c.finish_reason == "length" and c.completion_tokens == 3 for c in response.completions)
    body = server.requests[-1].body
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (3, 0.3, 0.9, 123)
    response = generate(b, chat(stop=("answer", "</s>")))
    assert server.requests[-1].body["stop"] == ["answer", "</s>"]
    assert response.completions[0].finish_reason == "stop"
    assert "answer" not in response.completions[0].text


def test_chat_logprobs_give_exact_per_sample_tokens(server: StubServer) -> None:
    response = generate(backend(server), chat(n=2, logprobs=True, max_tokens=6))
    assert server.requests[-1].body["logprobs"] is True
    for c in response.completions:
        assert c.token_logprobs == [logprob(j) for j in range(6)]
        assert c.completion_tokens == 6
    assert response.completions[0].mean_logprob == pytest.approx(sum(logprob(j) for j in range(6)) / 6)


def test_text_completion_with_raw_prompt(server: StubServer) -> None:
    request = GenerationRequest(prompt="Question: 6 x 7 =", n=2, logprobs=True, max_tokens=50)
    response = generate(backend(server), request)
    recorded = server.requests[-1]
    assert recorded.path == "/v1/completions" and recorded.body["prompt"] == "Question: 6 x 7 ="
    assert response.prompt_tokens == recorded.usage["prompt_tokens"] == 5
    assert all(len(c.token_logprobs) == c.completion_tokens for c in response.completions)
    assert sum(c.completion_tokens for c in response.completions) == recorded.usage["completion_tokens"]


def test_prompt_token_ids_are_refused_before_any_request(server: StubServer) -> None:
    with pytest.raises(UnsupportedRequest):
        generate(backend(server), GenerationRequest(prompt_token_ids=(1, 2, 3)))
    assert server.count == 0


def test_extra_and_continue_final_message_reach_the_body(server: StubServer) -> None:
    b = backend(server, extra={"top_k": 20})
    messages = (Message("user", "Solve it."), Message("assistant", "Let me think"))
    generate(b, GenerationRequest(messages=messages, continue_final_message=True))
    body = server.requests[-1].body
    assert body["top_k"] == 20
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_scripted_responder(server: StubServer) -> None:
    server.responder = lambda body: [f"answer {i}" for i in range(body["n"])]
    response = generate(backend(server), chat(n=3))
    assert [c.text for c in response.completions] == ["answer 0", "answer 1", "answer 2"]
    assert [c.completion_tokens for c in response.completions] == [2, 2, 2]


# ---- failures -------------------------------------------------------------------------


def test_retries_transient_errors_then_succeeds(server: StubServer) -> None:
    server.failures.extend([429, 503, 200])
    response = generate(backend(server), chat(n=2))
    assert [r.status for r in server.requests] == [429, 503, 200]
    assert response.info["retries"] == 2 and response.calls == 1  # retries are not samples


def test_gives_up_after_max_retries(server: StubServer) -> None:
    server.failures.extend([500] * 10)
    with pytest.raises(BackendError, match="HTTP 500.*3 attempts"):
        generate(backend(server, max_retries=2), chat())
    assert server.count == 3


def test_bad_api_key_fails_fast_without_retries() -> None:
    with StubServer(api_key="secret") as server:
        with pytest.raises(AuthenticationError, match="API key"):
            generate(backend(server, api_key="wrong", backoff=1.0, max_retries=4), chat())
        # One attempt of the five allowed: a 401 is not retried (no backoff to wait through).
        assert server.count == 1 and server.requests[0].status == 401
        assert server.requests[0].headers["Authorization"] == "Bearer wrong"
        generate(backend(server, api_key="secret"), chat())


def test_unknown_model_is_bad_model() -> None:
    with StubServer(unknown_models={"no-such-model"}) as server:
        b = OpenAICompatible("no-such-model", server.base_url, backoff=1.0)
        with pytest.raises(BadModel, match="no-such-model"):
            generate(b, chat())
        assert server.count == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unreachable_server_is_backend_unavailable(transport: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    b = OpenAICompatible("stub-model", url, max_retries=2, backoff=0.01, timeout=2, transport=transport)
    # A refused connection is transient: retried to the limit (3 attempts), then named.
    with pytest.raises(BackendUnavailable, match=rf"cannot reach {re.escape(url)} \(after 3 attempts\)"):
        generate(b, chat())


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("broken", ["bad_json", "no_choices"])
def test_a_malformed_body_is_retried_like_a_5xx_then_a_clear_error(server: StubServer, broken: str,
                                                                     transport: str) -> None:
    server.failures.extend([broken, 200])
    response = generate(backend(server, transport=transport), chat())
    assert server.count == 2 and response.info["retries"] == 1 and response.completions
    server.reset()
    server.failures.extend([broken] * 10)
    with pytest.raises(MalformedResponse, match=r"malformed response \(after 3 attempts\)"):
        generate(backend(server, max_retries=2, transport=transport), chat())
    assert server.count == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_closed_connection_is_not_called_a_timeout(server: StubServer, transport: str) -> None:
    server.failures.extend(["close"] * 10)
    with pytest.raises(BackendUnavailable, match="closed the connection") as failed:
        generate(backend(server, max_retries=2, transport=transport), chat())
    assert not isinstance(failed.value, BackendTimeout) and "timeout" not in str(failed.value).lower()
    assert server.count == 3  # retried like any connection failure


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_request_timeout_bounds_a_hung_upstream_retries_included(server: StubServer, transport: str) -> None:
    server.latency = 60  # hung: answers long after any timeout
    # The configured timeout ends the call on its first attempt (of 5), before the upstream answered.
    with pytest.raises(BackendTimeout, match=r"within the request timeout \(0.5 s.*\(after 1 attempt\)"):
        generate(backend(server, timeout=0.5, max_retries=4, transport=transport), chat())
    assert server.count == 1 and server.requests[0].status == 0  # unanswered; no attempt starts after the timeout


def test_the_request_timeout_must_be_a_positive_number(server: StubServer) -> None:
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="request timeout"):
            backend(server, timeout=bad)


# ---- concurrency and loops ------------------------------------------------------------


def test_concurrency_limit_is_respected(server: StubServer) -> None:
    server.latency = 0.05
    b = backend(server, concurrency=3)

    async def many() -> list[GenerationResponse]:
        return await asyncio.gather(*[b.generate(chat()) for _ in range(9)])

    run(b, many)
    assert server.count == 9 and server.max_in_flight == 3


def test_fan_out_shares_the_concurrency_limit(server: StubServer) -> None:
    server.latency = 0.02
    response = generate(backend(server, concurrency=2, native_n=False), chat(n=6))
    assert response.calls == 6 and server.max_in_flight == 2


def test_cancellation_releases_the_slot(server: StubServer) -> None:
    server.latency = 0.5
    b = backend(server, concurrency=1)

    async def cancel_then_call() -> GenerationResponse:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(b.generate(chat()), 0.05)
        server.latency = 0.0
        return await asyncio.wait_for(b.generate(chat()), 5)

    assert run(b, cancel_then_call).completions


def test_backend_survives_successive_event_loops(server: StubServer) -> None:
    b = backend(server)
    for _ in range(3):
        assert generate(b, chat()).completions
    assert server.count == 3


# ---- the stub itself --------------------------------------------------------------------


def test_stub_models_health_and_word_rule(server: StubServer) -> None:
    import openai

    async def models() -> list[str]:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x") as client:
            return [m.id async for m in client.models.list()]

    assert asyncio.run(models()) == ["stub-model"]
    server.responder = lambda body: "one two  three\nfour five"
    response = generate(backend(server), chat("a b c", max_tokens=4))
    assert response.prompt_tokens == 3
    assert response.completions[0].text == "one two three four"  # cut at 4 words
    assert response.completions[0].finish_reason == "length"


def test_stub_runs_as_a_process() -> None:
    with stub_process("--latency", "0") as url:
        b = OpenAICompatible("stub-model", url)
        assert generate(b, chat(n=2)).completion_tokens > 0


# ---- splitting a reported total -------------------------------------------------------


def test_split_uses_length_and_bytes() -> None:
    assert split_completion_tokens(10, ["x"], ["stop"], 100) == [10]
    counts = split_completion_tokens(30, ["a" * 10, "b" * 90, "c" * 500], ["stop", "stop", "length"], 20)
    assert counts[2] == 20 and sum(counts) == 30 and counts[1] > counts[0]


@given(
    st.lists(st.tuples(st.text(max_size=30), st.sampled_from(["stop", "length"])), min_size=1, max_size=8),
    st.integers(1, 50),
    st.data(),
)
def test_split_sums_to_total_and_respects_max_tokens(samples, max_tokens, data) -> None:
    texts = [t for t, _ in samples]
    finishes = [f for _, f in samples]
    n_length = finishes.count("length")
    low = max_tokens * n_length
    high = max_tokens * len(samples) if n_length < len(samples) else low
    total = data.draw(st.integers(low, high))
    counts = split_completion_tokens(total, texts, finishes, max_tokens)
    assert sum(counts) == total
    assert all(0 <= c <= max_tokens for c in counts)
    if len(samples) > 1:
        assert all(c == max_tokens for c, f in zip(counts, finishes, strict=True) if f == "length")


def test_text_continuation_over_http_keeps_stops_and_reads_cached_tokens():
    """ctx.extend against an OpenAI-compatible server (the stub imitates vLLM serve: it names the
    stop string and reports prompt_tokens_details.cached_tokens): the prefix goes back as the
    assistant turn to continue."""
    import reasoning as rz
    from reasoning.answers import extract_answer
    from reasoning.budget import Ledger
    from reasoning.context import Prefix
    from reasoning.trace import Trace

    steps = ["Step one.\n\n", "Step two.\n\n", "So \\boxed{4}."]

    def responder(body):
        last = body["messages"][-1]
        done = last["content"] if last["role"] == "assistant" else ""
        at = sum(s in done for s in steps)
        return ["".join(steps[at:])] * body.get("n", 1)

    with StubServer(responder=responder) as server:
        backend = OpenAICompatible("stub", base_url=server.base_url, api_key="k")
        ctx = rz.Context(rz.Problem("q"), backend, Ledger(), Trace(), messages=(Message("user", "What is 2+2?"),),
                         extract=extract_answer)

        async def walk():
            prefix, seen = Prefix(), []
            while not prefix.complete and len(seen) < 5:
                [sample] = await ctx.extend(prefix, stop=["\n\n"], max_tokens=64)
                seen.append(sample)
                prefix = sample.prefix
            await backend.aclose()
            return prefix, seen

        prefix, seen = asyncio.run(walk())
        bodies = [r.body for r in server.requests]
    assert prefix.steps == tuple(steps) and prefix.complete and seen[-1].answer == "4"
    assert [s.completion.stop_reason for s in seen] == ["\n\n", "\n\n", "eos"]
    assert bodies[1]["continue_final_message"] and bodies[1]["messages"][-1] == {"role": "assistant", "content": steps[0]}
    assert all(b.get("include_stop_str_in_output") for b in bodies)
    assert ctx.ledger.usage().cached_prompt_tokens > 0
