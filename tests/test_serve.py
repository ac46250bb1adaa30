"""`reasoning-bench serve` through real clients (openai sync/async, litellm, raw HTTP) on 127.0.0.1."""

import asyncio
import contextlib
import threading
import time

import httpx
import openai
import pytest

from reasoning.benchmarks.cli import main
from reasoning.benchmarks.stub_server import StubServer
from reasoning import Budget
from reasoning.backends import OpenAICompatible, Scripted, ScriptedFailure
from reasoning.errors import BackendError, ConfigError
from reasoning.serve import BackendPool, ReasoningService, parse_model_name
from reasoning.serve.app import ServerThread, check_bind, create_app

KEY = "test-key-123"
PROBLEM = [{"role": "system", "content": "ignored"}, {"role": "user", "content": "What is 6*7?"}]


@contextlib.contextmanager
def running(spec="scripted:42", *, api_key=KEY, api_base=None, default=None, cap="tokens=100000,seconds=60",
            default_budget="", max_request_bytes=20_000, **options):
    pool = BackendPool(spec, api_base=api_base, default=default)
    service = ReasoningService(pool, budget_cap=Budget.parse(cap), default_budget=Budget.parse(default_budget),
                               **options)
    with ServerThread(create_app(service, api_key=api_key, max_request_bytes=max_request_bytes)) as server:
        server.service = service
        yield server


@pytest.fixture(scope="module")
def server():
    with running("scripted:42,42,7") as server:
        yield server


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=30)


def post(server, body, *, key=KEY, **kwargs):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, dict):
        return httpx.post(f"{server.base_url}/chat/completions", json=body, headers=headers, timeout=30, **kwargs)
    return httpx.post(f"{server.base_url}/chat/completions", content=body, headers=headers, timeout=30, **kwargs)


def assert_openai_error(response, status, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "Traceback" not in response.text
    if code:
        assert error["code"] == code, error
    return error


# -- model-name grammar -----------------------------------------------------------------
def test_model_name_grammar():
    known = {"self-consistency", "best-of-n", "greedy"}
    assert str(parse_model_name("self-consistency-8/openai/gpt-4o-mini", known)) == "self-consistency-8/openai/gpt-4o-mini"
    name = parse_model_name("best-of-n-4", known)
    assert (name.strategy, name.n, name.upstream) == ("best-of-n", 4, None)
    name = parse_model_name("greedy/my-model", known)
    assert (name.strategy, name.n, name.upstream) == ("greedy", None, "my-model")
    for bad in ("nope", "self-consistency-x", "", "/gpt-4o"):
        with pytest.raises(ConfigError):
            parse_model_name(bad, known)


# -- real clients ---------------------------------------------------------------------------
def test_openai_client_gets_strategy_answer_usage_and_cost(client):
    raw = client.chat.completions.with_raw_response.create(model="self-consistency-3", messages=PROBLEM)
    reply = raw.parse()
    assert reply.choices[0].message.content.endswith("\\boxed{42}.")
    assert reply.choices[0].finish_reason == "stop"
    extra = reply.model_extra["reasoning"]
    assert extra["answer"] == "42" and extra["strategy"]["n"] == 3 and extra["calls"] == 1
    # Scripted: 20 completion tokens per sample, 3 samples in one native-n call.
    assert reply.usage.completion_tokens == 60
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 60
    assert raw.headers["x-reasoning-stopped-by"] == "none"
    assert float(raw.headers["x-reasoning-cost-usd"]) == 0.0


def test_async_openai_client_with_extra_body(server):
    async def go():
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=30) as aclient:
            return await aclient.chat.completions.create(
                model="greedy", messages=PROBLEM,
                extra_body={"reasoning": {"strategy": "self-consistency", "n": 5, "budget": {"tokens": 60}}},
            )

    reply = asyncio.run(go())
    extra = reply.model_extra["reasoning"]
    assert extra["strategy"]["strategy"] == "self-consistency" and extra["strategy"]["n"] == 5
    assert extra["stopped_by"] == "tokens"  # 60 tokens cannot hold 5 samples: shrunk or refused
    assert reply.usage.total_tokens <= 60


def test_litellm_completion_against_the_server(server):
    import litellm

    reply = litellm.completion(model="openai/self-consistency-4", messages=PROBLEM, api_base=server.base_url,
                               api_key=KEY, timeout=30, num_retries=0)
    assert "\\boxed{42}" in reply.choices[0].message.content
    assert reply.usage.completion_tokens == 80


def test_streaming_sends_the_final_answer_as_chunks(client):
    whole = client.chat.completions.create(model="self-consistency-3", messages=PROBLEM).choices[0].message.content
    stream = client.chat.completions.create(model="self-consistency-3", messages=PROBLEM, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage.completion_tokens == 60


def test_the_openai_clients_usual_parameters_get_200(client):
    usual = {"max_tokens": 300, "temperature": 0.5, "top_p": 0.9, "stop": ["\n\nQuestion:"], "seed": 7, "n": 1,
             "user": "someone"}
    reply = client.chat.completions.create(model="self-consistency-3", messages=PROBLEM, **usual)
    assert reply.choices[0].message.content.endswith("\\boxed{42}.")
    reply = client.chat.completions.create(model="greedy", messages=PROBLEM, max_completion_tokens=1, **{
        k: v for k, v in usual.items() if k != "max_tokens"})
    assert reply.model_extra["reasoning"]["stopped_by"] is None  # a small max_tokens lowers min_tokens: not refused
    chunks = list(client.chat.completions.create(model="greedy", messages=PROBLEM, stream=True,
                                                 stream_options={"include_usage": True}, **usual))
    assert chunks[-1].usage.completion_tokens == 20


def test_max_tokens_reaches_the_upstream():
    with StubServer() as stub, running("openai:stub-model", api_base=stub.base_url) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key=KEY, max_retries=0, timeout=30)
        reply = client.chat.completions.create(model="greedy", messages=PROBLEM, max_tokens=3)
        assert stub.requests[-1].body["max_tokens"] == 3 and reply.usage.completion_tokens == 3


def test_models_and_health(client, server):
    ids = {m.id for m in client.models.list()}
    assert {"self-consistency", "best-of-n", "greedy"} <= ids
    assert httpx.get(server.base_url.removesuffix("/v1") + "/health").json() == {"status": "ok"}


# -- auth -------------------------------------------------------------------------------------
def test_auth_required_when_key_set(server):
    assert_openai_error(post(server, {"model": "greedy", "messages": PROBLEM}, key=None), 401, "invalid_api_key")
    assert_openai_error(post(server, {"model": "greedy", "messages": PROBLEM}, key="wrong"), 401)
    assert httpx.get(f"{server.base_url}/models").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()


def test_auth_off_without_key():
    with running(api_key=None) as open_server:
        assert post(open_server, {"model": "greedy", "messages": PROBLEM}, key=None).status_code == 200


def test_non_loopback_bind_needs_a_key(monkeypatch, capsys):
    for host in ("127.0.0.1", "127.0.0.9", "::1", "localhost"):
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(ConfigError, match="API key"):
            check_bind(host, None)
        check_bind(host, "a-key")
    monkeypatch.delenv("REASONING_API_KEY", raising=False)
    assert main(["serve", "--backend", "scripted", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "refusing" in capsys.readouterr().err


# -- limits and clean errors ----------------------------------------------------------------
def test_request_too_large_is_413(server):
    big = {"model": "greedy", "messages": [{"role": "user", "content": "x" * 30_000}]}
    assert_openai_error(post(server, big), 413, "request_too_large")

    def chunked():  # no content-length: the cap is enforced while reading
        yield b'{"model": "greedy", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"y" * 1000
        yield b'"}]}'

    assert_openai_error(post(server, chunked()), 413)


def raw_budget(budget: bytes) -> bytes:
    """A request whose budget only a raw body can carry (JSON's NaN and Infinity extensions)."""
    head = b'{"model": "greedy", "messages": [{"role": "user", "content": "1+1?"}], '
    return head + b'"reasoning": {"budget": ' + budget + b"}}"


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, "json_invalid"),
        (b"[1, 2]", 400, None),
        ({"model": "greedy"}, 400, "missing"),
        ({"model": "greedy", "messages": []}, 400, None),
        ({"model": "no-such-strategy-4", "messages": PROBLEM}, 404, "model_not_found"),
        ({"model": "greedy", "messages": PROBLEM, "reasoning": {"strategy": "nope"}}, 400, "unknown_strategy"),
        ({"model": "greedy", "messages": PROBLEM, "reasoning": {"budget": {"tokens": 10**9}}}, 400, "budget_over_cap"),
        ({"model": "greedy", "messages": PROBLEM, "reasoning": {"budget": {"seconds": 3600}}}, 400, "budget_over_cap"),
        ({"model": "greedy", "messages": PROBLEM, "reasoning": {"budget": {"tokens": -1}}}, 400, "invalid_budget"),
        ({"model": "greedy", "messages": PROBLEM, "reasoning": {"budget": {"gpus": 1}}}, 400, "invalid_budget"),
        ({"model": "greedy", "messages": PROBLEM, "reasoning": {"budget": "tokens=lots"}}, 400, "invalid_budget"),
        ({"model": "greedy", "messages": PROBLEM, "reasoning": {"budget": "tokens=inf"}}, 400, "invalid_budget"),
        ({"model": "greedy", "messages": PROBLEM, "reasoning": {"budget": "seconds=nan"}}, 400, "invalid_budget"),
        ({"model": "greedy", "messages": PROBLEM, "reasoning": {"budget": {"usd": "inf"}}}, 400, "invalid_budget"),
        (raw_budget(b'{"seconds": NaN}'), 400, None),
        (raw_budget(b'{"flops": Infinity}'), 400, None),
        ({"model": "greedy", "messages": PROBLEM, "reasoning": {"verifier": "oracle"}}, 400, None),
        ({"model": "greedy", "messages": PROBLEM, "reasoning": {"colour": "red"}}, 400, None),
        ({"model": "self-consistency-100000", "messages": PROBLEM}, 400, "n_over_cap"),
        ({"model": "greedy", "messages": PROBLEM, "n": 3}, 400, None),
        ({"model": "greedy", "messages": [{"role": "system", "content": "only system"}]}, 400, None),
        ({"model": "greedy/openai/gpt-4o", "messages": PROBLEM}, 404, "model_not_found"),
    ],
)
def test_bad_requests_get_clean_openai_errors(server, body, status, code):
    assert_openai_error(post(server, body), status, code)


def test_unknown_route_and_method_are_json_errors(server):
    assert_openai_error(httpx.get(f"{server.base_url}/nothing"), 404)
    assert_openai_error(httpx.get(f"{server.base_url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"}), 405)


def test_default_budget_must_fit_the_cap():
    with pytest.raises(ConfigError, match="exceeds"):
        ReasoningService(BackendPool("scripted"), budget_cap=Budget(tokens=100), default_budget=Budget(tokens=1000))
    service = ReasoningService(BackendPool("scripted"), budget_cap=Budget(tokens=100, seconds=5),
                               default_budget=Budget(tokens=50))
    assert service.default_budget == Budget(tokens=50, seconds=5)  # the cap fills what the default leaves out


def test_backend_failure_is_502_and_surprise_is_500_without_details():
    failing = Scripted(failures=[ScriptedFailure(frozenset({1}), BackendError("upstream said no")),
                                 ScriptedFailure(frozenset({2}), RuntimeError("secret internals"))])
    with running("scripted", default=failing) as failing_server:
        response = post(failing_server, {"model": "greedy", "messages": PROBLEM})
        error = assert_openai_error(response, 502, "upstream_error")
        assert error["message"].startswith("the upstream model failed") and "said no" not in response.text
        response = post(failing_server, {"model": "greedy", "messages": PROBLEM})
        assert_openai_error(response, 500, "internal_error")
        assert "secret" not in response.text
        assert post(failing_server, {"model": "greedy", "messages": PROBLEM}).status_code == 200  # still serving


# -- upstream model through the name -----------------------------------------------------------
def test_upstream_model_selected_by_the_name():
    with StubServer(unknown_models=["missing-model"]) as stub, \
            running("openai:stub-model", api_base=stub.base_url) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key=KEY, max_retries=0, timeout=30)
        client.chat.completions.create(model="greedy", messages=PROBLEM)
        client.chat.completions.create(model="self-consistency-2/other/model-b", messages=PROBLEM)
        client.chat.completions.create(model="greedy/other/model-b", messages=PROBLEM)
        assert [r.body["model"] for r in stub.generation_requests()] == ["stub-model", "other/model-b", "other/model-b"]
        assert {"greedy/stub-model", "greedy/other/model-b"} <= {m.id for m in client.models.list()}
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="greedy/missing-model", messages=PROBLEM)
        assert failed.value.status_code == 502


def test_spec_options_are_not_part_of_the_model_name_and_reach_other_upstreams():
    # openai:MODEL?OPTIONS: clients name MODEL; every upstream backend gets the OPTIONS.
    with StubServer() as stub, running("openai:stub-model?affinity_header=x-session", api_base=stub.base_url) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key=KEY, max_retries=0, timeout=30)
        client.chat.completions.create(model="greedy", messages=PROBLEM)
        client.chat.completions.create(model="greedy/other/model-b", messages=PROBLEM)
        requests = stub.generation_requests()
        assert [r.body["model"] for r in requests] == ["stub-model", "other/model-b"]
        assert all(r.headers.get("x-session", "").startswith("problem-") for r in requests)
        names = {m.id for m in client.models.list()}
        assert {"greedy/stub-model", "greedy/other/model-b"} <= names
        assert not any("?" in name for name in names)


# -- a broken upstream --------------------------------------------------------------------------
@contextlib.contextmanager
def proxy_over_stub(**backend_options):
    """The proxy in front of a stub upstream; its backend retries quickly."""
    with StubServer() as stub:
        upstream = OpenAICompatible("stub-model", stub.base_url, backoff=0.001, **backend_options)
        with running("openai:stub-model", api_base=stub.base_url, default=upstream) as proxy:
            yield stub, proxy


@pytest.mark.parametrize("broken", ["bad_json", "no_choices"])
def test_a_malformed_upstream_answer_is_retried_then_502_without_details(broken):
    with proxy_over_stub(max_retries=2) as (stub, proxy):
        stub.failures.extend([broken, 200])
        assert post(proxy, {"model": "greedy", "messages": PROBLEM}).status_code == 200
        assert stub.count == 2
        stub.failures.extend([broken] * 10)
        response = post(proxy, {"model": "greedy", "messages": PROBLEM})
        assert_openai_error(response, 502, "upstream_error")
        assert "malformed" in response.text and stub.count == 2 + 3


def test_502_bodies_do_not_show_the_upstream_url():
    with proxy_over_stub(max_retries=1) as (stub, proxy):
        stub.failures.extend([500] * 10)
        response = post(proxy, {"model": "greedy", "messages": PROBLEM})
        assert_openai_error(response, 502, "upstream_error")
        assert stub.base_url not in response.text and "127.0.0.1" not in response.text
        assert "HTTP 500" not in response.text and "injected" not in response.text  # the upstream's own words
        stub.failures.clear()
        stub.failures.extend(["close"] * 10)
        response = post(proxy, {"model": "greedy", "messages": PROBLEM})
        assert_openai_error(response, 502, "upstream_unavailable")
        assert "127.0.0.1" not in response.text


def test_an_upstream_past_the_request_timeout_is_504():
    with proxy_over_stub(timeout=0.5) as (stub, proxy):
        stub.latency = 60
        response = post(proxy, {"model": "greedy", "messages": PROBLEM})
        assert_openai_error(response, 504, "upstream_timeout")
        assert "127.0.0.1" not in response.text and stub.count == 1


# -- the queue behind --concurrency -----------------------------------------------------------------
@contextlib.contextmanager
def one_slot_taken(server, seconds=2.0):
    """A request that holds the server's only slot for ``seconds`` (its one scripted call)."""
    backend = server.service.pool.default
    backend.latency, before = seconds, len(backend.requests)
    occupant = threading.Thread(target=post, args=(server, {"model": "greedy", "messages": PROBLEM}))
    occupant.start()
    while len(backend.requests) == before:  # it has the slot once its call started
        time.sleep(0.01)
    backend.latency = 0
    yield backend
    occupant.join()


def test_queue_wait_counts_against_the_requests_seconds_budget():
    with running("scripted:42", concurrency=1) as server:
        with one_slot_taken(server, seconds=2.0) as backend:
            backend.latency = 3.0
            # Waits ~2 s of its 4: its 3 s call no longer fits and is cut at the deadline.
            body = {"model": "greedy", "messages": PROBLEM, "reasoning": {"budget": {"seconds": 4}}}
            reply = post(server, body).json()
        assert reply["reasoning"]["stopped_by"] == "seconds" and reply["reasoning"]["answer"] is None
        with one_slot_taken(server, seconds=2.0) as backend:
            # 1 s cannot even wait for the slot: 504, and it never ran.
            body = {"model": "greedy", "messages": PROBLEM, "reasoning": {"budget": {"seconds": 1}}}
            assert_openai_error(post(server, body), 504, "queue_timeout")
            assert len(backend.requests) == 3  # two occupants, one cut at its deadline


def test_the_servers_queue_timeout_bounds_the_wait():
    with running("scripted:42", concurrency=1, queue_timeout=0.5) as server:
        with one_slot_taken(server, seconds=2.0) as backend:
            response = post(server, {"model": "greedy", "messages": PROBLEM})  # budget: the cap's 60 s
            assert_openai_error(response, 504, "queue_timeout")
            assert "busy" in response.json()["error"]["message"] and len(backend.requests) == 1
        assert post(server, {"model": "greedy", "messages": PROBLEM}).status_code == 200  # the slot came back


# -- load ---------------------------------------------------------------------------------------
def test_fifty_concurrent_clients_all_answered_and_usage_adds_up():
    latency = 0.2
    with StubServer(latency=latency) as stub, running("openai:stub-model", api_base=stub.base_url) as proxy:
        async def one(aclient, i):
            return await aclient.chat.completions.create(
                model="self-consistency-3", messages=[{"role": "user", "content": f"Problem number {i}: what is {i}+1?"}])

        async def all_of_them():
            async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=KEY, max_retries=0, timeout=60) as aclient:
                async with asyncio.timeout(60):
                    return await asyncio.gather(*(one(aclient, i) for i in range(50)))

        replies = asyncio.run(all_of_them())
    assert len(replies) == 50 and all(r.model_extra["reasoning"]["answer"] == "42" for r in replies)
    served = [r.usage for r in stub.generation_requests()]
    assert len(served) == 50 and all(r.status == 200 for r in stub.generation_requests())
    assert sum(r.usage.total_tokens for r in replies) == sum(u["total_tokens"] for u in served)
    assert sum(r.usage.prompt_tokens for r in replies) == sum(u["prompt_tokens"] for u in served)
    # Each reply's usage is exactly what the stub reported for that reply's own request.
    by_problem = {next(m["content"] for m in r.body["messages"] if m["role"] == "user"): r.usage
                  for r in stub.generation_requests()}
    for i, reply in enumerate(replies):
        reported = next(u for text, u in by_problem.items() if f"Problem number {i}:" in text)
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
            reported["prompt_tokens"], reported["completion_tokens"])
    # Served one after another, the stub would never have had two in flight: they overlapped.
    assert stub.max_in_flight > 10


def test_a_client_that_hangs_up_cancels_its_solve():
    """A disconnected client's solve is cancelled: its backend call never completes and the
    next request does not queue behind it (one solve at a time here)."""
    with running("scripted:42?latency=3", concurrency=1) as server:
        backend = server.service.pool.default
        cancelled = []  # what the backend's own call saw: cancellation, not completion
        generate = backend.generate

        async def watched(request):
            try:
                return await generate(request)
            except asyncio.CancelledError:
                cancelled.append(request.n)
                raise

        backend.generate = watched
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.base_url}/chat/completions", json={"model": "self-consistency-2", "messages": PROBLEM},
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=0.5)
        # Had the first solve kept running, this one would wait ~3 s for the gate, then 3 s more.
        response = post(server, {"model": "greedy", "messages": PROBLEM})
        assert response.status_code == 200 and cancelled == [2]  # the hung-up solve's one call
        # The hung-up call was made but never completed: only the greedy sample was produced.
        assert backend.requests[0].n == 2 and backend._sample_index == 1


def test_strategy_options_schema_and_options_in_requests(server, client):
    listed = httpx.get(f"{server.base_url}/strategies", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
    sc = listed["self-consistency"]
    assert sc["options"]["properties"]["n"] == {"type": "integer", "minimum": 1, "description": "reasoning paths sampled and voted on (the paper: 40)", "default": 8}
    assert "verifier" not in sc["options"]["properties"]  # objects are not settable over HTTP
    from reasoning.strategies import available

    for name, cls in available().items():  # the schema is the declared fields, for every strategy
        assert set(listed[name]["options"]["properties"]) == {k for k, o in cls.options().items() if o.plain}
    ok = client.chat.completions.create(model="parallel-thinking", messages=PROBLEM,
                                        extra_body={"reasoning": {"options": {"paths": 3, "synthesis_share": 0.3}}})
    assert ok.model_extra["reasoning"]["strategy"]["paths"] == 3
    for options, code in (({"bogus": 1}, "unknown_option"), ({"paths": 0}, "n_over_cap"), ({"paths": 10_000}, "n_over_cap"),
                          ({"synthesis_share": 2.0}, None), ({"paths": "three"}, None)):
        response = post(server, {"model": "parallel-thinking", "messages": PROBLEM, "reasoning": {"options": options}})
        assert_openai_error(response, 400, code)


def test_an_upstream_failure_text_goes_to_the_log_and_never_to_the_caller(caplog):
    from reasoning.serve.errors import upstream_message

    from reasoning.errors import BackendUnavailable

    with caplog.at_level("WARNING", logger="reasoning.serve"):
        status, code, message = upstream_message(BackendUnavailable("http://10.0.0.7:8000 refused: key sk-abc"))
    assert (status, code) == (502, "upstream_unavailable") and "10.0.0.7" not in message and "sk-abc" not in message
    assert "10.0.0.7" in caplog.text  # the operator still sees what failed
