"""Process rewards: score every step of a (partial) solution, then aggregate.

Process reward models (Lightman et al. 2023, "Let's Verify Step by Step"; Wang et al. 2024,
Math-Shepherd) judge each reasoning step instead of only the final answer; tree search uses
the per-step scores, best-of-N their aggregate. Two sources of step scores:

* ``LLMProcessReward``: any backend acts as the PRM (prompt ``prompts/prm_step.md``). For
  step i the model sees the problem, steps 1..i-1 and step i, and ends with
  ``Is the step correct (Yes/No)? Yes|No``. The step score is P(Yes), read exactly as GenRM
  reads it (``verifiers.genrm.chain_p_yes``: sampled-token logprob when available, else the
  hard verdict; no parseable verdict, or a call the budget refused, scores 0). One call per
  step prefix, all prefixes of all candidates concurrently, all through the ledger.
* ``RewardModelPRM``: a local transformers sequence-classification head (loaded from a folder,
  offline, on CPU in a worker thread): step i's score is P(positive label) of the text
  "problem + steps 1..i" (steps joined by ``step_separator``). Its compute is local and not
  charged to the token ledger.

Aggregation of step scores into one candidate score: ``min`` (the weakest step, the usual PRM
choice), ``last``, ``mean`` or ``product``. A candidate with no steps scores 0.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from reasoning.context import Context, Sample
from reasoning.errors import BackendUnavailable, ConfigError
from reasoning.strategy import Verifier

from .genrm import _cue_pattern, chain_p_yes

AGGREGATES = ("min", "last", "mean", "product")
_STEP_MARKER = re.compile(r"^[ \t>*#_]*Step\s+\d+\s*[:.)]", re.IGNORECASE | re.MULTILINE)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_STEP_VERDICT = _cue_pattern(r"Is\s+the\s+step\s+correct")


def split_steps(text: str) -> list[str]:
    """Steps of a solution: at "Step k:" markers when there are any, else at blank lines.

    With markers, text before the first marker (a preamble) is a step of its own. Steps are
    stripped; empty ones are dropped.
    """
    starts = [m.start() for m in _STEP_MARKER.finditer(text)]
    if starts:
        bounds = ([0] if starts[0] > 0 else []) + starts + [len(text)]
        parts = [text[a:b] for a, b in pairwise(bounds)]
    else:
        parts = _BLANK_LINE.split(text)
    return [p.strip() for p in parts if p.strip()]


def aggregate_steps(scores: Sequence[float], how: str = "min") -> float:
    """One score from step scores (0 when there are none)."""
    if not scores:
        return 0.0
    if how == "min":
        return min(scores)
    if how == "last":
        return scores[-1]
    if how == "mean":
        return sum(scores) / len(scores)
    if how == "product":
        return math.prod(scores)
    raise ValueError(f"aggregate must be one of {AGGREGATES}, got {how!r}")


def _check_aggregate(how: str) -> str:
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {how!r}")
    return how


class LLMProcessReward(Verifier):
    """An LLM as process reward model through any backend (see the module docstring)."""

    name = "prm"

    def __init__(self, prompt: str = "prm_step", max_tokens: int = 256, temperature: float = 0.0, aggregate: str = "min"):
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.aggregate = _check_aggregate(aggregate)

    async def step_scores(self, ctx: Context, steps: Sequence[str]) -> list[float]:
        """P(Yes) of each step given the ones before it: one call per prefix, concurrently."""
        from reasoning.prompts import load_prompt

        template = load_prompt(self.prompt)
        logprobs = bool(ctx.backend.capabilities.logprobs)

        async def one(i: int) -> float:
            messages = template.render(
                problem=ctx.problem.text, previous_steps="\n\n".join(steps[:i]) or "(none)", step=steps[i]
            )
            judged = await ctx.generate(
                messages, n=1, max_tokens=self.max_tokens, temperature=self.temperature,
                logprobs=logprobs, name=f"prm-step-{i + 1}", min_tokens=min(16, self.max_tokens),
            )
            return chain_p_yes(judged[0], ctx.backend, _STEP_VERDICT)[1] if judged else 0.0

        return list(await asyncio.gather(*(one(i) for i in range(len(steps)))))

    async def score(self, ctx: Context, samples: list[Sample]) -> list[float]:
        async def one(sample: Sample) -> float:
            steps = split_steps(sample.text)
            values = await self.step_scores(ctx, steps)
            sample.info["prm"] = {"steps": len(steps), "step_scores": values}
            return aggregate_steps(values, self.aggregate)

        return list(await asyncio.gather(*(one(s) for s in samples)))


class RewardModelPRM(Verifier):
    """A local transformers sequence-classification reward head as PRM (module docstring).

    ``model_path``: a folder with ``config.json``, weights and tokenizer files (nothing is
    downloaded). ``positive_label``: the label index meaning "step correct" (default: the
    last; a one-logit head is read through a sigmoid).
    """

    name = "prm-model"

    def __init__(
        self,
        model_path: str | Path | None,
        *,
        aggregate: str = "min",
        step_separator: str = "\n\n",
        positive_label: int = -1,
        max_length: int = 2048,
        batch_size: int = 8,
    ):
        if not model_path:
            raise ConfigError(
                "RewardModelPRM needs model_path: a local folder holding a transformers "
                "sequence-classification reward model (config.json, weights, tokenizer). None ships "
                "with this project; use LLMProcessReward to score steps with any backend instead."
            )
        path = Path(model_path).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"RewardModelPRM: {str(path)!r} is not a transformers model folder (no config.json). "
                "Give a local folder saved with save_pretrained(); nothing is downloaded."
            )
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as missing:
            raise BackendUnavailable(
                f"RewardModelPRM needs torch and transformers ({missing}); install them, e.g. pip install torch transformers"
            ) from None
        self.model_path = path
        self.aggregate = _check_aggregate(aggregate)
        self.step_separator = step_separator
        self.positive_label = positive_label
        self.max_length = max_length
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
                model = AutoModelForSequenceClassification.from_pretrained(self.model_path, local_files_only=True)
            except (OSError, ValueError) as bad:
                raise ConfigError(f"RewardModelPRM: cannot load {str(self.model_path)!r}: {bad}") from None
            model.eval()
            self._tokenizer, self._model = tokenizer, model

    def _score_texts(self, texts: list[str]) -> list[float]:
        """P(step correct) of each text; runs in a worker thread."""
        import torch

        self._load()
        out: list[float] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(
                    texts[start : start + self.batch_size], return_tensors="pt", padding=True,
                    truncation=True, max_length=self.max_length,
                )
                logits = self._model(**batch).logits.float()
                if logits.shape[-1] == 1:
                    probs = torch.sigmoid(logits[:, 0])
                else:
                    probs = torch.softmax(logits, dim=-1)[:, self.positive_label]
                out.extend(probs.tolist())
        return out

    async def step_scores(self, ctx: Context, steps: Sequence[str]) -> list[float]:
        texts = [ctx.problem.text + self.step_separator + self.step_separator.join(steps[: i + 1]) for i in range(len(steps))]
        return await asyncio.to_thread(self._score_texts, texts) if texts else []

    async def score(self, ctx: Context, samples: list[Sample]) -> list[float]:
        scores = []
        for sample in samples:
            steps = split_steps(sample.text)
            values = await self.step_scores(ctx, steps)
            sample.info["prm"] = {"steps": len(steps), "step_scores": values}
            scores.append(aggregate_steps(values, self.aggregate))
        return scores
