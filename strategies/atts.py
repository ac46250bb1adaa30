"""ATTS (Xiong et al., 2025, "ATTS: Asynchronous Test-Time Scaling via Conformal Prediction"): a
small draft model writes the reasoning step by step, a large target model only verifies each
step, and a conformal test decides whether the step stands or the target rewrites it.

For each of ``n`` parallel samples (the paper: 16 per question), for up to ``turns`` steps:

1. the ``draft`` role writes the next step (up to ``draft_tokens``, ending at ``step_stop``);
2. the ``target`` role scores it: its perplexity of the step given the problem and the steps so
   far, teacher-forced (one prefill, no decoding: ``GenerationRequest.score``, which the local
   transformers and vLLM backends serve, not the HTTP ones);
3. the conformal test: with calibration scores c_1..c_m (the target's perplexities of draft
   steps on held-out problems), the step's p-value is p = (1 + #{c_j >= s}) / (m + 1) and the
   step is rejected iff p <= ``alpha``; under exchangeability at most a share ``alpha`` of
   draft steps is rejected, which is the rejection rate the paper controls;
4. a rejected step is replaced by one the target writes (up to ``target_tokens``) from the same
   point; the sample ends when its text boxes an answer or a step ends the solution (end of
   sequence).

The answer is the majority vote of the samples' answers. The expensive model decodes only the
rejected steps; everything else it does is prefill. ``Outcome.info`` has, per sample and step,
who wrote it, its perplexity and p-value, the realised rejection rate, and ``unfinished``: the
samples the ``turns`` limit cut before they ended (a step is a paragraph, ~30-70 tokens for the
Qwen2.5 models on GSM8K, so a whole solution needs ~6-12 turns; with too few, the vote is over
unfinished texts); the trace has one span per turn with the draft, score and rewrite calls under
it, each with its role.

Calibration (``python -m reasoning.benchmarks.calibrate_thresholds atts``, as the reference
code's ``ref_conformal.py``): the draft's first steps on held-out problems, scored by the target.
``calibration=`` loads them; ``threshold=`` instead fixes a perplexity above which steps are
rejected; with neither, the calibration is online: the scores of this problem's earlier turns
(the first turn is always accepted).

Where this differs from the paper and its released code (``ref_async.py``): the reference code
rejects when the fraction of calibration scores below s is >= 1 - alpha (its default 0.6, i.e.
alpha = 0.4 here); the finite-sample conformal p-value above is used instead (it rejects slightly
less often, and ties count against rejection). The reference code cuts steps at a fixed token
count and joins them with blank lines, and keeps a rejected draft step in the history before the
target's rewrite; here steps end at ``step_stop`` (a blank line by default) or the token limit,
join as written, and a rejected step is dropped (``keep_rejected=True`` keeps it, as there). The
paper's samples run fully asynchronously (no synchronisation between them); here they advance a
turn at a time (each turn's calls run concurrently, and a backend batches them), so decisions
and traces are reproducible; a turn's online calibration uses only earlier turns. The paper's
reported accuracy counts a question right when any of its samples is (``anyone_check``); this
strategy votes. The paper's further stages (budget prediction, forking) are not implemented.
"""

from __future__ import annotations

import asyncio
import json
import math
from bisect import bisect_left
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, model_validator

from reasoning.budget import Budget
from reasoning.context import Context, Sample
from reasoning.errors import ConfigError
from reasoning.strategy import Outcome, Strategy, Temperature
from reasoning.types import GenerationRequest, Message

from .cascade import check_roles, parse_role_budgets, role_context
from .registry import register
from .voting import majority

KIND = "atts"


def perplexity(logprobs: list[float] | None) -> float | None:
    """exp(-mean log-probability) of a scored step (None when nothing was scored)."""
    if not logprobs:
        return None
    return math.exp(-sum(logprobs) / len(logprobs))


def conformal_p_value(score: float, calibration: list[float]) -> float:
    """Split-conformal p-value of ``score`` against sorted ``calibration`` scores (higher score =
    more nonconforming): (1 + #{c >= score}) / (m + 1)."""
    at_least = len(calibration) - bisect_left(calibration, score)
    return (1 + at_least) / (len(calibration) + 1)


def conformal_threshold(calibration: list[float], alpha: float) -> float:
    """The score above which ``conformal_p_value`` <= alpha: the ceil((m + 1)(1 - alpha))-th
    smallest calibration score (inf when that rank exceeds m: nothing is rejected)."""
    ordered = sorted(calibration)
    rank = math.ceil((len(ordered) + 1) * (1 - alpha))
    return ordered[rank - 1] if 1 <= rank <= len(ordered) else math.inf


def load_calibration(path: str | Path) -> dict[str, Any]:
    """An ATTS calibration file: the target's perplexities of held-out draft steps."""
    source = Path(path).expanduser()
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"atts calibration file not found: {source}") from None
    except json.JSONDecodeError as bad:
        raise ConfigError(f"atts calibration {source}: not valid JSON ({bad.msg})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ConfigError(f"atts calibration {source}: not an ATTS calibration (kind 'atts')")
    scores = data.get("scores")
    if not isinstance(scores, list) or not scores or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in scores):
        raise ConfigError(f"atts calibration {source}: 'scores' must be a non-empty list of finite numbers")
    return data


@register("atts")
class ATTS(Strategy):
    draft: str = Field("draft", description="role of the small model that writes the steps")
    target: str = Field("target", description="role of the large model that scores them and rewrites rejected ones")
    n: int = Field(4, ge=1, description="parallel samples voted on (the paper: 16)")
    # 16: a step is a paragraph here (the reference code's are fixed-size); the 1.5B's GSM8K /
    # MATH-500 solutions have a median of 6 / 7 paragraphs and a 95th percentile of 11 / 16
    turns: int = Field(16, ge=1, description="most steps per sample (a step is a paragraph)")
    draft_tokens: int = Field(128, ge=1, description="max tokens of a draft step")
    target_tokens: int = Field(128, ge=1, description="max tokens of a step the target rewrites")
    step_stop: str = Field("\n\n", description="a step ends here (kept in its text)")
    alpha: float = Field(0.4, gt=0, lt=1, description="conformal level: the share of draft steps rejected "
                         "(the reference code's 0.6 percentile is 0.4)")
    calibration: str | None = Field(None, description="calibration JSON from calibrate_thresholds atts "
                                    "(default: online, this problem's earlier steps)")
    threshold: float | None = Field(None, gt=0, description="reject steps whose target perplexity is above "
                                    "this, instead of a conformal test")
    keep_rejected: bool = Field(False, description="keep a rejected draft step before the target's rewrite "
                                "(the reference code does)")
    role_budgets: str | None = Field(None, description="caps per role inside the problem's budget: "
                                     "'draft:tokens=20000;target:tokens=8000'")
    temperature: Temperature = None
    _scores: list[float] | None = PrivateAttr(None)
    _budgets: dict[str, Budget] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ATTS:
        if not self.draft or not self.target or self.draft == self.target:
            raise ConfigError(f"draft and target must be two different role names, got {self.draft!r}, "
                              f"{self.target!r}")
        if self.calibration is not None and self.threshold is not None:
            raise ConfigError("give calibration or threshold, not both")
        if not self.step_stop:
            raise ConfigError("step_stop must not be empty")
        self._budgets = parse_role_budgets(self.role_budgets, [self.draft, self.target])
        if self.calibration is not None:
            self._scores = sorted(float(s) for s in load_calibration(self.calibration)["scores"])
        return self

    async def run(self, ctx: Context) -> Outcome:
        check_roles(ctx, [self.draft, self.target], "atts", "draft/target")
        draft = role_context(ctx, self.draft, self._budgets)
        target = role_context(ctx, self.target, self._budgets)
        steps: list[list[str]] = [[] for _ in range(self.n)]
        logs: list[list[dict[str, Any]]] = [[] for _ in range(self.n)]
        done = [False] * self.n
        online: list[float] = []  # this problem's scores so far (online calibration)
        for turn in range(self.turns):
            live = [i for i in range(self.n) if not done[i]]
            if not live:
                break
            calibration = self._scores if self._scores is not None else sorted(online)
            async with draft.span(f"turn {turn}: draft", samples=live) as sub:
                drafted = await asyncio.gather(*(self._step(sub, steps[i], self.draft_tokens, "draft") for i in live))
            async with target.span(f"turn {turn}: verify", samples=live) as sub:
                scored = await asyncio.gather(*(self._score(sub, steps[i], got[0].text) if got else _none()
                                                for i, got in zip(live, drafted)))
            decisions = [self._decide(ppl, calibration) for ppl in scored]
            rejected = [i for i, got, (_, reject) in zip(live, drafted, decisions) if got and reject]
            async with target.span(f"turn {turn}: rewrite", samples=rejected) as sub:
                rewrites = dict(zip(rejected, await asyncio.gather(*(
                    self._step(sub, steps[i] + ([drafted[live.index(i)][0].text] if self.keep_rejected else []),
                               self.target_tokens, "rewrite") for i in rejected))))
            for i, got, ppl, (p_value, reject) in zip(live, drafted, scored, decisions):
                entry: dict[str, Any] = {"turn": turn, "perplexity": ppl, "p_value": p_value}
                if not got:  # the draft's call was refused (budget): this sample stops here
                    done[i] = True
                    logs[i].append({**entry, "by": None, "accepted": None})
                    continue
                written = got[0]
                if reject:
                    if self.keep_rejected:
                        steps[i].append(written.text)
                    rewritten = rewrites.get(i) or []
                    if rewritten:
                        written = rewritten[0]
                    else:  # the target's rewrite was refused: the draft step stands
                        reject = False
                        entry["rewrite_refused"] = True
                steps[i].append(written.text)
                logs[i].append({**entry, "by": self.target if reject else self.draft, "accepted": not reject,
                                "tokens": written.completion.completion_tokens if written.completion else None})
                if _answered(ctx, "".join(steps[i])) or _ended(written):
                    done[i] = True
            online += [ppl for ppl in scored if ppl is not None]
        samples = [Sample("".join(s), ctx.extract("".join(s)) if s else None, info={"steps": log})
                   for s, log in zip(steps, logs)]
        vote = majority(samples)
        judged = [e for log in logs for e in log if e["accepted"] is not None and e["perplexity"] is not None]
        info = {
            "votes": vote.tally, "share": vote.share, "n": len(samples), "alpha": self.alpha,
            "calibration": "threshold" if self.threshold is not None else "offline" if self._scores else "online",
            "calibration_size": len(self._scores) if self._scores is not None else len(online),
            "draft_steps": sum(e["by"] == self.draft for log in logs for e in log),
            "target_steps": sum(e["by"] == self.target for log in logs for e in log),
            "rejection_rate": (sum(not e["accepted"] for e in judged) / len(judged)) if judged else None,
            # samples cut by the turn limit before they boxed an answer or ended: their answer is
            # whatever number the unfinished text has (too few turns for the model's step length)
            "unfinished": sum(not finished for finished in done),
            "samples": logs,
        }
        return Outcome(vote.answer, vote.sample.text if vote.sample else None, samples, info)

    def _messages(self, ctx: Context, history: list[str]) -> dict[str, Any]:
        if not history:
            return {"messages": ctx.messages}
        return {"messages": (*ctx.messages, Message("assistant", "".join(history))), "continue_final_message": True}

    async def _step(self, ctx: Context, history: list[str], max_tokens: int, name: str) -> list[Sample]:
        request = GenerationRequest(
            **self._messages(ctx, history), max_tokens=max_tokens, stop=(self.step_stop,), include_stop=True,
            temperature=ctx.sampling.temperature if self.temperature is None else self.temperature,
            top_p=ctx.sampling.top_p)
        return await ctx.generate(request, name=name, min_tokens=1)

    async def _score(self, ctx: Context, history: list[str], step: str) -> float | None:
        got = await ctx.generate(GenerationRequest(**self._messages(ctx, history), score=step, max_tokens=1),
                                 name="score", min_tokens=1)
        return perplexity(got[0].completion.token_logprobs) if got and got[0].completion else None

    def _decide(self, ppl: float | None, calibration: list[float]) -> tuple[float | None, bool]:
        """(p-value, reject?) of a step scored ``ppl``; an unscored step (refused) is accepted."""
        if ppl is None:
            return None, False
        if self.threshold is not None:
            return None, ppl > self.threshold
        if not calibration:
            return 1.0, False
        p_value = conformal_p_value(ppl, calibration)
        return p_value, p_value <= self.alpha


async def _none() -> None:
    return None


def _answered(ctx: Context, text: str) -> bool:
    """The text so far boxes an answer (a bare number mid-solution is not an answer yet)."""
    return "\\boxed" in text and ctx.extract(text) is not None


def _ended(sample: Sample) -> bool:
    """The step ended the solution: end of sequence, or an empty step (nothing more to say)."""
    completion = sample.completion
    return not sample.text.strip() or (completion is not None and completion.stop_reason == "eos")
