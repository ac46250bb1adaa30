"""Cascade: answer with the cheapest model under self-consistency, escalate only when unsure.

The models are roles of the context, cheapest first (``models="small,medium,large"``; each
given as ``--role small=local:gemma-3-270m`` and so on, or ``backends={...}`` in Python). Stage
i draws ``n`` samples from model i and votes (``voting.majority``). Its *signal* is

- ``agreement``: the winning answer's share of the votes (self-consistency's own confidence), or
- ``confidence``: the mean over the stage's samples of each sample's mean token confidence
  (DeepConf's token confidence, ``-mean top-k logprob``; higher is surer; needs a backend with
  ``top_logprobs``).

The cascade stops at the first stage whose signal reaches that stage's threshold and answers
with its vote; the last model always answers. A stage whose threshold is ``null`` in the
calibration file (never sure enough) is not run at all: drawing its samples could only cost. A stage that drew no answer (or whose call the
budget refused) escalates; if the last stages draw nothing, the latest vote that had an answer
stands (``answered_by`` names its model).
Thresholds come from ``threshold`` (one for every stage) or, better, from a calibration file
(``python -m reasoning.benchmarks.calibrate_thresholds cascade ...``): the thresholds that, on a
held-out split, reach a target accuracy at the least cost (see that module for the exact rule).

Accounting: every stage's calls are charged to the problem's one ledger, each priced and costed
(FLOPs) by its own model; ``role_budgets`` caps a role on its own (a budget slice inside the
problem's budget); ``result.usage_by_role`` splits the usage. The trace has one ``stage:ROLE``
span per stage that ran, with its signal and decision, and ``Outcome.info`` names the model
that answered (``answered_by``), every stage's signal, threshold and cost.

This is the generic "model cascade" of the LLM-routing literature (FrugalGPT-style cascades with
a self-consistency stopping signal, e.g. Yue et al. 2024's mixture-of-thought cascade, which
escalates on low answer consistency of the weak model). Differences from those papers: the
signal is the vote share or token confidence of the stage's own samples (no trained scorer, as
FrugalGPT has), and the thresholds are set by exhaustive search on a calibration split for a
target accuracy rather than by a grid over a budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from reasoning.budget import Budget, Usage
from reasoning.context import Context, Sample
from reasoning.errors import ConfigError
from reasoning.strategy import MaxTokens, Outcome, Strategy, Temperature

from .registry import register
from .voting import majority

CONFIDENCE_TOP_K = 20  # DeepConf's k for token confidences
KIND = "cascade"


def parse_roles(text: str, option: str) -> list[str]:
    """Role names from ``"a,b,c"`` (distinct, non-empty), or a ConfigError naming ``option``."""
    roles = [r.strip() for r in text.split(",")]
    if not roles or any(not r for r in roles) or len(set(roles)) != len(roles):
        raise ConfigError(f"{option} must be distinct, non-empty role names separated by commas, got {text!r}")
    return roles


def parse_role_budgets(text: str | None, roles: list[str], option: str = "role_budgets") -> dict[str, Budget]:
    """``"small:tokens=4000,calls=2;large:tokens=2000"`` -> role -> Budget (only the named roles)."""
    if not text:
        return {}
    budgets: dict[str, Budget] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        role, sep, spec = item.partition(":")
        role = role.strip()
        if not sep or role not in roles:
            raise ConfigError(f"{option}: {item!r} must be ROLE:LIMITS with ROLE one of {', '.join(roles)}")
        if role in budgets:
            raise ConfigError(f"{option}: role {role!r} is given twice")
        try:
            budgets[role] = Budget.parse(spec)
        except (ValueError, ConfigError) as bad:
            raise ConfigError(f"{option}: {role}: {bad}") from None
    return budgets


def check_roles(ctx: Context, roles: list[str], strategy: str, option: str) -> None:
    """Every role must have its own backend: a role left out would silently be the generator."""
    missing = [r for r in roles if r not in ctx.backends]
    if missing:
        raise ConfigError(
            f"{strategy}: {option} names roles with no backend: {', '.join(missing)}; give each as --role NAME=SPEC "
            f"(Python: backends={{...}}); the context has {', '.join(sorted(ctx.backends))}")


def role_context(ctx: Context, role: str, budgets: dict[str, Budget]) -> Context:
    """``ctx`` sending its calls to ``role``, inside that role's own budget slice when it has one."""
    if role in budgets:
        return ctx.slice(budgets[role], name=f"role:{role}").using(role)
    return ctx.using(role)


def stage_signal(samples: list[Sample], signal: str) -> float | None:
    """A stage's confidence in its vote: the winner's vote share, or the mean of the samples'
    mean token confidences (None when no sample answered / carried confidences)."""
    if signal == "agreement":
        vote = majority(samples)
        return vote.share if vote.answer is not None else None
    means = [sum(c) / len(c) for s in samples if s.completion is not None
             for c in [s.completion.token_confidences] if c]
    return sum(means) / len(means) if means else None


def load_thresholds(path: str | Path, roles: list[str]) -> dict[str, Any]:
    """A calibration file's thresholds (one per stage but the last) and signal, checked against ``roles``."""
    source = Path(path).expanduser()
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"cascade calibration file not found: {source}") from None
    except json.JSONDecodeError as bad:
        raise ConfigError(f"cascade calibration {source}: not valid JSON ({bad.msg})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ConfigError(f"cascade calibration {source}: not a cascade calibration (kind {data.get('kind')!r})"
                          if isinstance(data, dict) else f"cascade calibration {source}: expected a JSON object")
    if data.get("models") != roles:
        raise ConfigError(f"cascade calibration {source} is for models {data.get('models')}, not {roles}: "
                          "set models= to the calibrated roles, in order")
    thresholds = data.get("thresholds")
    if not isinstance(thresholds, list) or len(thresholds) != len(roles) - 1 \
            or not all(isinstance(t, (int, float)) or t is None for t in thresholds):
        raise ConfigError(f"cascade calibration {source}: 'thresholds' must be {len(roles) - 1} numbers "
                          "(null: skip that stage)")
    if data.get("signal") not in ("agreement", "confidence"):
        raise ConfigError(f"cascade calibration {source}: signal must be 'agreement' or 'confidence'")
    return data


@register("cascade")
class Cascade(Strategy):
    models: str = Field("small,large", description="roles of the models, cheapest first, comma-separated "
                        "(each needs --role NAME=SPEC)")
    n: int = Field(4, ge=1, description="samples voted on at each stage (self-consistency)")
    signal: Literal["agreement", "confidence"] = Field(
        "agreement", description="escalate on the vote's agreement or on the mean token confidence")
    threshold: float = Field(0.75, description="escalate when a stage's signal is below this (every stage); "
                             "a calibration file sets one per stage instead")
    calibration: str | None = Field(None, description="thresholds JSON from calibrate_thresholds cascade (overrides "
                                    "threshold and signal)")
    role_budgets: str | None = Field(None, description="caps per role inside the problem's budget: "
                                     "'small:tokens=4000;large:tokens=2000,calls=1'")
    max_tokens: MaxTokens = None
    temperature: Temperature = None
    _roles: list[str] = PrivateAttr(default_factory=list)
    _thresholds: list[float | None] = PrivateAttr(default_factory=list)
    _signal: str = PrivateAttr("agreement")
    _budgets: dict[str, Budget] = PrivateAttr(default_factory=dict)
    _notes: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Cascade:
        self._roles = parse_roles(self.models, "models")
        self._budgets = parse_role_budgets(self.role_budgets, self._roles)
        if self.calibration is not None:
            data = load_thresholds(self.calibration, self._roles)
            self._thresholds, self._signal = list(data["thresholds"]), data["signal"]
            self._notes = {"calibration": str(self.calibration), "target_accuracy": data.get("target_accuracy")}
        else:
            if self.signal == "agreement" and not 0 <= self.threshold <= 1:
                raise ConfigError(f"threshold must be in [0, 1] for the agreement signal, got {self.threshold}")
            self._thresholds, self._signal = [self.threshold] * (len(self._roles) - 1), self.signal
        return self

    def thresholds(self) -> dict[str, float | None]:
        """Each stage's threshold (the last stage has none: it always answers)."""
        return dict(zip(self._roles, [*self._thresholds, None]))

    async def run(self, ctx: Context) -> Outcome:
        check_roles(ctx, self._roles, "cascade", "models")
        stages: list[dict[str, Any]] = []
        samples: list[Sample] = []
        answer: str | None = None
        answered_by: str | None = None
        text: str | None = None
        skipped: list[str] = []
        for index, role in enumerate(self._roles):
            last = index == len(self._roles) - 1
            threshold = None if last else self._thresholds[index]
            if threshold is None and not last:
                # A stage calibrated never to answer would only spend: it is not run at all.
                skipped.append(role)
                continue
            async with ctx.span(f"stage:{role}", role=role, threshold=threshold) as sub:
                model = role_context(sub, role, self._budgets)
                before = ctx.ledger.used.minus(Usage())  # a copy
                drawn = await model.generate(
                    n=self.n, max_tokens=self.max_tokens, temperature=self.temperature, name="sample",
                    top_logprobs=CONFIDENCE_TOP_K if self._signal == "confidence" else 0)
                spent = ctx.ledger.used.minus(before)
            for sample in drawn:
                sample.info["role"] = role
            samples += drawn
            vote = majority(drawn)
            value = stage_signal(drawn, self._signal)
            sure = value is not None and threshold is not None and value >= threshold
            decision = "refused" if not drawn else "answer" if last or sure else "escalate"
            stages.append({"role": role, "n": len(drawn), "answer": vote.answer, "signal": value,
                           "threshold": threshold, "votes": vote.tally, "tokens": spent.tokens,
                           "flops": spent.flops, "decision": decision})
            if vote.answer is not None:  # the best answer so far, whatever the budget does next
                answer, answered_by = vote.answer, role
                text = vote.sample.text if vote.sample else None
            if sure:
                break
        info = {"answered_by": answered_by, "signal": self._signal, "stages": stages,
                "escalations": len(stages) - 1, "skipped": skipped, **self._notes}
        return Outcome(answer, text, samples, info)
