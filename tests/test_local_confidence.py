"""Stopping samples while they run on the local backend (issue 21): token confidences, the
in-batch confidence stop (``_ConfidenceProcessor``) and ``stop_early``.

The fast tests drive the processor and the row bookkeeping with hand-made score tensors and
token ids (no model); the slow ones (``-m slow``) run the embedded model, sharing one loaded
backend, with small max_tokens."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest
import torch
from reasoning.strategies.deepconf import DeepConf, lowest_group_confidence, percentile

import reasoning as rz
from reasoning.backends.local import Local, _ConfidenceProcessor, _Job, _RowConfidence, _Rows, _RowStopper
from reasoning.types import ConfidenceStop, GenerationRequest, Message, token_confidence

VOCAB = 64
EOS = 5


def peaked(confidence: float) -> list[float]:
    """Logits whose most likely token (index 0) has probability exp(-confidence): the token
    confidence at top_k = 1 is ``confidence``."""
    if confidence == 0:
        return [0.0] + [float("-inf")] * (VOCAB - 1)
    rest = math.log((math.exp(confidence) - 1) / (VOCAB - 1))
    assert rest < 0
    return [0.0] + [rest] * (VOCAB - 1)


def step(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def run_steps(processor, script):
    """Feed one scores tensor per step; return what the processor returned for each."""
    out = []
    for scores in script:
        out.append(processor(None, scores.clone()).clone())
    return out


def only_eos(row: torch.Tensor) -> bool:
    return row[EOS].item() == 0.0 and torch.isinf(row[torch.arange(VOCAB) != EOS]).all().item()


# -- fast: the processor's arithmetic on hand-made scores ---------------------------------


def test_the_window_drops_the_oldest_token_and_the_stop_step_emits_only_eos():
    # ConfidenceStop.stops_at([1, 4, 0, 0], window 2, threshold 1) == 3: windows 2.5, 2.0, 0.0.
    rule = ConfidenceStop(threshold=1.0, window=2, top_k=1)
    rows = [_RowConfidence(1, rule), None, _RowConfidence(1, None, report_k=1)]
    processor = _ConfidenceProcessor(rows, EOS, ended=lambda row: False)
    plan = [1.0, 4.0, 0.0, 0.0, 0.0]
    script = [step(peaked(c), peaked(2.0), peaked(c)) for c in plan]
    out = run_steps(processor, script)
    stopping = rows[0]
    assert stopping.stopped_at == 3  # not 2 (dropping the wrong token), not never (keeping all)
    assert stopping.confidences == pytest.approx(plan[:4], abs=1e-5)  # nothing recorded after the stop
    assert rule.stops_at(stopping.confidences) == 3  # the recorded numbers replay to the stop exactly
    for i, scores in enumerate(out):
        assert only_eos(scores[0]) == (i == 3)
        if i != 3:
            assert torch.equal(scores[0], script[i][0])
        assert torch.equal(scores[1], script[i][1])  # a row that asked for nothing is not touched
        assert torch.equal(scores[2], script[i][2])  # confidences only: recorded, never forced
    assert rows[2].confidences == pytest.approx(plan, abs=1e-5)
    assert rows[2].stopped_at is None


def test_no_stop_before_a_full_window_and_none_at_the_threshold():
    low_start = _RowConfidence(1, ConfidenceStop(threshold=1.0, window=3, top_k=1))
    at_threshold = _RowConfidence(1, ConfidenceStop(threshold=0.0, window=3, top_k=1))
    processor = _ConfidenceProcessor([low_start, at_threshold], EOS, ended=lambda row: False)
    # Row 0: two zero-confidence tokens, then high ones: no full window is below 1.0.
    # Row 1: one-hot steps (confidence exactly 0): a window mean equal to the threshold is not below it.
    out = run_steps(processor, [step(peaked(a), peaked(0.0)) for a in (0.0, 0.0, 3.5, 3.5)])
    assert low_start.stopped_at is None and at_threshold.stopped_at is None
    assert at_threshold.confidences == [0.0] * 4
    assert not any(only_eos(s[0]) or only_eos(s[1]) for s in out)
    assert len(low_start.confidences) == 4


def test_rows_that_ended_are_not_recorded_or_forced():
    rule = ConfidenceStop(threshold=math.inf, window=2, top_k=1)  # stops every row at its 2nd token
    rows = [_RowConfidence(1, rule), _RowConfidence(1, rule)]
    steps = 0

    def has_ended(row):  # row 1 ended at its first token (EOS, a stop string, cancelled)
        return row == 1 and steps > 0

    processor = _ConfidenceProcessor(rows, EOS, ended=has_ended)
    out = []
    for steps in range(3):
        out.append(processor(None, step(peaked(2.0), peaked(2.0))))
    assert rows[0].stopped_at == 1 and len(rows[0].confidences) == 2
    assert rows[1].stopped_at is None and len(rows[1].confidences) == 1
    assert only_eos(out[1][0]) and not only_eos(out[1][1]) and not only_eos(out[2][1])


def test_each_row_uses_its_own_k_and_a_separate_reported_k():
    # log-probabilities -1, -2, -3, -4, then the rest of the mass spread thinly
    top = [-1.0, -2.0, -3.0, -4.0]
    left = 1 - sum(math.exp(x) for x in top)
    logits = top + [math.log(left / (VOCAB - 4))] * (VOCAB - 4)
    two = _RowConfidence(2, None, report_k=2)
    four = _RowConfidence(4, None, report_k=4)
    mixed = _RowConfidence.of(GenerationRequest(prompt="x", top_logprobs=4,
                                                confidence_stop=ConfidenceStop(99.0, window=1, top_k=2)))
    processor = _ConfidenceProcessor([two, four, mixed], EOS, ended=lambda row: False)
    out = processor(None, step(logits, logits, logits))
    assert two.confidences == pytest.approx([1.5], abs=1e-5)
    assert four.confidences == pytest.approx([2.5], abs=1e-5)
    # The rule runs on its k (2): 1.5 < 99 stops; the confidences returned are over 4.
    assert mixed.confidences == pytest.approx([1.5], abs=1e-5) and mixed.stopped_at == 0
    assert mixed.token_confidences == pytest.approx([2.5], abs=1e-5)
    assert only_eos(out[2]) and not only_eos(out[0])


def test_confidences_are_token_confidence_of_the_row_log_softmax():
    torch.manual_seed(0)
    scores = torch.randn(3, VOCAB) * 3
    rows = [_RowConfidence(20, None, report_k=20) for _ in range(3)]
    _ConfidenceProcessor(rows, EOS, ended=lambda row: False)(None, scores.clone())
    for row in range(3):
        expected = token_confidence(torch.topk(torch.log_softmax(scores[row], -1), 20).values.tolist())
        assert rows[row].confidences == [expected]


class _Digits:
    """A tokenizer stand-in: token i decodes to its digits."""

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(i) for i in ids if not (skip_special_tokens and i == EOS))


def test_stop_early_cancels_the_rows_still_running_with_the_tokens_they_decoded():
    seen = []

    def decide(finished):
        seen.append([c.to_dict() for c in finished])
        return True  # the first finish decides

    job = _Job(GenerationRequest(prompt="x", n=3, temperature=1.0, max_tokens=10, stop_early=decide), [1])
    other = _Job(GenerationRequest(prompt="x", n=1, temperature=1.0, max_tokens=10), [1])
    row_jobs = [job, job, job, other]
    rows = _Rows(row_jobs, _Digits(), {EOS})
    stopper = _RowStopper(1, [j.cancelled for j in row_jobs], (), _Digits(), None, {EOS}, max_new_tokens=10,
                          on_finished=rows.finished)
    ids = torch.tensor([[1]] * 4)
    for tokens in ([7, 8, 9, 7], [7, EOS, 9, 7], [EOS, EOS, 9, 7]):  # row 1 ends at its 2nd token
        ids = torch.cat([ids, torch.tensor(tokens)[:, None]], dim=1)
        done = stopper(ids, None)
    assert seen == [[{"text": "8", "completion_tokens": 2, "finish_reason": "stop", "token_ids": [8, EOS]}]]
    assert rows.cancelled_at == {0: 2, 2: 2}  # cut at the step the decision came
    assert done.tolist() == [True, False, True, False]  # row 1 ended on EOS; the other request runs on
    generated = ids[:, 1:].tolist()
    made = [rows.built.get(r) or rows.completion(r, generated[r], None) for r in range(4)]
    assert [(c.finish_reason, c.token_ids) for c in made] == [
        ("cancelled", [7, 7]), ("stop", [8, EOS]), ("cancelled", [9, 9]), ("length", [7, 7, 7])]


def test_a_failing_stop_early_fails_its_request_only():
    def broken(finished):
        raise RuntimeError("strategy bug")

    job = _Job(GenerationRequest(prompt="x", n=2, temperature=1.0, max_tokens=10, stop_early=broken), [1])
    other = _Job(GenerationRequest(prompt="x", n=1, temperature=1.0, max_tokens=10), [1])
    rows = _Rows([job, job, other], _Digits(), {EOS})
    stopper = _RowStopper(1, [threading.Event() for _ in range(3)], (), _Digits(), None, {EOS}, max_new_tokens=10,
                          on_finished=rows.finished)
    done = stopper(torch.tensor([[1, EOS], [1, 7], [1, 7]]), None)
    assert isinstance(job.error, RuntimeError) and other.error is None
    assert done.tolist() == [False, True, False]  # its rows stop; row 0 ended on EOS by itself


def test_the_local_backend_declares_what_it_honours():
    caps = Local.capabilities
    assert caps.top_logprobs == 20 and caps.confidence_stop and caps.early_stop


# -- slow: the embedded model ------------------------------------------------------------

GSM8K = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May? Think step by step."
)


def chat(text: str, **options: object) -> GenerationRequest:
    return GenerationRequest(messages=(Message("user", text),), **options)


def run(backend, request):
    return asyncio.run(backend.generate(request))


@pytest.mark.slow
def test_confidences_one_per_token_from_the_raw_distribution(local_backend):
    backend = local_backend
    prompt = backend.prompt_ids(chat(GSM8K))
    with torch.inference_mode():
        logits = backend._model(torch.tensor([prompt])).logits[0, -1].float()
    by_hand = token_confidence(torch.topk(torch.log_softmax(logits, dim=-1), 20).values.tolist())
    # Greedy with logprobs (the processor reads the logprob tap's log-softmax) ...
    greedy = run(backend, chat(GSM8K, max_tokens=6, temperature=0, top_logprobs=20, logprobs=True)).completions[0]
    # ... and sampled at a low temperature (its own): the raw distribution's, before temperature.
    sampled = run(backend, chat(GSM8K, n=2, max_tokens=6, temperature=0.3, top_logprobs=20))
    for c in [greedy, *sampled.completions]:
        assert c.token_confidences is not None and len(c.token_confidences) == c.completion_tokens == 6
        assert all(math.isfinite(x) and x > 0 for x in c.token_confidences)
        assert c.token_confidences[0] == pytest.approx(by_hand, rel=1e-4, abs=1e-4)
        assert c.finish_reason == "length"
    assert len(greedy.token_logprobs) == 6
    assert run(backend, chat(GSM8K, max_tokens=2, temperature=0)).completions[0].token_confidences is None


@pytest.mark.slow
def test_an_infinite_threshold_stops_every_sample_at_the_window(local_backend, monkeypatch):
    backend = local_backend
    rule = ConfidenceStop(threshold=math.inf, window=8)
    response = run(backend, chat(GSM8K, n=4, max_tokens=24, temperature=0.8, top_logprobs=20, confidence_stop=rule))
    assert response.completion_tokens == 4 * 8
    for c in response.completions:
        assert (c.completion_tokens, c.finish_reason, len(c.token_ids), len(c.token_confidences)) == (8, "confidence", 8, 8)
        assert c.token_ids[-1] == backend._eos_ids[0]  # the forced end of sequence, counted
        assert rule.stops_at(c.token_confidences) == 7
        assert c.text == backend._tokenizer.decode(c.token_ids[:-1], skip_special_tokens=True)
    # Without top_logprobs: stopped all the same, no confidences returned. Greedy: n copies.
    greedy = run(backend, chat(GSM8K, n=2, max_tokens=24, temperature=0, confidence_stop=rule))
    assert [(c.completion_tokens, c.finish_reason, c.token_confidences) for c in greedy.completions] == [
        (8, "confidence", None)] * 2

    # A request that asks for none of it builds no processor and no per-row bookkeeping.
    from reasoning.backends import local

    def refuse(*args, **kwargs):
        raise AssertionError("built for a plain request")

    monkeypatch.setattr(local, "_ConfidenceProcessor", refuse)
    monkeypatch.setattr(local._Rows, "finished", refuse)
    plain = run(backend, chat(GSM8K, n=2, max_tokens=3, temperature=0.8))
    assert [c.completion_tokens for c in plain.completions] == [3, 3]


@pytest.mark.slow
def test_a_mid_threshold_stops_some_samples_exactly_where_the_rule_says(local_backend):
    backend = local_backend
    window = 4
    free = run(backend, chat(GSM8K, n=6, max_tokens=16, temperature=0.8, top_logprobs=20, seed=11))
    lowest = sorted(min(sum(c.token_confidences[i - window + 1: i + 1]) / window
                        for i in range(window - 1, c.completion_tokens)) for c in free.completions)
    # Between the 3rd and 4th lowest: with the same seed, about half the samples cross it.
    rule = ConfidenceStop(threshold=(lowest[2] + lowest[3]) / 2, window=window)
    stopped = run(backend, chat(GSM8K, n=6, max_tokens=16, temperature=0.8, top_logprobs=20, seed=11,
                                confidence_stop=rule))
    reasons = [c.finish_reason for c in stopped.completions]
    assert "confidence" in reasons and set(reasons) - {"confidence"}, reasons
    for c in stopped.completions:
        assert len(c.token_confidences) == c.completion_tokens
        if c.finish_reason == "confidence":
            assert rule.stops_at(c.token_confidences) == c.completion_tokens - 1
            assert c.token_ids[-1] == backend._eos_ids[0]
        else:
            assert rule.stops_at(c.token_confidences) is None
    assert stopped.completion_tokens == sum(c.completion_tokens for c in stopped.completions)
    assert stopped.completion_tokens < free.completion_tokens


@pytest.mark.slow
def test_stop_early_cancels_the_samples_still_running(local_backend):
    backend = local_backend
    shown = []

    def decide(finished):
        shown.append([c.to_dict() for c in finished])
        return True  # the first sample to finish decides

    # Seeded, so both runs draw the same samples (a seeded request runs alone in its batch).
    request = chat("Name one animal. Reply with the name only.", n=4, max_tokens=12, temperature=1.0, seed=2,
                   top_logprobs=20)
    natural = [c.completion_tokens for c in run(backend, request).completions]
    assert len(set(natural)) > 1, natural  # they end at different steps: the longer ones get cut
    first = min(natural)
    response = run(backend, request.replace(stop_early=decide))
    assert len(shown) == 1 and len(shown[0]) == 1  # asked once, when the first one finished
    assert shown[0][0] in [c.to_dict() for c in response.completions]  # shown as it is returned
    for c, length in zip(response.completions, natural, strict=True):
        if length == first:  # ended at that step by itself
            assert c.finish_reason == "stop" and c.completion_tokens == length
        else:  # lockstep: it had decoded as many tokens as the first, and keeps them
            assert c.finish_reason == "cancelled"
            assert c.completion_tokens == len(c.token_ids) == len(c.token_confidences) == first
            assert c.text == backend._tokenizer.decode(c.token_ids, skip_special_tokens=True)
    assert response.completion_tokens == first * 4 < sum(natural)


@pytest.mark.slow
def test_deepconf_online_on_the_embedded_model(local_backend):
    strategy = DeepConf(n=8, warmup=4, window=16, max_tokens=64)
    result = rz.solve("What is 2 + 3? Be brief.", strategy, local_backend, rz.Budget(tokens=4000))
    info = result.info
    print(info, result.answer)
    warm, online = result.trace.calls()
    assert (warm.request["n"], online.request["n"]) == (4, 4)
    assert online.request["confidence_stop"] == {"threshold": info["threshold"], "window": 16, "top_k": 20}
    completions = warm.completions + online.completions
    assert info["n"] == len(completions) == len(info["min_conf"]) == len(info["tokens"]) == 8
    assert info["min_conf"] == [lowest_group_confidence(c["token_confidences"], 16) for c in completions]
    assert info["tokens"] == [c["completion_tokens"] for c in completions]
    assert info["threshold"] == percentile(info["min_conf"][:4], 90)
    rule = ConfidenceStop(info["threshold"], 16, 20)
    for c, stopped, answer in zip(completions, info["stopped"], info["answers"], strict=True):
        assert len(c["token_confidences"]) == c["completion_tokens"]
        assert stopped == (c["finish_reason"] == "confidence")
        if stopped:
            assert rule.stops_at(c["token_confidences"]) == c["completion_tokens"] - 1 and answer is None
    for c in online.completions:
        if c["finish_reason"] != "confidence":
            assert rule.stops_at(c["token_confidences"]) is None
    voters = sum(conf >= info["threshold"] and not stopped for conf, stopped in zip(info["min_conf"], info["stopped"]))
    assert info["voters"] == voters >= 1
    assert result.answer is not None and result.answer in info["votes"]
    assert result.usage.completion_tokens == sum(info["tokens"])
