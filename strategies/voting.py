"""Majority voting over extracted answers, shared by every voting strategy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reasoning.context import Sample
from reasoning.answers import normalize_answer


@dataclass(slots=True)
class Vote:
    answer: str | None  # the winning answer as first written by a sample
    sample: Sample | None  # the first sample that gave it
    tally: dict[str, float]  # normalised answer -> total weight
    share: float  # winner's weight / total weight (0 when nothing voted)


def majority(samples: Sequence[Sample], weights: Sequence[float] | None = None) -> Vote:
    """Weighted majority over answers equal after normalisation.

    Answers vote under ``sample.info["vote_key"]`` when the context set one (a per-problem
    notion of "same answer"), else under their normalised text. Samples without an answer (or
    with one that normalises to nothing) do not vote. Ties go to the answer seen first, so the
    result depends only on the order of samples, never on hashing or timing.
    """
    if weights is not None and len(weights) != len(samples):
        raise ValueError("one weight per sample")
    tally, first = weighted_tally([key_of(sample) for sample in samples], weights)
    if not tally:
        return Vote(None, None, {}, 0.0)
    winner = max(tally, key=tally.__getitem__)
    total = sum(tally.values())
    chosen = samples[first[winner]]
    return Vote(chosen.answer, chosen, tally, tally[winner] / total if total > 0 else 0.0)


def weighted_tally(keys: Sequence[str | None], weights: Sequence[float] | None = None
                   ) -> tuple[dict[str, float], dict[str, int]]:
    """The vote over already-computed keys (None or empty: no vote): key -> total weight, in the
    order first seen, and key -> index of its first voter. ``max(tally, key=tally.get)`` is then
    the winner with ties to the answer seen first (dicts keep insertion order; max keeps the
    first maximal item), which is what ``majority`` returns; replays of stored votes use it too."""
    tally: dict[str, float] = {}
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        if not key:  # no answer, or e.g. an empty \boxed{}: no vote
            continue
        tally[key] = tally.get(key, 0.0) + (1.0 if weights is None else weights[index])
        first.setdefault(key, index)
    return tally, first


def key_of(sample: Sample) -> str | None:
    """What ``sample`` votes for: the context's vote key, else its normalised answer (None: no vote)."""
    if sample.answer is None:
        return None
    return sample.info.get("vote_key") or normalize_answer(sample.answer) or None


def best_index(scores: Sequence[float], *tiebreaks: Sequence[float]) -> int:
    """Index of the highest score, then of the highest tiebreak in order; ties to the earlier sample."""
    return max(range(len(scores)), key=lambda i: (scores[i], *(t[i] for t in tiebreaks), -i))
