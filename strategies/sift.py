"""SIFT: Stick to the Facts, reasoning grounded by a self-made "sticker" (Zeng et al. 2025).

After Zeng, Huang, Li and Deng 2025, "SIFT: Grounding LLM Reasoning in Contexts via
Stickers" (arXiv 2502.14922, EMNLP 2025 Findings; the authors' code: zhijie-group/SIFT).
Models misread the context ("10 dollars per kilo"); SIFT has the model write down the key
facts first and checks that reasoning from them agrees with reasoning from the query:

1. **Sticker generation.** One call extracts the query's conditions and question as a
   sticker (``prompts/sift_sticker.md``).
2. **Consensus prediction.** Two predictions, drawn concurrently: one from the sticker alone
   (``sift_predict_sticker.md``) and one from the query followed by the sticker
   (``sift_predict_both.md``). If their answers are the same (after the shared normalisation,
   or the run's vote key), the sticker-alone prediction is the answer.
3. **Forward optimisation.** Otherwise the sticker is refined against the query (fix missing,
   wrong or redundant conditions, an imprecise question: ``sift_forward.md``), and both
   predictions are drawn again.
4. **Inverse generation.** Still no agreement: a sticker is reverse-engineered from the
   latest query-plus-sticker prediction (the facts that prediction actually used:
   ``sift_inverse.md``), refined forward against the query again, and both predictions are
   drawn once more.
5. **Fallback.** No agreement after all that: the answer is a plain prediction from the query
   alone (the problem's own prompt), as the paper falls back to its baseline prediction.

One *round* is steps 3 and 4; the paper's pipeline is one round (its stages 3 and 4), and
``rounds`` > 1 repeats them from the latest sticker (the paper's iterative variant);
``rounds=0`` stops after the first check. Every sticker rewrite is counted:
``Outcome.info["refinements"]`` = ``forward`` + ``inverse`` (an inverse stage is one inverse
generation plus one forward optimisation, so it counts 2), and each stage is a trace span
``stage-K`` carrying its kind and the refinements so far.

Where this differs from the paper: the prompts are this project's (the same structure:
conditions then question, one worked example for the sticker); the paper computes the plain
prediction for every problem up front and uses it only on disagreement, here it is drawn only
when needed (same answers, fewer tokens); one sample per prediction (the paper also combines
SIFT with self-consistency; compose with ``self-consistency --sampler`` for that).

Budget. A refused call ends the procedure where it is: the answer is then the latest
query-plus-sticker prediction, else the latest sticker-alone one, else none
(``route="budget"``). ``Outcome.info``: ``route`` (consensus | fallback | budget | no-fallback),
``stages`` (per stage: kind, both predictions' answers, agree), ``refinements``, ``forward``,
``inverse``, ``sticker`` (the last one).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pydantic import Field

from reasoning.context import Context, Sample
from reasoning.strategy import MaxTokens, Outcome, Strategy, Temperature

from .registry import register
from .voting import key_of


@dataclass
class _Check:
    """One consensus prediction: from the sticker alone and from query + sticker."""

    alone: Sample | None
    both: Sample | None

    @property
    def refused(self) -> bool:
        return self.alone is None or self.both is None

    @property
    def agree(self) -> bool:
        if self.refused:
            return False
        key = key_of(self.alone)  # type: ignore[arg-type]
        return key is not None and key == key_of(self.both)  # type: ignore[arg-type]


@dataclass
class _Run:
    """One problem's progress (never kept on the strategy)."""

    stages: list[dict] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    forward: int = 0
    inverse: int = 0
    sticker: str | None = None
    last: _Check | None = None
    refused: bool = False  # a call was refused: the procedure ended there

    @property
    def refinements(self) -> int:
        return self.forward + self.inverse


@register("sift")
class Sift(Strategy):
    size_option = None

    rounds: int = Field(1, ge=0, le=16, description="refinement rounds after the first check, each a forward "
                        "optimisation then an inverse generation (the paper: 1)")
    inverse: bool = Field(True, description="refine by inverse generation when forward optimisation did not agree")
    fallback: bool = Field(True, description="without agreement, answer from the query alone (one more call); "
                           "else from the last query+sticker prediction")
    sticker_tokens: int = Field(512, ge=1, description="max tokens of a sticker (generation, forward, inverse)")
    max_tokens: MaxTokens = None
    temperature: Temperature = None

    async def run(self, ctx: Context) -> Outcome:
        state = _Run()
        problem = ctx.problem.text
        async with ctx.span("stage-1", kind="sticker", refinements=0) as stage:
            state.sticker = await self._sticker(stage, "sticker", "sift_sticker", problem=problem)
            if state.sticker is None:
                state.refused = True
            else:
                await self._check(stage, state, "sticker")
        for _ in range(self.rounds):
            if self._settled(state):
                break
            await self._refine(ctx, state, inverse=False)
            if self._settled(state) or not self.inverse:
                continue
            await self._refine(ctx, state, inverse=True)
        return await self._outcome(ctx, state)

    # -- stages ------------------------------------------------------------------
    @staticmethod
    def _settled(state: _Run) -> bool:
        return state.refused or state.last is None or state.last.agree

    async def _refine(self, ctx: Context, state: _Run, *, inverse: bool) -> None:
        """A forward stage (refine the sticker against the query), or an inverse one (a sticker
        reverse-engineered from the last query+sticker prediction, then refined forward); then
        the consensus check on the new sticker."""
        kind = "inverse" if inverse else "forward"
        async with ctx.span(f"stage-{len(state.stages) + 1}", kind=kind, refinements=state.refinements) as stage:
            sticker: str | None = state.sticker
            if inverse:
                sticker = await self._sticker(stage, "inverse", "sift_inverse", prediction=state.last.both.text)  # type: ignore[union-attr]
                if sticker is None:
                    state.refused = True
                    return
                state.inverse += 1
            sticker = await self._sticker(stage, "forward", "sift_forward", problem=ctx.problem.text, sticker=sticker)
            if sticker is None:
                state.refused = True
                return
            state.forward += 1
            state.sticker = sticker
            await self._check(stage, state, kind)

    async def _check(self, ctx: Context, state: _Run, kind: str) -> None:
        from reasoning.prompts import load_prompt

        sticker = state.sticker or ""
        alone, both = await asyncio.gather(
            ctx.generate(load_prompt("sift_predict_sticker").render(sticker=sticker), name="from-sticker",
                         max_tokens=self.max_tokens, temperature=self.temperature),
            ctx.generate(load_prompt("sift_predict_both").render(problem=ctx.problem.text, sticker=sticker),
                         name="from-query-and-sticker", max_tokens=self.max_tokens, temperature=self.temperature),
        )
        check = _Check(alone[0] if alone else None, both[0] if both else None)
        state.samples += [s for s in (check.alone, check.both) if s is not None]
        state.stages.append({
            "kind": kind, "refinements": state.refinements, "agree": check.agree,
            "sticker_answer": check.alone.answer if check.alone else None,
            "query_answer": check.both.answer if check.both else None,
        })
        if check.refused:  # the budget ended the procedure: keep the newest prediction of each kind
            state.refused = True
            if state.last is not None:
                check = _Check(check.alone or state.last.alone, check.both or state.last.both)
        state.last = check

    async def _sticker(self, ctx: Context, name: str, prompt: str, **values: str) -> str | None:
        from reasoning.prompts import load_prompt

        made = await ctx.generate(load_prompt(prompt).render(**values), name=name, max_tokens=self.sticker_tokens,
                                  temperature=self.temperature)
        return made[0].text.strip() if made else None

    # -- the answer --------------------------------------------------------------
    async def _outcome(self, ctx: Context, state: _Run) -> Outcome:
        info: dict = {"stages": state.stages, "refinements": state.refinements, "forward": state.forward,
                      "inverse": state.inverse, "sticker": state.sticker}
        last = state.last
        if last is not None and last.agree and not state.refused:
            return Outcome(last.alone.answer, last.alone.text, state.samples, {**info, "route": "consensus"})  # type: ignore[union-attr]
        route = "budget" if state.refused else "no-fallback"
        if not state.refused and self.fallback:  # every stage ran and none agreed
            async with ctx.span("fallback", kind="query") as sub:
                plain = await sub.generate(name="from-query", max_tokens=self.max_tokens, temperature=self.temperature)
            if plain:
                state.samples.append(plain[0])
                return Outcome(plain[0].answer, plain[0].text, state.samples, {**info, "route": "fallback"})
            route = "budget"  # the fallback itself was refused
        best = None if last is None else (last.both or last.alone)
        return Outcome(best.answer if best else None, best.text if best else None, state.samples,
                       {**info, "route": route})
