"""Parallel thinking: P diverse reasoning paths, then one call that synthesises them (ParaThinker 2025).

After Wen et al. 2025, "ParaThinker: Native Parallel Thinking as a New Paradigm to Scale LLM
Test-time Compute" ("width beats depth": many short independent paths plus a summarising
pass beat one long chain at equal compute). ParaThinker trains the model to think in
parallel and summarise in one forward pass; ours is the prompt-level version for any model:

1. **Paths.** ``paths`` independent solutions of the problem's own prompt, in ``groups``
   path groups run concurrently, one batched call each (``n`` = the group's share of the
   paths). By default every path is its own group with its own **approach hint** (line g of
   ``prompts/parallel_thinking_approaches.md``, appended to the problem's prompt; 8 hints,
   cycled past 8 paths): ParaThinker makes its paths diverse by design (a distinct
   ``<think i>`` token per path), and identical prompts at one temperature are just
   self-consistency's samples. Groups differ by one or more of: seed (group g gets
   ``seed + g``), temperature (``temperature_spread``: group temperatures spread evenly over
   temperature ± spread/2, floored at 0) and the hint (``hints``). ``hints=false`` without a
   ``temperature_spread`` makes ``groups`` default to 1: all paths are one batched call of
   the same prompt (this strategy's behaviour before issue 22). Groups whose requests would
   be identical (past 8 paths the hints repeat; without a ``temperature_spread`` or ``seed``
   nothing else tells them apart) are drawn as one batched call of their paths' total ``n``
   (issue 19: 16 paths are 8 calls of 2, sharing each prompt's prefill, not 16 calls of 1;
   the paths and their order are as before).
2. **Synthesis.** One call (``synthesis_prompt``, by default
   ``prompts/parallel_thinking_synthesis.md``) that shows the question and every path, in
   full, and asks for one final answer in ``\\boxed{}``. As in ParaThinker, whose summary
   attends to every path's whole KV cache, nothing is cut and nothing is pre-digested unless
   asked: ``path_chars`` clips each path to that many characters (head and tail kept, the cut
   marked) and ``label_answers`` writes each path's extracted answer beside it (both off by
   default; the published sweeps before issue 22 used ``path_chars=2000`` and
   ``label_answers=true``, and their configs now say so).
3. **Fallback.** The majority vote of the paths (``strategies.voting.majority``) is the
   answer instead when the synthesis is refused by the budget (``fallback="refused"``), its
   answer cannot be extracted (``"unparseable"``), or it was cut at ``synthesis_tokens``
   before writing a ``\\boxed{}`` (``"truncated"``: the "last number" of a cut-off text is
   an arbitrary intermediate value).

Budget: the synthesis must not be starved by the paths. With ``synthesis_share`` > 0 the
paths run in a slice holding (1 - share) of what remains of every limit in force (tokens,
completion tokens, USD, FLOPs, seconds) and all calls but one (a budget of one call goes to
the paths, whose vote is then the answer); the synthesis then draws on the
rest plus whatever the paths left unspent. A tight budget thus costs paths (the ledger
shrinks n), not the synthesis. ``synthesis_share=0`` reserves nothing.

How the paper compares, and how to compare like with like. ParaThinker's abstract reports
"substantial accuracy improvements over sequential LLMs (12.3% for 1.5B and 7.5% for 7B
models on average with 8 parallel paths)" on AIME 2024/2025, AMC 2023 and MATH-500, at 7.1 %
extra latency; the models are DeepSeek-R1-Distill-Qwen 1.5B / 7B fine-tuned to think in
parallel (this prompt-level version runs any model as it is). The sequential baseline is
*not* given equal tokens: the authors' ParaThinker-1.5B model card compares "Sequential
(32K)" (average 50.9 %) with 2, 4 and 8 paths of 16K tokens each (54.9, 59.9, 63.2 %), so
the +12.3 is 8 x 16K = 128K tokens against one 32K path; at equal tokens (2 x 16K) the gain
is +4.0. A gain over *majority voting* (+4.3 / +2.0 for 1.5B / 7B) appears only in secondary
summaries, not in the abstract, README or model card. ``benchmarks/sweeps/parathinker_gsm8k.yaml``
runs two comparisons of its own: parallel thinking vs one greedy path with ``max_tokens`` =
paths x per-path tokens (sequential at equal tokens, stricter than the paper's headline), and
vs self-consistency's vote at equal paths.

``Outcome.info``: ``route`` (synthesis | vote | none), ``fallback`` (why it voted),
``path_answers``, the vote (``votes``, ``share``, ``vote_answer``) and ``synthesis_answer``.
"""
from __future__ import annotations

import asyncio
import itertools

from reasoning.budget import Budget
from reasoning.context import Context, Sample
from pydantic import Field, model_validator

from reasoning.strategy import MaxTokens, Outcome, Strategy, Temperature
from reasoning.types import Message
from reasoning.answers.latex_utils import last_boxed

from .registry import register
from .voting import majority

_SHARED_LIMITS = ("tokens", "completion_tokens", "calls", "usd", "flops", "seconds")


def clip(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters: its head and tail, the cut marked."""
    if len(text) <= limit:
        return text
    head = limit // 2
    return f"{text[:head]}\n[... {len(text) - limit} characters omitted ...]\n{text[len(text) - (limit - head):]}"


def approach_hints() -> list[str]:
    from reasoning.prompts import load_prompt

    (_, body), *_ = load_prompt("parallel_thinking_approaches").sections
    return [line[2:].strip() for line in body.splitlines() if line.startswith("- ")]


@register("parallel-thinking")
class ParallelThinking(Strategy):
    size_option = "paths"

    paths: int = Field(8, ge=1, description="reasoning paths drawn in parallel")
    groups: int | None = Field(None, ge=1, description="groups of paths that differ (by hint, temperature or seed); "
                               "default: one per path with hints or a temperature_spread, else 1")
    hints: bool = Field(True, description="give each group a different approach hint")
    temperature: Temperature = None
    temperature_spread: float = Field(0.0, ge=0, description="groups' temperatures spread this far around temperature")
    seed: int | None = Field(None, description="base seed; group g uses seed + g")
    max_tokens: MaxTokens = None
    path_chars: int | None = Field(None, ge=20, description="clip each path to this many characters (head and tail) "
                                   "for the synthesis; None: every path in full")
    label_answers: bool = Field(False, description="write each path's extracted answer beside it for the synthesis")
    synthesis_tokens: int = Field(512, ge=1, description="max tokens of the synthesis")
    synthesis_temperature: float = Field(0.0, ge=0, description="temperature of the synthesis")
    synthesis_share: float = Field(0.25, ge=0, lt=1, description="share of the budget kept for the synthesis")
    synthesis_prompt: str = Field("parallel_thinking_synthesis", description="prompt file (prompts/) of the synthesis")

    @property
    def path_groups(self) -> int:
        """The number of path groups: ``groups``, or by default one per path when they can differ."""
        if self.groups is not None:
            return self.groups
        return self.paths if (self.hints or self.temperature_spread) else 1

    @model_validator(mode="after")
    def _groups_differ(self) -> ParallelThinking:
        if self.groups is not None and self.groups > self.paths:
            raise ValueError(f"groups must be between 1 and paths ({self.paths}), got {self.groups}")
        if self.path_groups < 2 and (self.temperature_spread or (self.hints and self.paths > 1)):
            raise ValueError("hints and temperature_spread make path groups differ: set groups >= 2 "
                             "(or hints=false for one batched call of identical paths)")
        if self.path_groups > 1 and not (self.hints or self.temperature_spread or self.seed is not None):
            raise ValueError("groups > 1 needs hints, temperature_spread or seed to make them differ "
                             "(identical paths are one batched call: groups=1)")
        return self

    async def run(self, ctx: Context) -> Outcome:
        paths = await self.think(self.path_context(ctx))
        vote = majority(paths)
        info: dict = {
            "paths": len(paths),
            "path_answers": [p.answer for p in paths],
            "votes": vote.tally,
            "share": vote.share,
            "vote_answer": vote.answer,
        }
        if not paths:
            return Outcome(None, None, [], {**info, "route": "none"})

        async with ctx.span("synthesis") as sub:
            synthesis = await sub.generate(
                self.synthesis_messages(ctx, paths), max_tokens=self.synthesis_tokens,
                temperature=self.synthesis_temperature, name="synthesis",
            )
        fallback = self.unusable(synthesis)
        if fallback is None:
            final = synthesis[0]
            info.update(route="synthesis", synthesis_answer=final.answer)
            return Outcome(final.answer, final.text, paths, info)
        info.update(route="vote", fallback=fallback, synthesis_answer=synthesis[0].answer if synthesis else None)
        return Outcome(vote.answer, vote.sample.text if vote.sample else None, paths, info)

    # -- phases ----------------------------------------------------------------
    def path_context(self, ctx: Context) -> Context:
        """Where paths are drawn: all but ``synthesis_share`` of each limit in force, and one call."""
        if self.synthesis_share == 0:
            return ctx.slice(Budget(), name="paths")
        # one call for the synthesis, unless that leaves the paths none
        return ctx.share(1 - self.synthesis_share, limits=_SHARED_LIMITS, keep_calls=1, name="paths")

    async def think(self, ctx: Context) -> list[Sample]:
        """All paths: one batched call per distinct group request, concurrently. Groups whose
        requests are identical (same hint, temperature and seed: more groups than hints, no
        spread or seed) are one call with their paths' total ``n``, which shares the prompt's
        prefill; each group still gets its own paths, in group order."""
        base = ctx.sampling.temperature if self.temperature is None else self.temperature
        hints = approach_hints() if self.hints else []
        groups = self.path_groups
        sizes = [self.paths // groups + (g < self.paths % groups) for g in range(groups)]
        calls: dict[tuple[int | None, float, int | None], list[int]] = {}  # (hint, temperature, seed) -> groups
        for g in range(groups):
            offset = g / (groups - 1) - 0.5 if groups > 1 else 0.0
            key = (g % len(hints) if hints else None, max(0.0, base + offset * self.temperature_spread),
                   None if self.seed is None else self.seed + g)
            calls.setdefault(key, []).append(g)

        async def call(key: tuple[int | None, float, int | None], members: list[int]) -> list[Sample]:
            hint, temperature, seed = key
            return await ctx.generate(
                None if hint is None else self.hinted(ctx, hints[hint]), n=sum(sizes[g] for g in members),
                max_tokens=self.max_tokens, name=f"paths-{members[0]}", temperature=temperature, seed=seed,
            )

        found = await asyncio.gather(*(call(key, members) for key, members in calls.items()))
        by_group: dict[int, list[Sample]] = {}
        for members, samples in zip(calls.values(), found, strict=True):
            drawn = iter(samples)  # a call the ledger shrank fills its first groups first
            for g in members:
                by_group[g] = list(itertools.islice(drawn, sizes[g]))
        return [path for g in range(groups) for path in by_group[g]]

    @staticmethod
    def hinted(ctx: Context, hint: str) -> tuple[Message, ...]:
        """The problem's own prompt with ``hint`` appended to its last user message."""
        last = max(i for i, m in enumerate(ctx.messages) if m.role == "user")
        message = ctx.messages[last]
        return (*ctx.messages[:last], Message("user", f"{message.content}\n\n{hint}"), *ctx.messages[last + 1 :])

    def synthesis_messages(self, ctx: Context, paths: list[Sample]) -> tuple[Message, ...]:
        from reasoning.prompts import load_prompt

        def label(i: int, path: Sample) -> str:
            if not self.label_answers:
                return f"Attempt {i}:"
            return f"Attempt {i} (its final answer: {'none' if path.answer is None else path.answer}):"

        shown = "\n\n".join(
            f"{label(i, p)}\n{p.text if self.path_chars is None else clip(p.text, self.path_chars)}"
            for i, p in enumerate(paths, 1)
        )
        return load_prompt(self.synthesis_prompt).render(problem=ctx.problem.text, paths=shown)

    @staticmethod
    def unusable(synthesis: list[Sample]) -> str | None:
        """Why the synthesis cannot give the answer (None when it can)."""
        if not synthesis:
            return "refused"
        final = synthesis[0]
        if final.answer is None:
            return "unparseable"
        cut = final.completion is not None and final.completion.finish_reason == "length"
        if cut and last_boxed(final.text) is None:
            return "truncated"
        return None
