"""The local CPU backend on the real embedded model (slow: run with -m slow).

One backend is loaded for the module; every test really generates, with small max_tokens
so that the whole file stays around a minute or two on 2 cores.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from reasoning.errors import ConfigError
from reasoning.types import GenerationRequest, GenerationResponse, Message

pytestmark = pytest.mark.slow

GSM8K = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May? Think step by step."
)


def chat(text: str, **options: object) -> GenerationRequest:
    return GenerationRequest(messages=(Message("user", text),), **options)


@pytest.fixture(scope="module")
def backend(local_backend):
    return local_backend


def run(backend, request: GenerationRequest) -> GenerationResponse:
    return asyncio.run(backend.generate(request))


def check_counts(backend, response: GenerationResponse, request: GenerationRequest) -> None:
    """Token counts agree with the token ids, the text and the request."""
    tokenizer = backend._tokenizer
    eos = set(backend._eos_ids)
    assert len(response.completions) == request.n
    assert response.prompt_tokens == backend.count_prompt_tokens(request)
    assert response.completion_tokens == sum(c.completion_tokens for c in response.completions)
    for c in response.completions:
        assert c.token_ids is not None and len(c.token_ids) == c.completion_tokens
        assert 1 <= c.completion_tokens <= request.max_tokens
        assert pad_free(c.token_ids, eos), "padding was counted as generated tokens"
        ended = c.token_ids[-1] in eos
        assert c.finish_reason == ("stop" if ended else "length")
        body = c.token_ids[:-1] if ended else c.token_ids
        assert tokenizer.decode(body, skip_special_tokens=True) == c.text
        # Re-tokenising can differ slightly from what was sampled (non-canonical splits).
        retokenised = len(tokenizer(c.text, add_special_tokens=False)["input_ids"])
        assert abs(retokenised - len(body)) <= 2


def pad_free(ids: list[int], eos: set[int]) -> bool:
    return all(t not in eos for t in ids[:-1])


def test_n4_sampling_counts_tokens_per_sequence(backend):
    request = chat(GSM8K, n=4, max_tokens=48, temperature=0.8)
    response = run(backend, request)
    check_counts(backend, response, request)
    assert response.info["device"] == "cpu" and response.info["model"] == "qwen2.5-coder-0.5b-instruct"
    # Short answers end on EOS at different lengths: padding must not be counted.
    short = chat("What is 2 + 3? Reply with the number only.", n=4, max_tokens=32, temperature=0.7)
    response = run(backend, short)
    check_counts(backend, response, short)
    assert any(c.finish_reason == "stop" for c in response.completions)


def test_max_tokens_gives_length(backend):
    request = chat(GSM8K, n=2, max_tokens=5, temperature=0.7)
    response = run(backend, request)
    check_counts(backend, response, request)
    assert [c.finish_reason for c in response.completions] == ["length", "length"]
    assert [c.completion_tokens for c in response.completions] == [5, 5]


def test_stop_string_trims_text(backend):
    request = GenerationRequest(prompt="Counting: 1, 2, 3, 4,", max_tokens=30, temperature=0, stop=("8",))
    completion = run(backend, request).completions[0]
    assert completion.finish_reason == "stop"
    assert "8" not in completion.text and "7" in completion.text
    assert completion.completion_tokens < 30
    # The token that completed the stop string was generated, so it is counted.
    assert "8" in backend._tokenizer.decode(completion.token_ids)


def test_seed_reproducible(backend):
    request = chat("Write a two-line poem about the sea.", n=2, max_tokens=16, temperature=1.0, seed=123)
    first = [c.text for c in run(backend, request).completions]
    again = [c.text for c in run(backend, request).completions]
    other = [c.text for c in run(backend, request.replace(seed=124)).completions]
    assert first == again
    assert first != other


def test_logprobs(backend):
    import torch

    request = chat(GSM8K, n=2, max_tokens=12, temperature=0.7, logprobs=True)
    prompt = backend.prompt_ids(request)
    for c in run(backend, request).completions:
        assert c.token_logprobs is not None and len(c.token_logprobs) == c.completion_tokens
        assert all(math.isfinite(lp) and lp <= 0 for lp in c.token_logprobs)
        # They are the raw model's (before temperature): recompute them in one forward pass.
        with torch.inference_mode():
            logits = backend._model(torch.tensor([prompt + c.token_ids])).logits[0].float()
        reference = torch.log_softmax(logits, dim=-1)[len(prompt) - 1 : -1].gather(
            1, torch.tensor(c.token_ids)[:, None]
        )
        assert max(abs(a - b) for a, b in zip(reference.squeeze(1).tolist(), c.token_logprobs)) < 0.3
    plain = run(backend, request.replace(logprobs=False, n=1))
    assert plain.completions[0].token_logprobs is None


def test_prompt_token_counts_are_exact(backend):
    tokenizer = backend._tokenizer
    request = chat(GSM8K, max_tokens=1, temperature=0)
    templated = tokenizer.apply_chat_template(
        [{"role": "user", "content": GSM8K}], add_generation_prompt=True, tokenize=False
    )
    assert backend.count_prompt_tokens(request) == len(tokenizer(templated)["input_ids"])
    assert run(backend, request).prompt_tokens == backend.count_prompt_tokens(request)
    raw = GenerationRequest(prompt="def fib(n):", max_tokens=1, temperature=0)
    assert (
        run(backend, raw).prompt_tokens
        == backend.count_prompt_tokens(raw)
        == len(tokenizer("def fib(n):")["input_ids"])
    )
    partial = GenerationRequest(
        messages=(Message("user", "Say hi."), Message("assistant", "Hi")),
        continue_final_message=True,
        max_tokens=1,
        temperature=0,
    )
    ids = backend.prompt_ids(partial)
    assert tokenizer.decode(ids).endswith("Hi")  # no end-of-turn after the partial message
    assert run(backend, partial).prompt_tokens == len(ids)


def test_prompt_token_ids_input(backend):
    request = chat("Reply with only the word: banana", max_tokens=8, temperature=0)
    by_text = run(backend, request)
    ids = tuple(backend.prompt_ids(request))
    by_ids = run(backend, GenerationRequest(prompt_token_ids=ids, max_tokens=8, temperature=0))
    assert by_ids.prompt_tokens == len(ids)
    assert by_ids.completions[0].token_ids == by_text.completions[0].token_ids
    with pytest.raises(ConfigError):
        run(backend, GenerationRequest(prompt_token_ids=(10**7,), max_tokens=1))


def test_greedy_n_copies(backend):
    response = run(backend, chat("Reply with only the word: apple", n=3, max_tokens=8, temperature=0))
    assert len({c.text for c in response.completions}) == 1
    assert response.completion_tokens == 3 * response.completions[0].completion_tokens


def test_cancellation_returns_promptly_and_model_stays_usable(backend, monkeypatch):
    from reasoning.backends import local

    # A logical clock per generation: the decoding steps its stopping criterion saw, and the step
    # at which it first saw a row cancelled.
    steps: list[dict] = []
    check = local._RowStopper.__call__

    def counted(self, input_ids, scores, **kwargs):
        if not steps or steps[-1]["stopper"] is not self:
            steps.append({"stopper": self, "steps": 0, "cancel_seen_at": None})
        record = steps[-1]
        record["steps"] += 1
        if record["cancel_seen_at"] is None and any(event.is_set() for event in self.cancelled):
            record["cancel_seen_at"] = record["steps"]
        return check(self, input_ids, scores, **kwargs)

    monkeypatch.setattr(local._RowStopper, "__call__", counted)

    async def scenario() -> GenerationResponse:
        task = asyncio.create_task(backend.generate(chat("Write a very long story about a dragon.", max_tokens=2000)))
        while not steps:  # until it decodes
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await backend.generate(chat("Reply with only the word: yes", max_tokens=4, temperature=0))

    after = asyncio.run(scenario())
    assert after.completions[0].completion_tokens >= 1
    story, answer = steps  # two generations, one after the other
    # The story stopped at the very step that saw the cancellation, far short of its 2000 tokens;
    # the next request then ran on its own (at most its 4 tokens), not behind the story.
    assert story["cancel_seen_at"] == story["steps"] < 2000
    assert answer["cancel_seen_at"] is None and answer["steps"] <= 4


def test_concurrent_requests_are_batched_and_kept_apart(backend):
    words = ["apple", "banana", "cherry", "grape", "lemon", "mango"]
    requests = [
        chat(f"Reply with only the word, in lower case: {w}" + " please" * i, max_tokens=6, temperature=0)
        for i, w in enumerate(words)
    ]

    async def all_at_once() -> list[GenerationResponse]:
        return await asyncio.gather(*(backend.generate(r) for r in requests))

    responses = asyncio.run(all_at_once())
    for word, request, response in zip(words, requests, responses):
        assert word in response.completions[0].text.lower()
        assert response.prompt_tokens == backend.count_prompt_tokens(request)
    assert max(r.info["batch_requests"] for r in responses) > 1
