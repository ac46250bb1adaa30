"""Ensemble vote (the Avengers, Zhang et al. 2025): route a problem to the models that did best on
problems like it, sample from each and vote with per-model weights.

The Avengers' recipe, in two stages:

1. **Calibration** (offline, ``python -m reasoning.benchmarks.calibrate_models ensemble-vote``):
   embed the calibration problems (all-MiniLM-L6-v2, ``strategies/embeddings.py``), cluster the
   embeddings with k-means (``kmeans``: k-means++ seeding, Lloyd iterations, a fixed seed), and
   score every model on every cluster (its share of correct answers there). The result is a
   plain JSON file (``EnsembleCalibration``): the embedder, the models (role names), the cluster
   centres, and per cluster and model the problems answered correctly and the problems seen.
2. **Inference** (this strategy): embed the problem, assign it to the nearest centre, take the
   ``top_k`` models with the best score on that cluster, draw ``n`` samples split evenly among
   them (the remainder to the better ones), and vote: each sample's vote weighs its model's
   cluster score (``weighting="accuracy"``) or 1 (``"uniform"``), through the one voting
   implementation (``voting.majority``). Gold answers are seen only at calibration.

Each model is a *role* of the context (``--role NAME=SPEC``; ``backends={...}`` in Python). Each
model's samples are one call in their own budget slice (``ctx.share_of``: the model's share of
the samples, of what is left of each limit; calls are not divided), all charged to the problem's
one ledger;
``result.usage_by_role`` has each model's usage and the trace one ``model:ROLE`` span per model.
Without a calibration file every role of the context votes with weight 1 (a plain cross-model
self-consistency), which is a prior, not the method.

Where this differs from the paper: the paper embeds with gte-Qwen2-7B-instruct and uses 64
clusters over ~thousands of validation problems and 10 ~7B models; here MiniLM, a default of 4
clusters (a small calibration split) and the project's small local models. The paper scores a
model on a cluster by its raw accuracy; here the score is shrunk towards the model's overall
accuracy by one pseudo-problem, ``(correct + overall) / (seen + 1)``, so a cluster of two
problems does not decide alone (with many problems per cluster this is the raw accuracy). The
released code also has a soft router (softmax over the distances to the nearest clusters times a
rank score); the paper's routing, the nearest cluster, is what is implemented. The paper votes
by plain self-consistency over the chosen models' samples; weighting votes by the model's
cluster score is this project's default (``weighting="uniform"`` is the paper's vote).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, PrivateAttr

from reasoning.context import SHAREABLE, Context, Sample
from reasoning.errors import ConfigError
from reasoning.strategy import MaxTokens, Outcome, Strategy, Temperature

from .embeddings import embed, embedder
from .registry import register
from .voting import majority

VERSION = 1
KIND = "ensemble-vote"
PER_CALL = tuple(limit for limit in SHAREABLE if limit != "calls")  # what a one-call slice divides


@dataclass(frozen=True)
class EnsembleCalibration:
    """Clusters of calibration problems and each model's record on each (JSON-serialisable)."""

    embedder: Literal["minilm", "ngrams"]
    models: tuple[str, ...]  # role names
    centres: np.ndarray  # (clusters, dim)
    correct: np.ndarray  # (clusters, models): problems answered correctly (a fraction per problem when sampled more)
    seen: np.ndarray  # (clusters,): calibration problems in each cluster
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def overall(self) -> np.ndarray:
        """Each model's accuracy over all calibration problems."""
        total = float(self.seen.sum())
        return self.correct.sum(axis=0) / total if total else np.zeros(len(self.models))

    def scores(self, cluster: int) -> np.ndarray:
        """Each model's score on ``cluster``: its accuracy there, shrunk towards its overall
        accuracy by one pseudo-problem."""
        return (self.correct[cluster] + self.overall) / (self.seen[cluster] + 1.0)

    def nearest(self, vector: np.ndarray) -> tuple[int, float]:
        """The cluster whose centre is nearest (Euclidean, as k-means assigns) and its distance."""
        distances = np.linalg.norm(self.centres - np.asarray(vector, float)[None, :], axis=1)
        index = int(np.argmin(distances))
        return index, float(distances[index])

    def ranked(self, cluster: int) -> list[int]:
        """Model indices, best first: cluster score, then overall accuracy, then listed order."""
        scores, overall = self.scores(cluster), self.overall
        return sorted(range(len(self.models)), key=lambda m: (-scores[m], -overall[m], m))

    # -- JSON -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION, "kind": KIND, "embedder": self.embedder, "models": list(self.models),
            "centres": self.centres.tolist(), "correct": self.correct.tolist(), "seen": self.seen.tolist(),
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "calibration") -> EnsembleCalibration:
        models = _checked_models(data, source, kind=KIND, version=VERSION, what=f"an {KIND} calibration",
                                 keys={"version", "kind", "embedder", "models", "centres", "correct", "seen",
                                       "notes"})
        try:
            centres = np.asarray(data["centres"], float)
            correct = np.asarray(data["correct"], float)
            seen = np.asarray(data["seen"], float)
        except (KeyError, TypeError, ValueError) as bad:
            raise ConfigError(f"{source}: centres, correct and seen must be numeric arrays ({bad})") from None
        if centres.ndim != 2 or len(centres) < 1:
            raise ConfigError(f"{source}: 'centres' must be a non-empty list of vectors")
        if correct.shape != (len(centres), len(models)) or seen.shape != (len(centres),):
            raise ConfigError(f"{source}: 'correct' must be clusters x models ({len(centres)} x {len(models)}) "
                              f"and 'seen' one count per cluster")
        if not (np.isfinite(centres).all() and (seen >= 0).all() and (correct >= 0).all()
                and (correct <= seen[:, None]).all()):
            raise ConfigError(f"{source}: counts must satisfy 0 <= correct <= seen, centres finite")
        notes = data.get("notes", {})
        if not isinstance(notes, dict):
            raise ConfigError(f"{source}: 'notes' must be an object")
        return cls(data["embedder"], tuple(models), centres, correct, seen, notes)

    @classmethod
    def load(cls, path: str | Path) -> EnsembleCalibration:
        return cls.from_dict(_read_json(path, "calibration"), f"calibration {path}")

    def save(self, path: str | Path) -> Path:
        return _write_json(path, self.to_dict())


def kmeans(vectors: np.ndarray, k: int, *, seed: int = 0, iterations: int = 100) -> tuple[np.ndarray, list[int]]:
    """k-means (k-means++ seeding with ``seed``, then Lloyd iterations until assignments settle):
    (centres, label per vector). ``k`` is capped at the number of distinct vectors; clusters left
    empty are dropped and the labels renumbered 0, 1, ... in order of first appearance."""
    data = np.asarray(vectors, float)
    if data.ndim != 2 or len(data) == 0:
        raise ConfigError("k-means needs a non-empty 2-D array of vectors")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"clusters must be an integer >= 1, got {k!r}")
    k = min(k, len(np.unique(data, axis=0)))
    rng = np.random.default_rng(seed)
    centres = [data[rng.integers(len(data))]]
    while len(centres) < k:
        nearest = np.min(((data[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(data[rng.choice(len(data), p=nearest / nearest.sum())])
    centre = np.asarray(centres)
    labels = np.full(len(data), -1)
    for _ in range(iterations):
        new = np.argmin(((data[:, None, :] - centre[None]) ** 2).sum(-1), axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            if (labels == j).any():
                centre[j] = data[labels == j].mean(axis=0)
    order: dict[int, int] = {}
    for label in labels:
        order.setdefault(int(label), len(order))
    kept = sorted(order, key=order.__getitem__)
    return centre[kept], [order[int(label)] for label in labels]


def calibrate(
    vectors: np.ndarray, correct: Sequence[Sequence[float]], models: Sequence[str], *,
    clusters: int = 4, seed: int = 0, embedder_name: Literal["minilm", "ngrams"] = "minilm",
    notes: dict[str, Any] | None = None,
) -> EnsembleCalibration:
    """The calibration from graded records: ``vectors[i]`` embeds calibration problem i and
    ``correct[i][m]`` is model m's correctness on it (1/0, or the share of its samples correct)."""
    table = np.asarray(correct, float)
    if table.shape != (len(vectors), len(models)):
        raise ConfigError(f"correct must be problems x models ({len(vectors)} x {len(models)}), got {table.shape}")
    centres, labels = kmeans(vectors, clusters, seed=seed)
    counts = np.zeros((len(centres), len(models)))
    seen = np.zeros(len(centres))
    for label, row in zip(labels, table, strict=True):
        counts[label] += row
        seen[label] += 1
    info = {"clusters": len(centres), "problems": len(labels), "seed": seed, **(notes or {})}
    return EnsembleCalibration(embedder_name, tuple(models), centres, counts, seen, info)


@register("ensemble-vote")
class EnsembleVote(Strategy):
    n: int = Field(8, ge=1, description="samples in all, split evenly among the chosen models")
    top_k: int = Field(2, ge=1, description="models chosen per problem: the best on its cluster")
    calibration: str | Path | EnsembleCalibration | None = Field(
        None, description="calibration JSON from `calibrate_models ensemble-vote` (default: every role votes, weight 1)")
    weighting: Literal["accuracy", "uniform"] = Field(
        "accuracy", description="a sample's vote weight: its model's score on the cluster, or 1 (the paper's vote)")
    max_tokens: MaxTokens = None
    temperature: Temperature = None
    _calibration: EnsembleCalibration | None = PrivateAttr(None)

    def model_post_init(self, context: Any) -> None:
        given = self.calibration
        if isinstance(given, EnsembleCalibration):
            self._calibration, self.calibration = given, None
        elif given is not None:
            self._calibration = EnsembleCalibration.load(given)
            self.calibration = str(given)

    def route(self, vector: np.ndarray | None, roles: Sequence[str]) -> dict[str, Any]:
        """The models a problem goes to, their weights and sample counts (no model call).
        ``vector`` is the problem's embedding (None without a calibration)."""
        calibration = self._calibration
        if calibration is None or vector is None:
            chosen, weights, cluster, distance = list(roles)[: self.top_k], None, None, None
            scores = [1.0] * len(chosen)
        else:
            cluster, distance = calibration.nearest(vector)
            order = calibration.ranked(cluster)[: self.top_k]
            chosen = [calibration.models[m] for m in order]
            scores = [float(calibration.scores(cluster)[m]) for m in order]
        weights = scores if self.weighting == "accuracy" else [1.0] * len(chosen)
        counts = [self.n // len(chosen) + (1 if i < self.n % len(chosen) else 0) for i in range(len(chosen))]
        models = [{"role": r, "score": s, "weight": w, "samples": c}
                  for r, s, w, c in zip(chosen, scores, weights, counts, strict=True) if c > 0]
        return {"cluster": cluster, "distance": distance, "models": models}

    async def run(self, ctx: Context) -> Outcome:
        calibration = self._calibration
        roles = list(calibration.models) if calibration is not None else _context_roles(ctx)
        missing = [r for r in roles if r not in ctx.backends]
        if missing:
            raise ConfigError(f"ensemble-vote: the calibration's models {missing} have no backend; give each as a "
                              f"role (--role NAME=SPEC); the context has {sorted(ctx.backends)}")
        vector = None
        if calibration is not None:
            vector = (await embed(ctx, [ctx.problem.text], embedder(calibration.embedder)))[0]
        plan = self.route(vector, roles)
        async with ctx.span("ensemble", cluster=plan["cluster"], models=plan["models"]) as sub:
            # Each model's budget: its share of the samples, of what is left now (one ledger); one
            # call each, so calls are not divided (the problem's limit still binds them all).
            budgets = [sub.share_of(m["samples"] / self.n, limits=PER_CALL) for m in plan["models"]]
            drawn = await asyncio.gather(*(
                sub.slice(budget, name=f"model:{m['role']}").using(m["role"]).generate(
                    n=m["samples"], max_tokens=self.max_tokens, temperature=self.temperature, name="sample")
                for m, budget in zip(plan["models"], budgets, strict=True)))
        samples: list[Sample] = []
        weights: list[float] = []
        for model, got in zip(plan["models"], drawn, strict=True):
            for sample in got:
                sample.info["role"] = model["role"]
                samples.append(sample)
                weights.append(model["weight"])
            model["drawn"] = len(got)
        vote = majority(samples, weights)
        text = vote.sample.text if vote.sample else None
        info = {**plan, "votes": vote.tally, "share": vote.share, "n": len(samples)}
        return Outcome(vote.answer, text, samples, info)


def _context_roles(ctx: Context) -> list[str]:
    """The context's roles, the generator first (then as given)."""
    return sorted(ctx.backends, key=lambda r: r != "generator")


def _read_json(path: str | Path, what: str) -> Any:
    path = Path(path).expanduser()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except json.JSONDecodeError as bad:
        raise ConfigError(f"{what} {path}: not valid JSON ({bad.msg}, line {bad.lineno})") from None


def _write_json(path: str | Path, data: dict[str, Any]) -> Path:
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def _checked_models(data: Any, source: str, *, kind: str, version: int, what: str, keys: set[str]) -> list[str]:
    """The checks every saved per-model file (this calibration, skill-route's profiles) starts with:
    a JSON object of ``kind`` and ``version`` (``what`` names it in the error), no keys outside
    ``keys``, a known embedder, a non-empty list of distinct role names. Returns that list."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    if data.get("kind") != kind or data.get("version") != version:
        raise ConfigError(f"{source}: not {what} of version {version} "
                          f"(kind {data.get('kind')!r}, version {data.get('version')!r})")
    unknown = set(data) - keys
    if unknown:
        raise ConfigError(f"{source}: unknown keys {sorted(unknown)}")
    if data.get("embedder") not in ("minilm", "ngrams"):
        raise ConfigError(f"{source}: embedder must be 'minilm' or 'ngrams', got {data.get('embedder')!r}")
    models = data.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models) \
            or len(set(models)) != len(models):
        raise ConfigError(f"{source}: 'models' must be a non-empty list of distinct role names")
    return models
