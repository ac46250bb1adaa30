"""Score requests (GenerationRequest.score): a given text fed as the continuation of the prompt,
its tokens' log-probabilities returned, charged as prompt tokens (prefill) and no completion.
ATTS's target model verifies drafts this way."""

import asyncio
import math

import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.context import Context, Problem
from reasoning.errors import UnsupportedRequest
from reasoning.trace import Trace
from reasoning.types import GenerationRequest, Message

CHAT = (Message("user", "What is 2+3?"),)


def test_a_score_request_scores_one_text_and_is_part_of_its_identity():
    with pytest.raises(ValueError, match="n must be 1"):
        GenerationRequest(messages=CHAT, score="5", n=2)
    request = GenerationRequest(messages=CHAT, score="It is 5.", max_tokens=1)
    assert request.to_dict()["score"] == "It is 5."
    assert GenerationRequest.from_dict(request.to_dict()) == request
    assert request.prompt_text().endswith("It is 5.")  # its tokens bound the prompt


def test_scripted_scores_are_charged_as_prompt_tokens_through_the_ledger():
    backend = Scripted(scorer=lambda request: [-0.5, -1.5, -1.0])
    ctx = Context(Problem("What is 2+3?"), backend, rz.Ledger(rz.Budget(tokens=1000)), Trace(), messages=CHAT,
                  extract=lambda text: None)
    plain = backend.count_prompt_tokens(GenerationRequest(messages=CHAT))
    samples = asyncio.run(ctx.generate(GenerationRequest(messages=CHAT, score="it is 5", max_tokens=1), min_tokens=1))
    (sample,) = samples
    assert sample.text == "it is 5" and sample.completion.token_logprobs == [-0.5, -1.5, -1.0]
    assert sample.completion.completion_tokens == 0
    used = ctx.ledger.used
    assert used.completion_tokens == 0 and used.prompt_tokens == plain + 3 and used.calls == 1
    with pytest.raises(rz.ConfigError, match="2 log-probabilities for 3 words"):
        asyncio.run(Scripted(scorer=lambda r: [-1.0, -1.0]).generate(
            GenerationRequest(messages=CHAT, score="it is 5", max_tokens=1)))


def test_a_backend_that_cannot_score_refuses_clearly():
    with pytest.raises(UnsupportedRequest, match="cannot score a given text"):
        asyncio.run(Scripted(logprobs=False).generate(GenerationRequest(messages=CHAT, score="5", max_tokens=1)))


def test_local_renders_a_prompt_and_tokenizes_a_scored_text_once_for_counting_and_sending(monkeypatch, tmp_path):
    # Issue 19: the ledger counts every request (call_shape) before the backend sends it; both
    # used to run the chat template and the tokenizer again.
    from reasoning.backends import _chat, local

    (tmp_path / "config.json").write_text("{}")
    backend = local.Local(tmp_path)
    renders, tokenized = [], []
    monkeypatch.setattr(_chat, "render_prompt_ids",  # Local and VLLM render through _chat.TokenizedPrompts
                        lambda tok, messages, prompt, cont: renders.append(messages) or [1, 2, 3])
    monkeypatch.setattr(backend, "_load_tokenizer", lambda: lambda text, add_special_tokens: tokenized.append(text)
                        or {"input_ids": [7] * len(text.split())})
    request = GenerationRequest(messages=CHAT, score="It is 5.", max_tokens=1)
    assert backend.count_prompt_tokens(request) == 6
    assert backend.prompt_ids(request) + backend.score_ids(request) == [1, 2, 3, 7, 7, 7]
    assert backend.count_prompt_tokens(request.replace(max_tokens=2)) == 6  # shrunk by the ledger: the same prompt
    assert (len(renders), tokenized) == (1, ["It is 5."])


@pytest.mark.slow
def test_local_scores_equal_a_hand_computation_from_the_models_logits():
    import torch

    from reasoning.backends import Local

    backend = Local()

    async def score(text, messages=CHAT, **extra):
        return await backend.generate(GenerationRequest(messages=messages, score=text, max_tokens=1, **extra))

    async def both():
        try:
            return (await score("2 + 3 = 5, so the answer is \\boxed{5}."),
                    await score("banana purple sideways \\boxed{17} tree"),
                    await score(" The answer is 5.", messages=(*CHAT, Message("assistant", "Adding them:")),
                                continue_final_message=True))
        finally:
            await backend.aclose()

    good, bad, continued = asyncio.run(both())
    model, tokenizer = backend._load_model(), backend._tokenizer
    prompt = tokenizer.apply_chat_template([m.to_dict() for m in CHAT], add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    text_ids = tokenizer("2 + 3 = 5, so the answer is \\boxed{5}.", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt_ids + text_ids])).logits[0].float()
    expected = [torch.log_softmax(logits[len(prompt_ids) + i - 1], -1)[t].item() for i, t in enumerate(text_ids)]
    assert good.completions[0].token_logprobs == pytest.approx(expected, abs=1e-4)
    assert good.prompt_tokens == len(prompt_ids) + len(text_ids) and good.completion_tokens == 0
    assert good.completions[0].token_ids == text_ids
    perplexity = [math.exp(-sum(r.completions[0].token_logprobs) / len(r.completions[0].token_logprobs))
                  for r in (good, bad)]
    assert perplexity[0] < 10 < 100 < perplexity[1]  # a sensible answer is far likelier than word salad
    assert continued.completion_tokens == 0 and len(continued.completions[0].token_logprobs) > 0
