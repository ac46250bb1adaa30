"""Several replicas behind one OpenAICompatible backend (issue 15), on three real stub servers
on 127.0.0.1: least-outstanding balancing, problem affinity, health and failover when a replica
dies mid-run (usage charged once, equal to what the servers delivered)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import itertools
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from reasoning.benchmarks.stub_server import StubServer, default_responder

import reasoning as rz
from reasoning.backends import from_spec
from reasoning.backends.cache import request_key
from reasoning.backends.openai_compat import OpenAICompatible
from reasoning.context import Problem, affinity_key
from reasoning.errors import BackendUnavailable, ConfigError
from reasoning.types import GenerationRequest, Message

NO_AIOHTTP = importlib.util.find_spec("httpx_aiohttp") is None
TRANSPORTS = ["httpx", pytest.param("aiohttp", marks=pytest.mark.skipif(NO_AIOHTTP, reason="needs httpx-aiohttp"))]


@contextlib.contextmanager
def stubs(count: int = 3, **options: Any) -> Iterator[list[StubServer]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(StubServer(**options)) for _ in range(count)]


def replicas(servers: list[StubServer], **options: Any) -> OpenAICompatible:
    options.setdefault("backoff", 0.001)
    return OpenAICompatible("stub-model", [s.base_url for s in servers], **options)


def run(backend: OpenAICompatible, coro_fn) -> Any:
    async def main() -> Any:
        try:
            return await coro_fn()
        finally:
            await backend.aclose()

    return asyncio.run(main())


def chat(text: str, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(messages=(Message("user", text),), max_tokens=64, **kwargs)


def problem_of(record) -> str:
    """The problem a request belongs to, from its body (the stub's prompt, the problem text in it)."""
    text = " ".join(m["content"] for m in record.body["messages"])
    return next(word for word in text.split() if word.startswith("#"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PROBLEMS = [f"Problem #{i}: what is {i} times six?" for i in range(12)]


def total(results, field: str) -> int:
    return sum(getattr(r.usage, field) for r in results)


def served(servers: list[StubServer], field: str) -> int:
    return sum(s.served()[field] for s in servers)


# ---- balancing and affinity ----------------------------------------------------------------


def test_every_request_of_one_problem_goes_to_one_replica_and_problems_spread_over_all():
    with stubs(latency=0.01) as servers:
        backend = replicas(servers, native_n=False)  # 4 requests per problem, sent at once
        results = run(backend, lambda: rz.asolve_many(PROBLEMS, rz.SelfConsistency(n=4), backend, concurrency=6))
        assert [r.answer for r in results] == ["42"] * len(PROBLEMS)
        where: dict[str, set[int]] = {}
        for i, server in enumerate(servers):
            for record in server.delivered():
                where.setdefault(problem_of(record), set()).add(i)
        assert len(where) == len(PROBLEMS)
        assert all(len(at) == 1 for at in where.values()), where
        assert all(any(i in at for at in where.values()) for i in range(3)), "a replica served no problem"
        assert sum(s.served()["calls"] for s in servers) == 4 * len(PROBLEMS)
        for field, mine in (("prompt_tokens", "prompt_tokens"), ("completion_tokens", "completion_tokens"),
                            ("calls", "calls"), ("cached_tokens", "cached_prompt_tokens")):
            assert total(results, mine) == served(servers, field), field
        # The trace says which replica served each call: the one that has the problem's requests.
        for result in results:
            (call,) = result.trace.calls()
            problem = next(w for w in call.request["messages"][-1]["content"].split() if w.startswith("#"))
            assert call.info["replica"] == servers[where[problem].pop()].base_url


def test_without_affinity_the_samples_of_one_call_are_spread_by_outstanding_requests():
    request = chat("Problem #0: what is six times seven?", n=6, affinity="problem-0")
    for affinity, expected in ((True, [6, 0, 0]), (False, [2, 2, 2])):
        with stubs(latency=0.01) as servers:
            backend = replicas(servers, native_n=False, affinity=affinity)
            response = run(backend, functools.partial(backend.generate, request))
            assert len(response.completions) == 6
            assert [s.served()["calls"] for s in servers] == expected, affinity


def test_a_new_problem_goes_to_the_replica_with_the_fewest_outstanding_requests():
    with stubs(2) as servers:
        backend = replicas(servers)

        async def main():
            for _ in range(4):  # problem a: four calls, all on replica 0 (most picks, none outstanding)
                await backend.generate(chat("Problem #a", affinity="a"))
            servers[1].latency = 0.2
            slow = asyncio.create_task(backend.generate(chat("Problem #b", affinity="b")))
            await asyncio.sleep(0)  # b picked replica 1 (fewer picks) and is outstanding there
            await backend.generate(chat("Problem #c", affinity="c"))
            await slow
            return {k: backend.replicas.pinned(k).index for k in "abc"}

        assert run(backend, main) == {"a": 0, "b": 1, "c": 0}


# ---- failover ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_replica_killed_mid_run_loses_nothing_and_nothing_is_charged_twice(transport):
    with stubs(latency=0.05) as servers:
        dead = servers[1]
        answered = itertools.count(1)

        def dies_at_its_sixth_answer(body: dict) -> list[str]:
            if next(answered) == 6:  # two problems' 8 requests went to it at once: the last ones are cut
                dead._crash_now()
            return default_responder(body)

        dead.responder = dies_at_its_sixth_answer
        backend = replicas(servers, native_n=False, transport=transport)
        results = run(backend, lambda: rz.asolve_many(PROBLEMS, rz.SelfConsistency(n=4), backend, concurrency=6))

        assert dead.crashed
        lost = [r for r in dead.generation_requests() if not r.delivered]
        assert len(lost) >= 2, "the crash cut no request in flight besides the one that set it off"
        assert [r.answer for r in results] == ["42"] * len(PROBLEMS)
        assert all(len(r.trace.calls()[0].completions) == 4 for r in results)
        # Usage = what the survivors delivered + what the dead one delivered before it died.
        for field, mine in (("prompt_tokens", "prompt_tokens"), ("completion_tokens", "completion_tokens"),
                            ("calls", "calls"), ("cached_tokens", "cached_prompt_tokens")):
            assert total(results, mine) == served(servers, field), field
        assert served(servers, "calls") == 4 * len(PROBLEMS)
        assert any(call.info.get("failovers") for r in results for call in r.trace.calls())
        # Affinity: a problem is served by one replica, or by the dead one until it died and then
        # by one survivor.
        where: dict[str, list[StubServer]] = {}
        for server in servers:
            for record in server.delivered():
                where.setdefault(problem_of(record), []).append(server)
        for problem, at in where.items():
            distinct = set(map(id, at))
            assert len(distinct) == 1 or (len(distinct) == 2 and dead in at), problem
        moved = {problem_of(r) for r in lost}
        for problem in moved:
            survivors = {id(s) for s in where[problem] if s is not dead}
            assert len(survivors) == 1, problem


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_streams_cut_by_a_dying_replica_are_read_again_on_another(transport):
    with stubs() as servers:
        first = servers[0]

        def die_mid_stream(body: dict, index: int, j: int) -> float:
            if j == 3 and not first.crashed:
                first._crash_now()  # on the server's loop: three tokens of each stream were sent
            return 0.002

        first.token_delay = die_mid_stream
        backend = replicas(servers, transport=transport)
        request = chat("Problem #s: count to ten", n=3, affinity="s", stop_early=lambda done: False)
        response = run(backend, lambda: backend.generate(request))

        assert first.crashed and all(not r.delivered for r in first.generation_requests())
        assert any(r.tokens_sent >= 3 for r in first.generation_requests())
        assert [c.finish_reason for c in response.completions] == ["stop"] * 3
        assert all("boxed{42}" in c.text for c in response.completions)
        assert response.calls == 3 == served(servers, "calls")
        assert response.prompt_tokens == served(servers, "prompt_tokens")
        assert response.completion_tokens == served(servers, "completion_tokens")
        assert sum(c.completion_tokens for c in response.completions) == response.completion_tokens
        assert response.info["replica"] == servers[1].base_url  # the problem moved to one survivor
        assert response.info["failovers"] == 3


def test_when_every_replica_is_down_the_error_names_each_one():
    with stubs() as servers:
        servers[0].crash_after = 0  # dies when the first request arrives
        for server in servers[1:]:
            server.crash()
        backend = replicas(servers, max_retries=2)
        with pytest.raises(BackendUnavailable) as failed:
            run(backend, lambda: backend.generate(chat("Problem #x")))
        message = str(failed.value)
        assert "after 3 attempts" in message and "no replica is up (3 of 3 down" in message
        for server in servers:
            assert server.base_url in message
        assert servers[0].crashed and servers[0].count == 1 and not servers[0].delivered()


def test_a_replica_back_up_is_found_by_the_probe_when_all_others_are_down():
    port = free_port()
    with stubs(1) as (alive,):
        backend = OpenAICompatible("stub-model", [f"http://127.0.0.1:{port}/v1", alive.base_url], backoff=0.001,
                                   health_interval=3600)

        async def main():
            await backend.generate(chat("Problem #1", affinity="1"))  # tries the dead one first, then moves
            assert [r.up for r in backend.replicas.replicas] == [False, True]
            alive.crash()
            with StubServer(port=port) as revived:  # back, on its old address
                response = await backend.generate(chat("Problem #2", affinity="2"))
                return response, revived.served()["calls"]

        response, revived_calls = run(backend, main)
        assert revived_calls == 1 and response.info["replica"] == f"http://127.0.0.1:{port}/v1"
        assert response.info["failovers"] == 1  # the live-looking one failed, then the probe found the other


def test_a_replica_back_up_gets_requests_again_after_a_background_probe():
    port = free_port()
    with stubs(1) as (alive,):
        backend = OpenAICompatible("stub-model", [f"http://127.0.0.1:{port}/v1", alive.base_url], backoff=0.001,
                                   health_interval=0)

        async def main():
            await backend.generate(chat("Problem #0", affinity="0"))
            assert not backend.replicas.replicas[0].up
            with StubServer(port=port) as revived:
                for k in range(1, 50):  # each pick starts a probe of the down one (interval 0)
                    await backend.generate(chat(f"Problem #{k}", affinity=str(k)))
                    if revived.served()["calls"]:
                        return k, revived.served()["calls"]
                return None, 0

        k, calls = run(backend, main)
        assert calls >= 1 and k is not None
        assert backend.replicas.pinned("0").index == 1  # problem 0 stays where it moved


# ---- the affinity key, configuration ------------------------------------------------------


def test_the_affinity_key_is_set_by_the_context_and_is_not_part_of_the_request_identity():
    a = chat("q", affinity="problem-a")
    b = chat("q", affinity="problem-b")
    assert a == b and hash(a) == hash(b) and "affinity" not in a.to_dict()
    assert request_key("openai:m", a) == request_key("openai:m", b)
    backend = rz.backends.Scripted(["42"])
    rz.solve(Problem("What is 6 times 7?", id="p1"), rz.SelfConsistency(n=2), backend)
    rz.solve("What is 6 times 8?", rz.SelfConsistency(n=2), backend)
    keys = [r.affinity for r in backend.requests]
    assert keys[0] == affinity_key(Problem("What is 6 times 7?", id="p1")) and len(set(keys)) == 2
    assert affinity_key(Problem("x", id="1")) == affinity_key(Problem("x", id="1")) != affinity_key(Problem("x"))


def test_api_base_takes_a_comma_separated_list_and_refuses_bad_ones():
    backend = from_spec("openai:m", api_base="http://127.0.0.1:1/v1/, http://127.0.0.1:2/v1")
    assert [r.url for r in backend.replicas.replicas] == ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]
    assert backend.describe()["replicas"][1]["url"] == "http://127.0.0.1:2/v1"
    assert "replicas" not in from_spec("openai:m", api_base="http://127.0.0.1:1/v1").describe()
    for bad in ("http://127.0.0.1:1/v1,,http://127.0.0.1:2/v1", "http://a/v1,ftp://b", "http://a/v1,http://a/v1/"):
        with pytest.raises(ConfigError, match="--api-base"):
            from_spec("openai:m", api_base=bad)
    with pytest.raises(ConfigError, match="health_interval"):
        OpenAICompatible("m", "http://a/v1,http://b/v1", health_interval=-1)


def test_the_litellm_backend_refuses_a_list_and_points_to_the_replicas_section():
    with pytest.raises(ConfigError, match="Several replicas"):
        from_spec("litellm:openai/m", api_base="http://127.0.0.1:1/v1,http://127.0.0.1:2/v1", api_key="x")


def test_reasoning_bench_run_spreads_problems_over_the_replicas_of_api_base(tmp_path, capsys):
    from reasoning.benchmarks.cli import main

    down = f"http://127.0.0.1:{free_port()}/v1"
    with stubs() as servers:
        urls = ",".join([*(s.base_url for s in servers), down])
        out = tmp_path / "run"
        code = main(["run", "--dataset", "gsm8k", "--limit", "6", "--strategy", "self-consistency", "--n", "3",
                     "--backend", "openai:stub-model", "--api-base", urls, "--max-tokens", "50", "--out", str(out)])
        assert code == 0
        assert "1 of 4 replicas cannot be reached now" in capsys.readouterr().err
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert len(rows) == 6
        assert sum(r["usage"]["calls"] for r in rows) == served(servers, "calls")
        assert sum(r["usage"]["prompt_tokens"] for r in rows) == served(servers, "prompt_tokens")
        prompts = [{json.dumps(r.body["messages"]) for r in s.delivered()} for s in servers]
        assert all(prompts) and sum(map(len, prompts)) == 6  # each problem on one replica, every replica used
    with pytest.raises(ConfigError, match="cannot reach --api-base"):
        from reasoning.benchmarks.cli import _check_reachable

        _check_reachable(f"{down},{down.replace('/v1', '/w1')}")


def test_the_proxy_and_mcp_server_build_their_backends_with_every_replica():
    from reasoning.benchmarks.cli import _service_from_args, build_parser

    with stubs(2) as servers:
        urls = ",".join(s.base_url for s in servers)
        for command in ("serve", "mcp"):
            args = build_parser().parse_args([command, "--backend", "openai:stub-model", "--api-base", urls])
            pool = _service_from_args(args).pool
            for backend in (pool.default, pool.get("another-model")):
                assert [r.url for r in backend.replicas.replicas] == [s.base_url for s in servers]


def test_affinity_header_sends_the_problem_key_to_a_router_in_front_of_the_replicas():
    with stubs(1) as (router,):  # stands for a litellm proxy with session_affinity
        backend = OpenAICompatible("stub-model", router.base_url, affinity_header="x-litellm-session-id",
                                   native_n=False)
        problems = [Problem(f"Problem #{i}: what is {i} times six?", id=str(i)) for i in range(3)]

        async def main():
            await rz.asolve_many(problems, rz.SelfConsistency(n=2), backend)
            streamed = chat("Problem #s", n=2, affinity="problem-s", stop_early=lambda done: False)
            await backend.generate(streamed)

        run(backend, main)
        sent: dict[str, set[str]] = {}
        for record in router.delivered():
            headers = {k.lower(): v for k, v in record.headers.items()}
            sent.setdefault(problem_of(record), set()).add(headers["x-litellm-session-id"])
        assert sent == {**{f"#{p.id}:": {affinity_key(p)} for p in problems}, "#s": {"problem-s"}}
    plain = OpenAICompatible("stub-model", "http://127.0.0.1:1/v1")
    assert plain._headers("problem-x") == {} and "affinity_header" not in plain.describe()


def test_the_openai_spec_takes_the_replica_options():
    backend = from_spec("openai:m?affinity=off&health_interval=0.5&affinity_header=x-session",
                        api_base="http://127.0.0.1:1/v1,http://127.0.0.1:2/v1")
    assert (backend.model, backend.name, backend.replicas.affinity, backend.replicas.health_interval,
            backend.affinity_header) == ("m", "openai:m", False, 0.5, "x-session")
    for bad in ("m?affinity=maybe", "m?health_interval=soon", "m?colour=blue", "?affinity=on"):
        with pytest.raises(ConfigError, match="openai backend"):
            from_spec(f"openai:{bad}", api_base="http://127.0.0.1:1/v1")


def test_the_litellm_router_settings_of_the_readme_pin_each_problem_to_one_replica():
    """The README's mapping for litellm users, checked on litellm's own Router over the stubs."""
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network
    litellm = pytest.importorskip("litellm")
    with stubs() as servers:
        router = litellm.Router(
            model_list=[{"model_name": "qwen", "litellm_params": {"model": "hosted_vllm/stub-model",
                                                                   "api_base": s.base_url, "api_key": "x"}}
                        for s in servers],
            routing_strategy="least-busy", optional_pre_call_checks=["session_affinity"], num_retries=2,
            allowed_fails=1, cooldown_time=5)

        async def main():
            for k in range(3):
                for i in range(3):
                    await router.acompletion(model="qwen", messages=[{"role": "user", "content": f"Problem #{k} q{i}"}],
                                             metadata={"session_id": f"problem-{k}"})

        asyncio.run(main())
        where: dict[str, set[int]] = {}
        for index, server in enumerate(servers):
            for record in server.delivered():
                where.setdefault(problem_of(record), set()).add(index)
        assert sorted(where) == ["#0", "#1", "#2"] and all(len(at) == 1 for at in where.values())


def test_failovers_count_the_moves_of_attempts_that_failed_later():
    """Attempt 1 gives up the dead replica, then gets a 503 from the live one; attempt 2 is
    answered by the live one at once. The move of attempt 1 happened and is reported."""
    port = free_port()
    with stubs(1, failures=[503]) as (alive,):
        backend = OpenAICompatible("stub-model", [f"http://127.0.0.1:{port}/v1", alive.base_url], backoff=0.001,
                                   health_interval=3600)
        response = run(backend, lambda: backend.generate(chat("Problem #1", affinity="1")))  # the dead one first
        assert alive.count == 2 and response.info["replica"] == alive.base_url
        assert response.info["retries"] == 1 and response.info["failovers"] == 1
