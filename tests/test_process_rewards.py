"""Process rewards: step splitting, aggregation, the LLM-as-PRM verifier, the reward-model interface."""

import asyncio
import math

import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.budget import Ledger
from reasoning.context import Sample
from reasoning.errors import ConfigError
from reasoning.trace import Trace
from reasoning.verifiers import LLMProcessReward, RewardModelPRM, aggregate_steps, make_verifier, split_steps


def context(backend, budget=None):
    return rz.Context(rz.Problem("What is 2+3*4?"), backend, Ledger(budget), Trace(), messages=(), extract=lambda t: None)


@pytest.mark.parametrize(
    "text, steps",
    [
        ("First.\n\nSecond.\n  \nThird.", ["First.", "Second.", "Third."]),
        ("Step 1: a\nmore a\nStep 2: b\n\nStep 3: c", ["Step 1: a\nmore a", "Step 2: b", "Step 3: c"]),
        ("Intro\n**Step 1.** x\n## Step 2: y", ["Intro", "**Step 1.** x", "## Step 2: y"]),
        ("one line only", ["one line only"]),
        ("", []),
        ("\n\n\n", []),
    ],
)
def test_split_steps(text, steps):
    assert split_steps(text) == steps


def test_aggregate_steps():
    scores = [0.9, 0.5, 0.8]
    assert aggregate_steps(scores, "min") == 0.5
    assert aggregate_steps(scores, "last") == 0.8
    assert aggregate_steps(scores, "mean") == pytest.approx(2.2 / 3)
    assert aggregate_steps(scores, "product") == pytest.approx(0.36)
    assert aggregate_steps([], "min") == 0.0
    with pytest.raises(ValueError):
        aggregate_steps(scores, "max")
    with pytest.raises(ValueError):
        LLMProcessReward(aggregate="median")


def prm_backend():
    """Judges a step No when it contains WRONG, Yes otherwise (and checks the prefix it was shown)."""

    def respond(request, index):
        content = request.messages[-1].content
        latest = content.split("Latest step:")[1]
        return f"Checked. Is the step correct (Yes/No)? {'No' if 'WRONG' in latest else 'Yes'}"

    return Scripted(responder=respond, logprobs=False)


@pytest.mark.parametrize("how, expected", [("min", 0.0), ("last", 1.0), ("mean", 2 / 3), ("product", 0.0)])
def test_llm_prm_scores_each_step_prefix(how, expected):
    backend = prm_backend()
    sample = Sample("Step 1: 3*4 = 12\nStep 2: 2+12 = 15 WRONG\nStep 3: so 14", None)
    (score,) = asyncio.run(LLMProcessReward(aggregate=how).score(context(backend), [sample]))
    assert score == pytest.approx(expected)
    assert sample.info["prm"] == {"steps": 3, "step_scores": [1.0, 0.0, 1.0]}
    assert len(backend.requests) == 3 and all(r.n == 1 for r in backend.requests)
    third = backend.requests[2].messages[-1].content
    assert "Step 1: 3*4 = 12" in third.split("Latest step:")[0] and "Step 3" in third.split("Latest step:")[1]


def test_llm_prm_budget_refusals_score_zero_and_stay_within_budget():
    backend = prm_backend()
    sample = Sample("a\n\nb\n\nc\n\nd", None)
    ctx = context(backend, rz.Budget(calls=2))
    (score,) = asyncio.run(LLMProcessReward(aggregate="mean").score(ctx, [sample]))
    assert sample.info["prm"]["step_scores"].count(0.0) == 2 and score == 0.5
    assert ctx.ledger.usage().calls == 2


def test_prm_is_a_registered_verifier():
    assert isinstance(make_verifier("prm"), LLMProcessReward)


def test_reward_model_prm_without_a_model_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="LLMProcessReward"):
        RewardModelPRM(None)
    with pytest.raises(ConfigError, match="no config.json"):
        RewardModelPRM(tmp_path)


def tiny_classifier(folder):
    """A randomly initialised 1-layer BERT classifier and a word-level tokenizer, built offline."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[PAD]", "[UNK]", "what", "is", "2", "+", "3", "*", "4", "12", "14", "15", "=", "step", "so"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=64, num_labels=2,
    )
    transformers.BertForSequenceClassification(config).save_pretrained(folder)


def test_reward_model_prm_scores_steps_with_a_local_classifier(tmp_path):
    tiny_classifier(tmp_path)
    prm = RewardModelPRM(tmp_path, aggregate="product", max_length=64)
    samples = [Sample("3 * 4 = 12\n\n2 + 12 = 14\n\nso 14", None), Sample("", None)]
    scores = asyncio.run(prm.score(context(Scripted()), samples))
    steps = samples[0].info["prm"]["step_scores"]
    assert len(steps) == 3 and all(0.0 < s < 1.0 for s in steps)
    assert scores[0] == pytest.approx(math.prod(steps))
    assert scores[1] == 0.0 and samples[1].info["prm"]["steps"] == 0
