"""Process rewards: score every step of a (partial) solution, then aggregate.

Process reward models (Lightman et al. 2023, "Let's Verify Step by Step"; Wang et al. 2024,
Math-Shepherd) judge each reasoning step instead of only the final answer; tree search uses
the per-step scores, best-of-N their aggregate. Every PRM here is both a
``reasoning.ProcessVerifier`` (``step_scores(ctx, prefixes)`` / ``score_steps``: what the
searches call, on partial solutions given as ``Prefix`` steps) and a ``Verifier`` (``score(ctx,
samples)`` on whole samples: their ``prefix`` steps when they have one, else ``split_steps``).

Caching: step i of a prefix is scored once per problem. Its score is kept in ``ctx.memo`` (shared
by every context of one solve) under the step tuple ``steps[:i]``, so scoring prefixes of depth
1..d of one path costs d step scorings, not d(d+1)/2, and siblings that share k steps score only
their own newest step. Scores in flight are shared too (two concurrent callers asking for the
same step wait for one scoring). A step that got no judgement (the budget refused its call)
scores 0 and is not cached, so a later caller with budget left scores it.

* ``LLMProcessReward``: any backend acts as the PRM (prompt ``prompts/prm_step.md``). For
  step i the model sees the problem, steps 1..i-1 and step i, and ends with
  ``Is the step correct (Yes/No)? Yes|No``. One judge call per new step, all new steps of all
  prefixes concurrently, all through the ledger. The step score is P(Yes): from the logprob of
  the sampled verdict token when the backend gives logprobs (``verifiers.genrm.chain_p_yes``:
  p for Yes, 1-p for No), else the fraction of ``k`` sampled verdicts that say Yes (chains
  without a parseable verdict are dropped, as for GenRM; a step with none scores 0). It calls the model through the ``ctx`` it is given, so it
  runs on that context's role: searches call it as ``prm.score_steps(ctx.using("verifier"),
  prefixes)``, ``ctx.verify`` does the same for whole samples.
* ``RewardModelPRM``: a local transformers sequence-classification head (loaded from a folder,
  offline, on CPU in a worker thread): step i's score is P(positive label) of the text
  "problem + steps 1..i" (steps joined by ``step_separator``); one text per new step.
* ``TokenClassificationPRM``: a local PRM that reads every step's score from one forward pass,
  at a step-tag token placed after each step (Math-Shepherd: a causal LM, P("+") against P("-")
  at the tag ``ки``; Qwen-PRM style: a token-classification head, P(positive label) at the tag).
  The model must be causal (decoder-only), so step i's score depends only on the text up to
  step i. One forward pass per prefix that has new steps (a prefix of another in the same
  batch rides along with it); the pass covers the whole prefix (no KV reuse).

The two local models compute outside any backend: nothing is charged to the token ledger; each
scoring adds a ``verify`` trace node (new steps, sequences, tokens) under the caller's span.

Aggregation of step scores into one candidate score (``reasoning.strategy.aggregate_step_scores``):
``min`` (the weakest step, the default here), ``last``, ``mean`` or ``product``. A candidate with
no steps scores 0.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Hashable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from reasoning.context import Context, Prefix, Sample
from reasoning.errors import BackendUnavailable, ConfigError
from reasoning.strategy import AGGREGATIONS, ProcessVerifier, Verifier, aggregate_step_scores

from .genrm import _cue_pattern, chain_p_yes

AGGREGATES = AGGREGATIONS  # last, min, product, mean (the core's)
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
    """``reasoning.strategy.aggregate_step_scores`` with this module's default (min)."""
    return aggregate_step_scores(scores, how)


def _check_aggregate(how: str) -> str:
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATIONS)}, got {how!r}")
    return how


def steps_of(sample: Sample) -> Prefix:
    """The steps a PRM scores for a whole sample: its prefix's when it has one, else split."""
    if sample.prefix is not None and sample.prefix.steps:
        return sample.prefix
    return Prefix(tuple(split_steps(sample.text)))


class CachedPRM(ProcessVerifier, Verifier):
    """What the PRMs here share: the per-problem step cache in ``ctx.memo`` (module docstring)
    and ``score`` on whole samples. A subclass says what its cache is keyed by and scores the
    new steps, each given as the step tuple ending with it."""

    aggregate = "min"

    def memo_key(self, ctx: Context) -> Hashable:
        raise NotImplementedError

    async def score_new(self, ctx: Context, paths: list[tuple[str, ...]]) -> list[float | None]:
        """The score of the last step of each path (None: not judged; scores 0, not cached)."""
        raise NotImplementedError

    async def step_scores(self, ctx: Context, prefixes: Sequence[Prefix]) -> list[list[float]]:
        cache: dict[tuple[str, ...], Any] = ctx.memo.setdefault(self.memo_key(ctx), {})
        wanted = list(dict.fromkeys(p.steps[:i] for p in prefixes for i in range(1, p.depth + 1)))
        known = {path: cache[path] for path in wanted if path in cache}  # floats, or futures in flight
        new = [path for path in wanted if path not in known]
        if new:
            loop = asyncio.get_running_loop()
            pending = {path: loop.create_future() for path in new}
            cache.update(pending)
            values: list[float | None] = [None] * len(new)
            try:
                values = list(await self.score_new(ctx, new))
            finally:  # waiters get the value (None on failure), and only judged steps stay
                for path, value in zip(new, values, strict=True):
                    pending[path].set_result(value)
                    known[path] = value
                    if cache.get(path) is pending[path]:
                        if value is None:
                            del cache[path]
                        else:
                            cache[path] = value
        for path, entry in known.items():
            if isinstance(entry, asyncio.Future):
                known[path] = await entry
        return [[float(known[p.steps[:i]] or 0.0) for i in range(1, p.depth + 1)] for p in prefixes]

    async def score(self, ctx: Context, samples: list[Sample]) -> list[float]:
        prefixes = [steps_of(sample) for sample in samples]
        values = await self.step_scores(ctx, prefixes)
        for sample, prefix, scores in zip(samples, prefixes, values, strict=True):
            sample.info["prm"] = {"steps": prefix.depth, "step_scores": scores}
        return [aggregate_step_scores(scores, self.aggregate) for scores in values]


class LLMProcessReward(CachedPRM):
    """An LLM as process reward model through any backend, on the caller's role (module docstring).

    Args:
        prompt: the prompt file (variables problem, previous_steps, step).
        max_tokens: max new tokens of one judgement.
        temperature: sampling temperature of the judgements (> 0 when ``k`` > 1).
        aggregate: min | last | mean | product, for ``score`` and ``score_steps``.
        k: verdicts sampled per step when the backend gives no logprobs (one call, n=k); with
            logprobs one verdict is read through its token's probability.
    """

    name = "prm"

    def __init__(self, prompt: str = "prm_step", max_tokens: int = 256, temperature: float = 0.0,
                 aggregate: str = "min", k: int = 1):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if k > 1 and temperature <= 0:
            raise ValueError(f"k={k} sampled verdicts need temperature > 0 (greedy ones would all agree)")
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.aggregate = _check_aggregate(aggregate)
        self.k = k

    def memo_key(self, ctx: Context) -> Hashable:
        # Per judge model: scores from one backend are not reused for another.
        return ("prm", self.prompt, self.max_tokens, self.temperature, self.k, id(ctx.backend))

    async def score_new(self, ctx: Context, paths: list[tuple[str, ...]]) -> list[float | None]:
        """One judge call per path, judging its last step given the ones before, concurrently."""
        from reasoning.prompts import load_prompt

        template = load_prompt(self.prompt)
        logprobs = bool(ctx.backend.capabilities.logprobs)

        async def one(path: tuple[str, ...]) -> float | None:
            messages = template.render(
                problem=ctx.problem.text, previous_steps="\n\n".join(s.strip() for s in path[:-1]) or "(none)",
                step=path[-1].strip(),
            )
            judged = await ctx.generate(
                messages, n=1 if logprobs else self.k, max_tokens=self.max_tokens, temperature=self.temperature,
                logprobs=logprobs, name=f"prm-step-{len(path)}", min_tokens=min(16, self.max_tokens),
            )
            if not judged:
                return None
            # Chains without a parseable verdict are dropped, as GenRM's official code drops
            # them; a step the judge never gave a verdict on scores 0 (judged, so cached).
            read = [p_yes for verdict, p_yes, _ in (chain_p_yes(j, ctx.backend, _STEP_VERDICT) for j in judged)
                    if verdict is not None]
            return sum(read) / len(read) if read else 0.0

        return list(await asyncio.gather(*(one(path) for path in paths)))


class LocalPRM(CachedPRM):
    """A PRM computed in this process by a transformers model in a local folder (nothing is
    downloaded), in a worker thread; not charged to the ledger, traced as a ``verify`` node."""

    def __init__(self, model_path: str | Path | None, *, aggregate: str = "min", batch_size: int = 8):
        kind = type(self).__name__
        if not model_path:
            raise ConfigError(
                f"{kind} needs model_path: a local folder holding a transformers reward model "
                "(config.json, weights, tokenizer). None ships with this project; use LLMProcessReward "
                "to score steps with any backend instead."
            )
        path = Path(model_path).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"{kind}: {str(path)!r} is not a transformers model folder (no config.json). "
                "Give a local folder saved with save_pretrained(); nothing is downloaded."
            )
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as missing:
            raise BackendUnavailable(
                f"{kind} needs torch and transformers ({missing}); install them, e.g. pip install torch transformers"
            ) from None
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = path
        self.aggregate = _check_aggregate(aggregate)
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    def settings(self) -> tuple[Any, ...]:
        """What the scores depend on besides the model (part of the cache key)."""
        return ()

    def memo_key(self, ctx: Context) -> Hashable:
        return (self.name, str(self.model_path), *self.settings())

    def compute(self, problem: str, paths: list[tuple[str, ...]]) -> tuple[list[float], dict[str, Any]]:
        """Scores of the last step of each path and facts for the trace; runs in a worker thread."""
        raise NotImplementedError

    async def score_new(self, ctx: Context, paths: list[tuple[str, ...]]) -> list[float | None]:
        info = {"model": str(self.model_path), "new_steps": len(paths)}
        node = ctx.trace.add("verify", self.name, ctx.parent, info=info)
        try:
            scores, facts = await asyncio.to_thread(self.compute, ctx.problem.text, paths)
        except BaseException as failed:
            node.error = f"{type(failed).__name__}: {failed}"
            raise
        finally:
            ctx.trace.close(node)
        node.info.update(facts)
        return list(scores)


class RewardModelPRM(LocalPRM):
    """A local transformers sequence-classification reward head as PRM (module docstring).

    Args:
        model_path: a folder with ``config.json``, weights and tokenizer files.
        aggregate: min | last | mean | product.
        step_separator: joins the problem and the steps into the text scored.
        positive_label: the label index meaning "step correct" (default: the last; a one-logit
            head is read through a sigmoid).
        max_length: texts are truncated to this many tokens.
        batch_size: texts per forward pass.
    """

    name = "prm-model"

    def __init__(self, model_path: str | Path | None, *, aggregate: str = "min", step_separator: str = "\n\n",
                 positive_label: int = -1, max_length: int = 2048, batch_size: int = 8):
        super().__init__(model_path, aggregate=aggregate, batch_size=batch_size)
        self.step_separator = step_separator
        self.positive_label = positive_label
        self.max_length = max_length

    def settings(self) -> tuple[Any, ...]:
        return (self.step_separator, self.positive_label, self.max_length)

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

    def compute(self, problem: str, paths: list[tuple[str, ...]]) -> tuple[list[float], dict[str, Any]]:
        sep = self.step_separator
        texts = [problem + sep + sep.join(path) for path in paths]
        return self._score_texts(texts), {"sequences": len(texts)}


Head = Literal["auto", "causal-lm", "token-classification"]


class TokenClassificationPRM(LocalPRM):
    """A PRM read at a step tag after each step, one forward pass per prefix (module docstring).

    The model reads ``problem``, then for each step ``step_separator + step`` (stripped)
    followed by the ``step_tag`` token; each piece is tokenized on its own, so the tag is always
    exactly one token at a known position, whatever the step's text.

    Args:
        model_path: a folder with ``config.json``, weights and tokenizer files (nothing is
            downloaded). The model must be causal (decoder-only).
        step_tag: the token placed after each step (Math-Shepherd: ``ки``; Qwen2.5-Math-PRM:
            ``<extra_0>``); one token of the tokenizer.
        head: ``causal-lm`` (P of ``candidates[0]`` against ``candidates[1]`` as the next token
            at the tag), ``token-classification`` (P(``positive_label``) of the tag's label
            logits; a one-logit head through a sigmoid), or ``auto``: from the config's
            architecture (``...ForCausalLM`` / ``...ForTokenClassification``).
        candidates: the (good, bad) tokens of a causal-LM PRM, one token each.
        positive_label: the label meaning "step correct" of a token-classification head.
        step_separator: text before each step.
        aggregate: min | last | mean | product.
        max_length: a longer prefix is refused (ConfigError) rather than silently cut; None: no check.
        batch_size: sequences per forward pass.
    """

    name = "prm-token"

    def __init__(self, model_path: str | Path | None, *, step_tag: str = "ки", head: Head = "auto",
                 candidates: tuple[str, str] = ("+", "-"), positive_label: int = -1, step_separator: str = "\n",
                 aggregate: str = "min", max_length: int | None = None, batch_size: int = 8):
        super().__init__(model_path, aggregate=aggregate, batch_size=batch_size)
        if head not in ("auto", "causal-lm", "token-classification"):
            raise ValueError(f"head must be auto, causal-lm or token-classification, got {head!r}")
        if len(candidates) != 2:
            raise ValueError(f"candidates must be (good, bad) tokens, got {candidates!r}")
        self.step_tag = step_tag
        self.head = head
        self.candidates = tuple(candidates)
        self.positive_label = positive_label
        self.step_separator = step_separator
        self.max_length = max_length
        self._tag_id = -1
        self._candidate_ids: list[int] = []

    def settings(self) -> tuple[Any, ...]:
        return (self.step_tag, self.head, self.candidates, self.positive_label, self.step_separator)

    def resolved_head(self) -> str:
        """``head``, with ``auto`` read from the config's architectures."""
        if self.head != "auto":
            return self.head
        config = json.loads((self.model_path / "config.json").read_text(encoding="utf-8"))
        architectures = config.get("architectures") or []
        if any(a.endswith("ForCausalLM") for a in architectures):
            return "causal-lm"
        if any(a.endswith("ForTokenClassification") for a in architectures):
            return "token-classification"
        raise ConfigError(
            f"TokenClassificationPRM: cannot tell the head of {str(self.model_path)!r} from its architectures "
            f"{architectures}; give head='causal-lm' or head='token-classification'"
        )

    def _one_token(self, text: str, what: str) -> int:
        ids = self._tokenizer.encode(text, add_special_tokens=False)
        if len(ids) == 1:
            return int(ids[0])
        known = self._tokenizer.convert_tokens_to_ids(text)
        if isinstance(known, int) and known != self._tokenizer.unk_token_id:
            return known
        raise ConfigError(f"TokenClassificationPRM: the {what} {text!r} is not one token of this tokenizer ({ids})")

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

            head = self.resolved_head()
            auto = AutoModelForCausalLM if head == "causal-lm" else AutoModelForTokenClassification
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
                model = auto.from_pretrained(self.model_path, local_files_only=True)
            except (OSError, ValueError) as bad:
                raise ConfigError(f"TokenClassificationPRM: cannot load {str(self.model_path)!r}: {bad}") from None
            model.eval()
            self._tokenizer = tokenizer
            self._tag_id = self._one_token(self.step_tag, "step tag")
            if head == "causal-lm":
                self._candidate_ids = [self._one_token(c, "candidate") for c in self.candidates]
            self._model = model

    def encode(self, problem: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """Token ids of problem + tagged steps, and the position of each step's tag."""
        self._load()
        ids = list(self._tokenizer.encode(problem, add_special_tokens=True))
        tags = []
        for step in steps:
            ids += self._tokenizer.encode(self.step_separator + step.strip(), add_special_tokens=False)
            tags.append(len(ids))
            ids.append(self._tag_id)
        if self.max_length is not None and len(ids) > self.max_length:
            raise ConfigError(
                f"TokenClassificationPRM: a prefix of {len(steps)} steps is {len(ids)} tokens, over "
                f"max_length={self.max_length}; raise max_length (nothing is cut silently)"
            )
        return ids, tags

    def tag_scores(self, sequences: list[list[int]], tags: list[list[int]]) -> list[list[float]]:
        """The score at every tag of each sequence: batched, right-padded, one pass per batch."""
        import torch

        out: list[list[float]] = []
        pad = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else 0
        with self._lock, torch.inference_mode():
            for start in range(0, len(sequences), self.batch_size):
                batch, positions = sequences[start : start + self.batch_size], tags[start : start + self.batch_size]
                width = max(len(s) for s in batch)
                input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in batch])
                mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in batch])
                logits = self._model(input_ids=input_ids, attention_mask=mask).logits.float()
                for row, where in enumerate(positions):
                    at = logits[row, where]  # (tags, labels or vocabulary)
                    if self._candidate_ids:
                        probs = torch.softmax(at[:, self._candidate_ids], dim=-1)[:, 0]
                    elif at.shape[-1] == 1:
                        probs = torch.sigmoid(at[:, 0])
                    else:
                        probs = torch.softmax(at, dim=-1)[:, self.positive_label]
                    out.append(probs.tolist())
        return out

    def compute(self, problem: str, paths: list[tuple[str, ...]]) -> tuple[list[float], dict[str, Any]]:
        # Only the longest paths run: a path that is a prefix of another is read on its pass.
        longest = [p for p in paths if not any(len(q) > len(p) and q[: len(p)] == p for q in paths)]
        encoded = [self.encode(problem, path) for path in longest]
        per_tag = self.tag_scores([ids for ids, _ in encoded], [tags for _, tags in encoded])
        found: dict[tuple[str, ...], float] = {}
        for path, scores in zip(longest, per_tag, strict=True):
            for i, value in enumerate(scores, start=1):
                found.setdefault(path[:i], value)
        facts = {"sequences": len(longest), "tokens": sum(len(ids) for ids, _ in encoded)}
        return [found[path] for path in paths], facts
