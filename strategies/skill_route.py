"""Skill routing (Symbolic-MoE, Chen et al. 2025): infer the skills a problem needs, recruit the
models whose calibration record on those skills is best, let each answer, and have an aggregator
model synthesise one answer from theirs.

Calibration (offline, ``python -m reasoning.benchmarks.calibrate_models skill-route``) writes a
plain JSON file (``SkillProfiles``):

* **keywords** of every calibration problem, from the keyword model (``prompts/skill_keywords.md``:
  "List 2-5 keywords ... Keywords: a, b"; ``parse_keywords`` keeps those of at most 20
  characters, lower-cased, and with several samples only those given more than once);
* a **profile** per model: for every keyword, +1 for each calibration problem with that keyword
  the model answered correctly and -1 for each it got wrong;
* the **aggregator**: the model that best synthesises a correct answer from a mix of one correct
  and up to two wrong responses of the calibration models (``aggregator_test``), the paper's
  aggregator benchmark;
* each model's **global competence**: the sum of its profile, shifted to be positive when any
  is negative and sharpened with temperature 0.5 (``competence``; the authors' code).

At solve time (this strategy), gold answers are never seen:

1. one call on the keyword role (``prompts/skill_keywords.md``) gives the problem's keywords;
   each is mapped to the calibration keyword nearest in meaning (exact match, else the highest
   cosine similarity of MiniLM embeddings, ``strategies/embeddings.py``);
2. each model's **skill score** is the sum of its profile over those keywords (only models with a
   profile entry for a keyword count it); the candidates are the models with a positive score
   (all scored models, shifted by ``1 - min``, when none is positive), each weighted by skill
   score x global competence; ``experts`` experts are drawn from them with replacement in
   proportion to the weights (``selection="sample"``, the paper's; seeded by ``seed`` and the
   problem text) or the best ``experts`` distinct ones are taken (``"top"``);
3. **batched by expert**: an expert drawn m times is one call with ``n=m``, so each model's calls
   go together; the experts run concurrently, each in its own slice of the experts' budget
   (``1 - aggregator_share`` of what is left; the expert's share in proportion to its samples);
4. the **aggregator** role (``prompts/skill_aggregate.md``, the paper's instructions) reads every
   expert response and writes the final answer. If it gives none (refused by the budget), the
   experts' majority vote answers instead (``info.fallback``).

Every role's calls go to the one ledger; ``result.usage_by_role`` splits them, and the trace has
``skills``, ``experts`` (one ``expert:ROLE`` slice per model) and ``aggregate`` nodes.

Where this differs from the paper: the paper has 16 ~7B models, keywords from Qwen2.5-7B sampled
5 times (kept if given more than once), and batches *across problems* so that each model is
loaded once per dataset; here the keyword role defaults to the calibration's keyword model and
samples once (``keyword_samples``), and batching is within one problem (one call per expert),
since a strategy sees one problem: across problems, a vLLM or local backend batches concurrent
requests itself. With no keyword matching any profile, the paper picks experts uniformly at
random; here they are drawn by global competence alone. Without a profiles file every role of the
context is a candidate with equal weight, no keyword call is made, and the generator aggregates:
a prior, not the method.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, PrivateAttr

from reasoning.context import Context, Sample
from reasoning.errors import ConfigError
from reasoning.prompts import load_prompt
from reasoning.strategy import MaxTokens, Outcome, Strategy, Temperature

from .embeddings import embed, embedder
from .ensemble_vote import PER_CALL, _checked_models, _read_json, _write_json
from .registry import register
from .voting import majority

VERSION = 1
KIND = "skill-route"
MAX_KEYWORD_CHARS = 20  # the authors' filter
COMPETENCE_TEMPERATURE = 0.5  # the authors' code


def parse_keywords(texts: Sequence[str]) -> list[str]:
    """Keywords from keyword-model outputs ("Keywords: a, b, c"): lower-cased, stripped, at most
    20 characters; with several outputs, only keywords given more than once (first-seen order)."""
    found: list[list[str]] = []
    for text in texts:
        at = text.lower().rfind("keywords:")
        tail = text[at + len("keywords:"):] if at >= 0 else text
        line = tail.strip().split("\n")[0]
        words = [re.sub(r"^[\s\-*•\d.)]+|[\s.;:*]+$", "", w).strip().lower() for w in line.split(",")]
        found.append(list(dict.fromkeys(w for w in words if w and len(w) <= MAX_KEYWORD_CHARS)))
    if len(found) <= 1:
        return found[0] if found else []
    counts = Counter(w for words in found for w in words)
    return [w for w in dict.fromkeys(w for words in found for w in words) if counts[w] > 1]


def competence(profiles: Mapping[str, Mapping[str, float]], temperature: float = COMPETENCE_TEMPERATURE) -> dict[str, float]:
    """Each model's global competence: the sum of its profile, shifted by ``1 - min`` when any sum
    is negative, raised to ``1/temperature`` and normalised to sum 1 (uniform when all are 0)."""
    models = list(profiles)
    totals = [float(sum(profiles[m].values())) for m in models]
    low = min(totals, default=0.0)
    shifted = [t - low + 1 for t in totals] if low < 0 else totals
    scaled = [t ** (1 / temperature) for t in shifted]
    whole = sum(scaled)
    return {m: (s / whole if whole > 0 else 1 / len(models)) for m, s in zip(models, scaled, strict=True)}


def skill_scores(profiles: Mapping[str, Mapping[str, float]], keywords: Sequence[str]) -> dict[str, float]:
    """Sum of each model's profile over ``keywords``; models with no entry for any keyword are absent."""
    scores: dict[str, float] = {}
    for keyword in keywords:
        for model, profile in profiles.items():
            if keyword in profile:
                scores[model] = scores.get(model, 0.0) + float(profile[keyword])
    return scores


def recruit(scores: Mapping[str, float], strength: Mapping[str, float], k: int, *,
            rng: random.Random | None = None, models: Sequence[str] = ()) -> tuple[list[str], dict[str, float]]:
    """(experts, candidate weights): weights are skill score x competence over the models with a
    positive score (all scored ones shifted by ``1 - min`` when none is positive; ``models`` with
    weight = competence when nothing is scored). With ``rng``, ``k`` draws with replacement in
    proportion to the weights; without, the ``k`` heaviest distinct candidates (ties: listed order)."""
    if scores:
        positive = {m: s for m, s in scores.items() if s > 0}
        if positive:
            pool = positive
        else:
            low = min(scores.values())
            pool = {m: s - low + 1 for m, s in scores.items()}
    else:
        pool = {m: 1.0 for m in models}
    if not pool:
        raise ConfigError("skill-route: no model to recruit")
    weights = {m: s * strength.get(m, 0.0) for m, s in pool.items()}
    if sum(weights.values()) <= 0:
        weights = dict(pool)
    names = list(weights)
    if rng is None:
        return sorted(names, key=lambda m: (-weights[m], names.index(m)))[:k], weights
    return rng.choices(names, weights=[weights[m] for m in names], k=k), weights


def aggregator_test(responses: Sequence[tuple[str, bool]], rng: random.Random) -> list[str] | None:
    """The paper's aggregator test item: one correct response (if any) and up to two wrong ones,
    shuffled; None when there is nothing to aggregate."""
    right = [t for t, ok in responses if ok and t]
    wrong = [t for t, ok in responses if not ok and t]
    chosen = ([rng.choice(right)] if right else []) + rng.sample(wrong, min(2, len(wrong)))
    if not chosen:
        return None
    rng.shuffle(chosen)
    return chosen


def aggregation_messages(problem: str, responses: Sequence[str]):
    """The aggregator's prompt: every response, then the question."""
    joined = "\n\n".join(f"### Model {i}'s response:\n{text}" for i, text in enumerate(responses, 1))
    return load_prompt("skill_aggregate").render(problem=problem, responses=joined)


@dataclass(frozen=True)
class SkillProfiles:
    """Per-model keyword profiles, the aggregator and the keyword model (JSON-serialisable)."""

    embedder: Literal["minilm", "ngrams"]
    models: tuple[str, ...]
    profiles: dict[str, dict[str, float]]
    aggregator: str
    keyword_model: str
    accuracy: dict[str, float] = field(default_factory=dict)
    aggregator_accuracy: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def vocabulary(self) -> list[str]:
        return sorted({k for profile in self.profiles.values() for k in profile})

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "kind": KIND, "embedder": self.embedder, "models": list(self.models),
                "profiles": self.profiles, "aggregator": self.aggregator, "keyword_model": self.keyword_model,
                "accuracy": self.accuracy, "aggregator_accuracy": self.aggregator_accuracy, "notes": self.notes}

    @classmethod
    def from_dict(cls, data: Any, source: str = "profiles") -> SkillProfiles:
        models = _checked_models(data, source, kind=KIND, version=VERSION, what=f"a {KIND} profiles file",
                                 keys={"version", "kind", "embedder", "models", "profiles", "aggregator",
                                       "keyword_model", "accuracy", "aggregator_accuracy", "notes"})
        profiles = data.get("profiles")
        if not isinstance(profiles, dict) or set(profiles) != set(models) or not all(
                isinstance(p, dict) and all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                                            for k, v in p.items()) for p in profiles.values()):
            raise ConfigError(f"{source}: 'profiles' must map every model to {{keyword: number}}")
        if data.get("aggregator") not in models:
            raise ConfigError(f"{source}: 'aggregator' must be one of the models {models}, got {data.get('aggregator')!r}")
        if not isinstance(data.get("keyword_model"), str) or not data["keyword_model"]:
            raise ConfigError(f"{source}: 'keyword_model' must be a role name, got {data.get('keyword_model')!r}")
        extras = {k: data.get(k, {}) for k in ("accuracy", "aggregator_accuracy", "notes")}
        if not all(isinstance(v, dict) for v in extras.values()):
            raise ConfigError(f"{source}: accuracy, aggregator_accuracy and notes must be objects")
        return cls(data["embedder"], tuple(models), {m: dict(profiles[m]) for m in models}, data["aggregator"],
                   data["keyword_model"], **extras)

    @classmethod
    def load(cls, path: str | Path) -> SkillProfiles:
        return cls.from_dict(_read_json(path, "profiles"), f"profiles {path}")

    def save(self, path: str | Path) -> Path:
        return _write_json(path, self.to_dict())


def build_profiles(
    keywords: Sequence[Sequence[str]], correct: Sequence[Mapping[str, float]], models: Sequence[str], *,
    keyword_model: str, aggregator_accuracy: Mapping[str, float] | None = None,
    embedder_name: Literal["minilm", "ngrams"] = "minilm", notes: dict[str, Any] | None = None,
) -> SkillProfiles:
    """Profiles from graded calibration records: ``keywords[i]`` of problem i and ``correct[i][m]``
    (1/0, or the share of model m's samples correct: the profile adds 2 x share - 1, i.e. +1/-1
    for one sample). The aggregator is the best on the aggregator test (``aggregator_accuracy``;
    ties: listed order), else, without one, the most accurate model."""
    if len(keywords) != len(correct):
        raise ConfigError("one keyword list per graded problem")
    profiles: dict[str, dict[str, float]] = {m: {} for m in models}
    for words, graded in zip(keywords, correct, strict=True):
        for model in models:
            for word in dict.fromkeys(words):
                profiles[model][word] = profiles[model].get(word, 0.0) + 2 * float(graded[model]) - 1
    accuracy = {m: sum(float(g[m]) for g in correct) / len(correct) if correct else 0.0 for m in models}
    judged = dict(aggregator_accuracy or {})
    basis = judged if judged else accuracy
    aggregator = max(models, key=lambda m: (basis.get(m, -1.0), -models.index(m)))
    info = {"problems": len(correct), "aggregator_by": "aggregator test" if judged else "accuracy", **(notes or {})}
    return SkillProfiles(embedder_name, tuple(models), profiles, aggregator, keyword_model, accuracy, judged, info)


@register("skill-route")
class SkillRoute(Strategy):
    size_option = "experts"

    experts: int = Field(3, ge=1, description="expert answers per problem (the paper: 3), drawn by skill")
    profiles: str | Path | SkillProfiles | None = Field(
        None, description="profiles JSON from `calibrate_models skill-route` (default: every role, equal weight)")
    selection: Literal["sample", "top"] = Field(
        "sample", description="draw experts in proportion to their weight (the paper) or take the best distinct ones")
    seed: int = Field(0, description="seed of the expert draw (with the problem text)")
    keyword_role: str | None = Field(None, description="role that names the skills (default: the profiles' keyword model)")
    keyword_samples: int = Field(1, ge=1, description="keyword samples; with more than 1, keep keywords given twice (the paper: 5)")
    keyword_max_tokens: int = Field(64, ge=1, description="max new tokens of the keyword call")
    aggregator_role: str | None = Field(None, description="role that synthesises (default: the profiles' aggregator)")
    aggregator_share: float = Field(0.3, ge=0, lt=1, description="share of the problem's budget kept for the aggregator")
    max_tokens: MaxTokens = None
    temperature: Temperature = None
    _profiles: SkillProfiles | None = PrivateAttr(None)
    _vocabulary: tuple[list[str], np.ndarray] | None = PrivateAttr(None)  # calibration data, not per problem

    def model_post_init(self, context: Any) -> None:
        given = self.profiles
        if isinstance(given, SkillProfiles):
            self._profiles, self.profiles = given, None
        elif given is not None:
            self._profiles = SkillProfiles.load(given)
            self.profiles = str(given)

    async def run(self, ctx: Context) -> Outcome:
        profiles = self._profiles
        models = list(profiles.models) if profiles else sorted(ctx.backends, key=lambda r: r != "generator")
        keyword_role = self.keyword_role or (profiles.keyword_model if profiles else None)
        aggregator = self.aggregator_role or (profiles.aggregator if profiles else "generator")
        needed = [*models, aggregator, *([keyword_role] if profiles and keyword_role else [])]
        missing = sorted({r for r in needed if r not in ctx.backends})
        if missing:
            raise ConfigError(f"skill-route: roles {missing} have no backend; give each with --role NAME=SPEC "
                              f"(the context has {sorted(ctx.backends)})")

        keywords: list[str] = []
        mapped: list[str] = []
        if profiles is not None:
            async with ctx.span("skills", role=keyword_role) as sub:
                prompt = load_prompt("skill_keywords").render(problem=ctx.problem.text)
                said = await sub.using(keyword_role).generate(
                    prompt, n=self.keyword_samples, max_tokens=self.keyword_max_tokens, temperature=self.temperature,
                    min_tokens=1, name="keywords")
                keywords = parse_keywords([s.text for s in said])
                mapped = await self._map(sub, keywords)
        scores = skill_scores(profiles.profiles, mapped) if profiles else {}
        strength = competence(profiles.profiles) if profiles else {m: 1.0 for m in models}
        rng = random.Random(f"{self.seed}:{ctx.problem.text}") if self.selection == "sample" else None
        chosen, weights = recruit(scores, strength, self.experts, rng=rng, models=models)
        batches = Counter(chosen)  # one call per expert, in order of first choice

        # The experts' budget keeps the aggregator's share (and its one call); each expert's slice
        # is its share of the experts' samples (calls not divided: one call per expert).
        experts_ctx = ctx.share(1 - self.aggregator_share, keep_calls=1, name="experts")
        budgets = [experts_ctx.share_of(count / len(chosen), limits=PER_CALL) for count in batches.values()]
        drawn = await asyncio.gather(*(
            experts_ctx.slice(budget, name=f"expert:{role}").using(role).generate(
                n=count, max_tokens=self.max_tokens, temperature=self.temperature, name="answer")
            for (role, count), budget in zip(batches.items(), budgets, strict=True)))
        answers: list[Sample] = []
        for role, got in zip(batches, drawn, strict=True):
            for sample in got:
                sample.info["role"] = role
                answers.append(sample)

        info: dict[str, Any] = {"keywords": keywords, "mapped": mapped, "scores": scores, "weights": weights,
                                "experts": chosen, "calls": dict(batches), "aggregator": aggregator}
        final: list[Sample] = []
        if answers:
            async with ctx.span("aggregate", role=aggregator, responses=len(answers)) as sub:
                final = await sub.using(aggregator).generate(
                    aggregation_messages(ctx.problem.text, [s.text for s in answers]), n=1,
                    max_tokens=self.max_tokens, temperature=self.temperature, name="aggregate")
        if final and final[0].answer is not None:
            final[0].info["role"] = aggregator
            return Outcome(final[0].answer, final[0].text, [*answers, final[0]], info)
        vote = majority(answers)
        info.update(fallback="experts", votes=vote.tally)
        return Outcome(vote.answer, vote.sample.text if vote.sample else None, [*answers, *final], info)

    async def _map(self, ctx: Context, keywords: list[str]) -> list[str]:
        """Each keyword as the calibration keyword nearest in meaning (exact match first)."""
        profiles = self._profiles
        assert profiles is not None
        vocabulary = profiles.vocabulary
        if not keywords or not vocabulary:
            return []
        unknown = [k for k in keywords if k not in vocabulary]
        if not unknown:
            return keywords
        model = embedder(profiles.embedder)
        if self._vocabulary is None:
            self._vocabulary = (vocabulary, await asyncio.to_thread(model.embed, vocabulary))
        words, table = self._vocabulary
        vectors = await embed(ctx, unknown, model)
        nearest = {k: words[int(np.argmax(table @ v))] for k, v in zip(unknown, vectors, strict=True)}
        return [k if k in vocabulary else nearest[k] for k in keywords]
