"""Issue 23, the first hour of a new user: what `reasoning-bench run` says while it works.

Here the local backend: the embedded model says it must be prepared, transformers' own bars stay
out of the display, and a local model counts the tokens it is decoding. Everything runs on a
tiny random model.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reasoning.backends.scripted import Scripted

# -- 1. the first run says it is preparing the model; transformers' bars stay out -------------


def test_the_embedded_model_says_it_must_be_prepared_until_it_is(tmp_path, monkeypatch):
    from reasoning.backends.local import Local
    from reasoning.backends.local_model import COMPLETE_MARKER, model_dir

    monkeypatch.setenv("REASONING_CACHE_DIR", str(tmp_path))
    note = Local().preparation_note()
    assert note is not None and note.startswith("preparing the embedded model qwen2.5-coder-0.5b-instruct (one time")
    model_dir().mkdir(parents=True)
    (model_dir() / COMPLETE_MARKER).write_text("done")
    assert Local().preparation_note() is None
    assert Scripted().preparation_note() is None  # nothing to prepare


def tiny_causal_lm(folder: Path) -> None:
    """A random 1-layer Qwen2 and a word-level tokenizer, built offline."""
    transformers = pytest.importorskip("transformers")
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[PAD]", "[UNK]", "a", "b", "c", "d", "e", "f"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(folder)
    config = transformers.Qwen2Config(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                                      pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    transformers.Qwen2ForCausalLM(config).save_pretrained(folder)


def test_loading_a_local_model_shows_no_transformers_progress_bars(tmp_path, capfd):
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from reasoning.backends.local import Local

    tiny_causal_lm(tmp_path)
    hf_logging.enable_progress_bar()
    capfd.readouterr()
    AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True)
    assert "Loading weights" in capfd.readouterr().err  # what a plain load shows
    local = Local(tmp_path)
    asyncio.run(local.load())
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # switched off for the load only
    asyncio.run(local.aclose())


def test_a_local_model_counts_the_tokens_it_is_decoding(tmp_path):
    from reasoning.backends.local import Local
    from reasoning.types import GenerationRequest

    tiny_causal_lm(tmp_path)
    local = Local(tmp_path)
    seen: list[int] = []
    count = local._count_decoded

    def spy(tokens: int) -> None:
        count(tokens)
        seen.append(local.tokens_in_flight())

    local._count_decoded = spy
    request = GenerationRequest(prompt_token_ids=(2, 3, 4), n=3, max_tokens=12, temperature=1.0, seed=1)
    response = asyncio.run(local.generate(request))
    assert seen and seen == sorted(seen) and 0 < seen[-1] <= response.completion_tokens
    assert local.tokens_in_flight() == 0  # returned calls count through their usage instead
    asyncio.run(local.aclose())
