"""Process rewards: step splitting, aggregation, the LLM-as-PRM verifier, the reward-model interface."""

import asyncio
import math
import re

import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.budget import Ledger
from reasoning.context import Sample
from reasoning.errors import ConfigError
from reasoning.trace import Trace
from reasoning.verifiers import (
    LLMProcessReward,
    RewardModelPRM,
    TokenClassificationPRM,
    aggregate_steps,
    make_verifier,
    split_steps,
)


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


def test_llm_prm_drops_judge_chains_without_a_verdict():
    """Without logprobs the step score is the share of Yes among the chains that gave a
    verdict: Yes, (rambling), Yes -> 1.0, not 2/3; a step judged only by rambling scores 0."""
    chains = {"good": ["Is the step correct (Yes/No)? Yes", "Hmm, let me think about it", "Is the step correct (Yes/No)? Yes"],
              "vague": ["I am not sure", "Hmm", "Let me see"]}
    backend = Scripted(logprobs=False, responder=lambda req, i: chains[
        "good" if "good" in req.messages[-1].content.split("Latest step:")[-1] else "vague"][i % 3])
    prm = LLMProcessReward(k=3, temperature=0.7)
    (scores,) = asyncio.run(prm.step_scores(context(backend), [path("a good step", "a vague step")]))
    assert scores == [pytest.approx(1.0), 0.0]
    assert all(r.n == 3 for r in backend.requests)


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


# -- the ProcessVerifier interface: per-problem step cache ---------------------------------


def judged_steps(backend):
    """The latest step of each judge call the backend received, in order."""
    latest = [r.messages[-1].content.split("Latest step:")[1] for r in backend.requests]
    return [text.split("Check the latest")[0].strip() for text in latest]


def path(*steps):
    return rz.Prefix(tuple(f"{s}\n\n" for s in steps))


def test_llm_prm_is_a_process_verifier_and_a_verifier():
    assert isinstance(LLMProcessReward(), rz.ProcessVerifier) and isinstance(LLMProcessReward(), rz.Verifier)


def test_scoring_a_path_depth_by_depth_makes_one_judge_call_per_step():
    backend, prm = prm_backend(), LLMProcessReward()
    ctx = context(backend)
    steps = ["s1", "s2", "s3", "s4", "s5"]
    for depth in range(1, 6):  # as a search does: the path grows a step at a time
        (scores,) = asyncio.run(prm.step_scores(ctx, [path(*steps[:depth])]))
        assert scores == [1.0] * depth
    assert judged_steps(backend) == steps  # 5 calls, not 1+2+3+4+5 = 15
    asyncio.run(prm.score_steps(ctx, [path("s1", "s2", "s3", "s4", "x"), path("s1", "s2", "s3", "s4", "y WRONG")]))
    assert judged_steps(backend) == [*steps, "x", "y WRONG"]  # two siblings sharing 4 steps: one call each
    assert asyncio.run(prm.score_steps(ctx, [path("s1", "s2", "s3", "s4", "y WRONG")])) == [0.0]
    assert len(backend.requests) == 7  # already known: no call


def test_steps_shared_within_one_batch_are_judged_once():
    backend, prm = prm_backend(), LLMProcessReward()
    scores = asyncio.run(prm.step_scores(context(backend), [path("a", "b", "c"), path("a", "b", "d"), path("a")]))
    assert scores == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0]]
    assert sorted(judged_steps(backend)) == ["a", "b", "c", "d"]


def test_concurrent_callers_share_a_step_in_flight():
    backend = Scripted(responder=prm_backend().responder, logprobs=False, latency=0.01)
    prm, ctx = LLMProcessReward(), context(backend)

    async def both():
        return await asyncio.gather(prm.step_scores(ctx, [path("a", "b")]), prm.step_scores(ctx, [path("a", "b", "c")]))

    assert asyncio.run(both()) == [[[1.0, 1.0]], [[1.0, 1.0, 1.0]]]
    assert sorted(judged_steps(backend)) == ["a", "b", "c"]


def test_the_cache_is_per_problem_memo_and_per_judge_model():
    first, second = prm_backend(), prm_backend()
    prm = LLMProcessReward()
    ctx = context(first)
    asyncio.run(prm.step_scores(ctx, [path("a", "b")]))
    asyncio.run(prm.step_scores(context(first), [path("a", "b")]))  # another problem (a fresh memo)
    assert len(first.requests) == 4
    other = rz.Context(ctx.problem, second, Ledger(), Trace(), messages=(), extract=lambda t: None, memo=ctx.memo)
    asyncio.run(prm.step_scores(other, [path("a", "b")]))  # same problem, another judge model
    assert len(second.requests) == 2


def test_a_step_the_budget_refused_is_not_cached():
    backend, prm = prm_backend(), LLMProcessReward(aggregate="mean")
    ctx = context(backend, rz.Budget(calls=2))
    assert asyncio.run(prm.step_scores(ctx, [path("a", "b", "c", "d")])) == [[1.0, 1.0, 0.0, 0.0]]
    richer = rz.Context(ctx.problem, backend, Ledger(), Trace(), messages=(), extract=lambda t: None, memo=ctx.memo)
    assert asyncio.run(prm.step_scores(richer, [path("a", "b", "c", "d")])) == [[1.0] * 4]
    assert judged_steps(backend) == ["a", "b", "c", "d"]  # c and d judged once, when there was budget


def test_whole_samples_use_their_prefix_steps_and_share_the_cache():
    backend, prm = prm_backend(), LLMProcessReward()
    ctx = context(backend)
    prefix = path("a", "b WRONG")
    asyncio.run(prm.step_scores(ctx, [prefix]))
    sample = Sample(prefix.text, None, prefix=prefix)
    assert asyncio.run(prm.score(ctx, [sample])) == [0.0]
    assert sample.info["prm"] == {"steps": 2, "step_scores": [1.0, 0.0]} and len(backend.requests) == 2


class WordScripted(Scripted):
    """Scripted with one token per word and a logprob for the verdict word ("yes"/"no")."""

    def __init__(self, *args, verdict_logprob, **kw):
        super().__init__(*args, completion_tokens=lambda text: max(1, len(text.split())), **kw)
        self.verdict_logprob = verdict_logprob
        self.vocab: dict[str, int] = {}

    def token_texts(self, ids):
        inverse = {i: t for t, i in self.vocab.items()}
        return [inverse[i] for i in ids]

    async def generate(self, request):
        response = await super().generate(request)
        for completion in response.completions:
            pieces = completion.text.split()
            completion.token_ids = [self.vocab.setdefault(p, len(self.vocab)) for p in pieces]
            if request.logprobs:
                words = [re.sub(r"[^a-z]", "", p.lower()) for p in pieces]
                completion.token_logprobs = [self.verdict_logprob.get(w, -0.05) for w in words]
        return response


def test_logprob_path_reads_p_correct_from_the_verdict_token():
    verdicts = {"yes": math.log(0.8), "no": math.log(0.6)}
    backend = WordScripted(responder=prm_backend().responder, verdict_logprob=verdicts)
    prm = LLMProcessReward(k=4, temperature=0.7)  # k is for backends without logprobs
    (scores,) = asyncio.run(prm.step_scores(context(backend), [path("a", "b WRONG")]))
    assert scores == [pytest.approx(0.8), pytest.approx(0.4)]  # Yes at p=0.8; No at p=0.6
    assert all(r.logprobs and r.n == 1 for r in backend.requests) and len(backend.requests) == 2


def test_sampled_verdict_path_scores_the_fraction_that_says_correct():
    yes = {"a": 3, "b": 1}  # of every 4 sampled verdicts

    def respond(request, index):
        step = request.messages[-1].content.split("Latest step:")[1].split()[0]
        if index % 4 == 3 and step == "a":
            return "I am not sure."  # no verdict: dropped, as GenRM's official code does
        return f"Is the step correct (Yes/No)? {'Yes' if index % 4 < yes[step] else 'No'}"

    backend = Scripted(responder=respond, logprobs=False)
    prm = LLMProcessReward(k=4, temperature=0.7)
    assert asyncio.run(prm.step_scores(context(backend), [path("a", "b")])) == [[1.0, 0.25]]  # a: 3 Yes of 3 verdicts
    assert all(r.n == 4 and not r.logprobs and r.temperature == 0.7 for r in backend.requests)
    with pytest.raises(ValueError, match="temperature"):
        LLMProcessReward(k=4)


def fraction_judge(yes):
    """Without logprobs: of every 4 sampled verdicts on step S, the first yes[S] say correct."""

    def respond(request, index):
        step = request.messages[-1].content.split("Latest step:")[1].split()[0]
        return f"Is the step correct (Yes/No)? {'Yes' if index % 4 < yes[step] else 'No'}"

    return Scripted(responder=respond, logprobs=False)


@pytest.mark.parametrize("how, expected", [("last", 0.25), ("min", 0.25), ("product", 0.75 * 0.25), ("mean", 0.5)])
def test_score_steps_aggregates_as_asked(how, expected):
    prm = LLMProcessReward(k=4, temperature=0.7, aggregate=how)
    scores = asyncio.run(prm.score_steps(context(fraction_judge({"a": 3, "b": 1})), [path("a", "b"), rz.Prefix()]))
    assert scores == [pytest.approx(expected), 0.0]


def test_the_prm_runs_on_the_role_of_the_context_it_is_given():
    generator, verifier = prm_backend(), prm_backend()
    ctx = context({"generator": generator, "verifier": verifier})
    prm = LLMProcessReward()
    assert asyncio.run(prm.score_steps(ctx.using("verifier"), [path("a", "b")])) == [1.0]
    assert len(verifier.requests) == 2 and generator.requests == []
    assert ctx.usage_by_role["verifier"].calls == 2 and "generator" not in ctx.usage_by_role
    asyncio.run(prm.score_steps(ctx, [path("a")]))  # the generator's role: its own model, its own cache
    assert len(generator.requests) == 1


# -- local PRMs: sequence classification and step-tag (token) PRMs ----------------------------


def verify_nodes(ctx):
    return [n for n in ctx.trace.nodes if n.kind == "verify"]


def test_reward_model_prm_scores_only_new_steps_and_traces_them(tmp_path):
    tiny_classifier(tmp_path)
    prm = RewardModelPRM(tmp_path, aggregate="last", max_length=64)
    ctx = context(Scripted())
    (three,) = asyncio.run(prm.step_scores(ctx, [path("3 * 4 = 12", "2 + 12 = 14", "so 14")]))
    (four,) = asyncio.run(prm.step_scores(ctx, [path("3 * 4 = 12", "2 + 12 = 14", "so 14", "14")]))
    assert four[:3] == three and 0.0 < four[3] < 1.0
    assert [n.info["new_steps"] for n in verify_nodes(ctx)] == [3, 1] and ctx.ledger.usage().calls == 0
    fresh = asyncio.run(prm.step_scores(context(Scripted()), [path("3 * 4 = 12", "2 + 12 = 14", "so 14", "14")]))
    assert fresh[0] == pytest.approx(four)  # what the cache returned is what a fresh scoring gives


WORDS = ["[PAD]", "[UNK]", "what", "is", "2", "+", "-", "3", "*", "4", "12", "14", "15", "=", "step", "so", "ки"]


def tiny_step_tag_prm(folder, head):
    """A randomly initialised 1-layer Qwen2 (causal LM, or token classification with 2 labels)
    and a word-level tokenizer that knows the step tag, built offline from a config."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(folder)
    config = transformers.Qwen2Config(
        vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=128, num_labels=2, pad_token_id=0,
    )
    import torch

    torch.manual_seed(0)
    model = (transformers.Qwen2ForCausalLM if head == "causal-lm" else transformers.Qwen2ForTokenClassification)(config)
    model.save_pretrained(folder)
    return model.eval()


STEPS = ("3 * 4 = 12", "2 + 12 = 14", "so 14", "14")


@pytest.mark.parametrize("head", ["causal-lm", "token-classification"])
def test_step_tag_prm_reads_one_score_per_step_at_its_tag(tmp_path, head):
    import torch

    model = tiny_step_tag_prm(tmp_path, head)
    prm = TokenClassificationPRM(tmp_path)  # head from the config's architecture
    assert prm.resolved_head() == head
    (scores,) = asyncio.run(prm.step_scores(context(Scripted()), [path(*STEPS)]))
    assert len(scores) == 4 and all(0.0 <= s <= 1.0 for s in scores)
    # The same numbers straight from the model: the tag after each step, softmax over 2 choices.
    ids, tags = prm.encode("What is 2+3*4?", STEPS)
    assert [ids[t] for t in tags] == [WORDS.index("ки")] * 4 and tags[-1] == len(ids) - 1
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0, tags]
    if head == "causal-lm":
        logits = logits[:, [WORDS.index("+"), WORDS.index("-")]]
    good = 0 if head == "causal-lm" else -1  # "+" first; the positive label last
    assert scores == pytest.approx(torch.softmax(logits, dim=-1)[:, good].tolist(), abs=1e-5)


def test_step_tag_prm_scores_depend_only_on_the_text_up_to_the_step(tmp_path):
    tiny_step_tag_prm(tmp_path, "causal-lm")
    prm = TokenClassificationPRM(tmp_path)
    # Fresh memos, so nothing is cached: appending a step does not change the earlier scores,
    # and a batch of prefixes of different lengths (right-padded) scores each as on its own.
    alone = [asyncio.run(prm.step_scores(context(Scripted()), [path(*STEPS[:d])]))[0] for d in (2, 4)]
    assert alone[1][:2] == pytest.approx(alone[0], abs=1e-5)
    batched = asyncio.run(prm.step_scores(context(Scripted()), [path(*STEPS[:2]), path("so 15", "15"), path(*STEPS)]))
    assert batched[0] == pytest.approx(alone[0], abs=1e-5) and batched[2] == pytest.approx(alone[1], abs=1e-5)
    assert batched[1][0] != pytest.approx(alone[0][0], abs=1e-6)  # another first step, another score


def test_step_tag_prm_computes_only_new_steps(tmp_path):
    tiny_step_tag_prm(tmp_path, "token-classification")
    prm = TokenClassificationPRM(tmp_path, aggregate="last")
    ctx = context(Scripted())
    (three,) = asyncio.run(prm.step_scores(ctx, [path(*STEPS[:3])]))
    (four,) = asyncio.run(prm.step_scores(ctx, [path(*STEPS)]))
    asyncio.run(prm.step_scores(ctx, [path(*STEPS[:2])]))  # all known: no forward pass
    # A prefix and its extension in one batch: one pass, on the longer one.
    asyncio.run(prm.step_scores(ctx, [path("so 15"), path("so 15", "15")]))
    nodes = verify_nodes(ctx)
    assert [(n.info["new_steps"], n.info["sequences"]) for n in nodes] == [(3, 1), (1, 1), (2, 1)]
    assert four[:3] == three and ctx.ledger.usage().calls == 0
    assert asyncio.run(prm.score_steps(ctx, [path(*STEPS)])) == [four[-1]]


def test_step_tag_prm_refuses_what_it_cannot_read(tmp_path):
    tiny_step_tag_prm(tmp_path, "causal-lm")
    with pytest.raises(ConfigError, match="not one token"):
        prm = TokenClassificationPRM(tmp_path, step_tag="<tag>")
        asyncio.run(prm.step_scores(context(Scripted()), [path("so 14")]))
    with pytest.raises(ConfigError, match="max_length"):
        asyncio.run(TokenClassificationPRM(tmp_path, max_length=8).step_scores(context(Scripted()), [path(*STEPS)]))
    with pytest.raises(ConfigError, match="LLMProcessReward"):
        TokenClassificationPRM(None)
