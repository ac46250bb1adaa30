"""The LiteLLM backend against the stub server, over real HTTP on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from reasoning.benchmarks.stub_server import StubServer, logprob
from reasoning.backends.litellm_backend import KEY_VARIABLES, LiteLLM
from reasoning.errors import (
    AuthenticationError,
    BackendTimeout,
    BackendUnavailable,
    BadModel,
    MalformedResponse,
    UnsupportedRequest,
)
from reasoning.types import GenerationRequest, GenerationResponse, Message

ROOT = Path(__file__).resolve().parent.parent


def chat(text: str = "What is six times seven?", **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(messages=(Message("user", text),), **kwargs)


def backend(server: StubServer, model: str = "openai/stub-model", **kwargs: Any) -> LiteLLM:
    kwargs.setdefault("backoff", 0.001)
    return LiteLLM(model, server.base_url, kwargs.pop("api_key", "sk-test"), **kwargs)


def generate(b: LiteLLM, request: GenerationRequest) -> GenerationResponse:
    return asyncio.run(b.generate(request))


@pytest.fixture
def server():
    with StubServer() as s:
        yield s


def test_native_n_one_request_and_usage_matches_server(server: StubServer) -> None:
    b = backend(server)
    assert b.capabilities.native_n and b.name == "litellm:openai/stub-model"
    response = generate(b, chat(n=4, max_tokens=100))
    recorded = server.requests[0]
    assert server.count == 1 and recorded.body["n"] == 4 and recorded.body["model"] == "stub-model"
    assert response.calls == 1 and len({c.text for c in response.completions}) == 4
    assert response.prompt_tokens == recorded.usage["prompt_tokens"]
    assert response.completion_tokens == recorded.usage["completion_tokens"]
    assert sum(c.completion_tokens for c in response.completions) == response.completion_tokens
    assert b.count_prompt_tokens(chat(n=4)) >= response.prompt_tokens


def test_fan_out_for_providers_without_n(server: StubServer) -> None:
    server.supports_n = False
    b = backend(server, native_n=False)
    response = generate(b, chat(n=3, seed=11))
    requests = server.generation_requests()
    assert response.calls == 3 and len(requests) == 3
    assert all(r.body.get("n", 1) == 1 for r in requests)
    assert sorted(r.body["seed"] for r in requests) == [11, 12, 13]
    assert response.prompt_tokens == sum(r.usage["prompt_tokens"] for r in requests)
    assert response.completion_tokens == sum(r.usage["completion_tokens"] for r in requests)


def test_native_n_is_decided_from_the_provider() -> None:
    assert LiteLLM("openai/some-model", "http://127.0.0.1:1/v1").capabilities.native_n
    assert LiteLLM("hosted_vllm/Qwen/Qwen3-8B", "http://127.0.0.1:1/v1").capabilities.native_n
    anthropic = LiteLLM("anthropic/claude-sonnet-4-20250514")
    assert not anthropic.capabilities.native_n
    assert not anthropic.capabilities.logprobs  # litellm would drop them: refuse instead
    assert not LiteLLM("groq/llama-3.1-8b-instant").capabilities.native_n  # rejects n > 1
    assert not LiteLLM("openai/some-model", native_n=False).capabilities.native_n
    with pytest.raises(BadModel, match="provider"):
        LiteLLM("model-without-provider")


def test_sampling_params_stop_and_seed_pass_through(server: StubServer) -> None:
    b = backend(server)
    response = generate(b, chat(n=2, max_tokens=50, temperature=0.3, top_p=0.9, seed=123, stop=("answer",)))
    body = server.requests[-1].body
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (50, 0.3, 0.9, 123)
    assert body["stop"] == ["answer"]
    assert all("answer" not in c.text and c.finish_reason == "stop" for c in response.completions)
    response = generate(b, chat(max_tokens=2))
    assert response.completions[0].finish_reason == "length" and response.completions[0].completion_tokens == 2


def test_logprobs_chat_and_text(server: StubServer) -> None:
    b = backend(server)
    response = generate(b, chat(n=2, logprobs=True, max_tokens=5))
    assert all(c.token_logprobs == [logprob(j) for j in range(5)] for c in response.completions)
    response = generate(b, GenerationRequest(prompt="Question: 6 x 7 =", logprobs=True, max_tokens=4))
    assert response.completions[0].token_logprobs == [logprob(j) for j in range(4)]
    assert response.completions[0].completion_tokens == 4


def test_text_completion_with_raw_prompt(server: StubServer) -> None:
    response = generate(backend(server), GenerationRequest(prompt="Question: 6 x 7 =", n=2))
    recorded = server.requests[-1]
    assert recorded.path == "/v1/completions" and recorded.body["prompt"] == "Question: 6 x 7 ="
    assert recorded.body["n"] == 2 and len(response.completions) == 2
    assert response.prompt_tokens == recorded.usage["prompt_tokens"] == 5


def test_raw_prompt_refused_where_litellm_would_fake_it(server: StubServer) -> None:
    b = backend(server, model="hosted_vllm/stub-model")
    with pytest.raises(UnsupportedRequest, match="raw prompt"):
        generate(b, GenerationRequest(prompt="x"))
    with pytest.raises(UnsupportedRequest):
        generate(b, GenerationRequest(prompt_token_ids=(1, 2)))
    assert server.count == 0


def test_continue_final_message_for_vllm(server: StubServer) -> None:
    b = backend(server, model="hosted_vllm/stub-model")
    messages = (Message("user", "Solve it."), Message("assistant", "Let me think"))
    generate(b, GenerationRequest(messages=messages, continue_final_message=True))
    body = server.requests[-1].body
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_retries_transient_errors_then_succeeds(server: StubServer) -> None:
    server.failures.extend([429, 503, 200])
    response = generate(backend(server), chat(n=2))
    assert [r.status for r in server.requests] == [429, 503, 200]  # litellm itself did not retry
    assert response.info["retries"] == 2 and response.calls == 1


def test_bad_api_key_fails_fast_without_retries() -> None:
    with StubServer(api_key="secret") as server:
        with pytest.raises(AuthenticationError, match="API key"):
            generate(backend(server, api_key="wrong", backoff=1.0, max_retries=4), chat())
        # One attempt of the five allowed: a 401 is not retried (no backoff to wait through).
        assert server.count == 1 and server.requests[0].status == 401


def test_a_missing_api_key_fails_at_once_naming_the_variable(server: StubServer, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    b = backend(server, api_key=None, backoff=1.0)
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
        generate(b, chat())  # litellm calls it an HTTP 500: it was retried 4 times
    assert server.count == 0
    with pytest.raises(AuthenticationError, match="set OPENAI_API_KEY"):
        LiteLLM.from_spec("openai/stub-model", api_base=server.base_url)  # the CLI's check, before any call


def test_key_variables_checked_before_import_are_litellms(monkeypatch) -> None:
    import litellm

    for provider, variable in KEY_VARIABLES.items():
        monkeypatch.delenv(variable, raising=False)
        assert variable in litellm.validate_environment(model=f"{provider}/some-model")["missing_keys"], provider


@pytest.mark.parametrize("broken", ["bad_json", "no_choices"])
def test_a_malformed_body_is_retried_like_a_5xx_then_a_clear_error(server: StubServer, broken: str) -> None:
    server.failures.extend([broken, 200])
    assert generate(backend(server), chat()).info["retries"] == 1
    server.reset()
    server.failures.extend([broken] * 10)
    with pytest.raises(MalformedResponse, match=r"malformed response \(after 3 attempts\)"):
        generate(backend(server, max_retries=2), chat())
    assert server.count == 3


def test_a_closed_connection_is_not_called_a_timeout(server: StubServer) -> None:
    server.failures.extend(["close"] * 10)
    with pytest.raises(BackendUnavailable, match="closed the connection") as failed:
        generate(backend(server, max_retries=2), chat())
    assert not isinstance(failed.value, BackendTimeout) and "timeout" not in str(failed.value).lower()


def test_the_request_timeout_bounds_a_hung_upstream_retries_included(server: StubServer) -> None:
    server.latency = 60
    # The configured timeout ends the call on its first attempt, before the upstream answered.
    with pytest.raises(BackendTimeout, match=r"within the request timeout \(0.5 s.*\(after 1 attempt\)"):
        generate(backend(server, timeout=0.5, max_retries=4), chat())
    assert server.count == 1 and server.requests[0].status == 0  # unanswered; no attempt starts after it


def test_unknown_model_is_bad_model() -> None:
    with StubServer(unknown_models={"no-such-model"}) as server:
        with pytest.raises(BadModel, match="no-such-model"):
            generate(backend(server, model="openai/no-such-model", backoff=1.0), chat())
        assert server.count == 1


def test_unreachable_api_base_is_backend_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    b = LiteLLM("openai/stub-model", url, "sk-test", max_retries=2, backoff=0.01, timeout=2)
    # A refused connection is transient: retried to the limit (3 attempts), then named.
    with pytest.raises(BackendUnavailable, match=rf"cannot reach {re.escape(url)} \(after 3 attempts\)"):
        generate(b, chat())


def test_concurrency_limit_is_respected(server: StubServer) -> None:
    server.latency = 0.05
    b = backend(server, concurrency=3)

    async def many() -> list[GenerationResponse]:
        return await asyncio.gather(*[b.generate(chat()) for _ in range(9)])

    asyncio.run(many())
    assert server.count == 9 and server.max_in_flight == 3


def test_unknown_model_costs_nothing(server: StubServer) -> None:
    b = backend(server)
    assert b.prices() == (0.0, 0.0) and not b.priced  # unknown, not free: a usd budget is refused
    assert generate(b, chat(n=2)).usd == 0.0


def test_a_given_price_prices_an_unknown_model(server: StubServer) -> None:
    b = backend(server, usd_per_token=(1e-6, 3e-6))
    assert b.priced and b.prices() == (1e-6, 3e-6)
    response = generate(b, chat(n=2))
    assert response.usd == pytest.approx(response.prompt_tokens * 1e-6 + response.completion_tokens * 3e-6)
    assert response.usd > 0 and backend(server, model="openai/gpt-4o-mini").priced


def test_known_model_prices_and_usd_from_local_cost_map(server: StubServer) -> None:
    # The stub answers for any model name, so a priced name gives a real, priced response.
    b = backend(server, model="openai/gpt-4o-mini")
    prompt_price, completion_price = b.prices()
    assert prompt_price > 0 and completion_price > 0
    response = generate(b, chat(n=2))
    expected = response.prompt_tokens * prompt_price + response.completion_tokens * completion_price
    assert response.usd == pytest.approx(expected)
    assert b.call_shape(chat(n=2)).usd_per_completion_token == completion_price


def test_describe(server: StubServer) -> None:
    described = backend(server).describe()
    assert described["model"] == "openai/stub-model" and described["api_base"] == server.base_url


def test_lazy_import_and_no_network_for_the_cost_map() -> None:
    """In a fresh process: importing the module does not import litellm; constructing sets
    LITELLM_LOCAL_MODEL_COST_MAP first; no connection leaves 127.0.0.1 at any point."""
    script = textwrap.dedent(
        """
        import asyncio, os, socket, sys
        outside = []
        real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

        def local(host):
            return host in ("127.0.0.1", "localhost", "::1") or host is None

        def connect(self, address):
            if isinstance(address, tuple) and not local(address[0]):
                outside.append(address)
                raise OSError("blocked by test")
            return real_connect(self, address)

        def getaddrinfo(host, *args, **kwargs):
            if not local(host):
                outside.append(host)
                raise OSError("blocked by test")
            return real_getaddrinfo(host, *args, **kwargs)

        socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
        import reasoning.backends.litellm_backend as module
        assert "litellm" not in sys.modules, "litellm imported eagerly"
        assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
        from reasoning.benchmarks.stub_server import StubServer
        from reasoning.types import GenerationRequest, Message
        with StubServer() as server:
            backend = module.LiteLLM("openai/gpt-4o-mini", server.base_url, "sk-test")
            assert backend.prices()[0] > 0
            request = GenerationRequest(messages=(Message("user", "hi"),))
            assert asyncio.run(backend.generate(request)).usd > 0
        assert not outside, outside
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
