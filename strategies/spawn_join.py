"""Spawn-join: the model plans sub-tasks, workers solve them in parallel, the plan resumes with their results.

After Adaptive Parallel Reasoning (Pan et al. 2025) and Multiverse (Yang et al. 2025), at the
prompt level: no special model, only a small syntax the plan prompt teaches.

Syntax (``prompts/spawn_plan.md``): the model marks each sub-task as
``<spawn>sub-task text</spawn>``. Tags do not nest; a sub-task is plain text. The plan call
stops at ``<join`` so a model cannot invent its workers' results.

One node of the tree, at depth d (the root is 0):

1. **plan** — ``spawn_plan`` with the problem and the node's task. Routes:
   - ``spawn``: balanced tags, no empty sub-task → children (below);
   - ``direct``: no tags and a ``\\boxed{}`` answer → the plan *is* the solution (no extra
     call; the prompt allows solving a task that does not split);
   - ``sequential``: a malformed plan — no tags and no answer, unbalanced or nested tags, an
     empty sub-task — degrades to plain sequential reasoning: one ordinary solve call (the
     problem's own prompt at the root, the worker prompt for a sub-task);
   - ``refused``: the budget refused the plan call; the node has no result.
2. **spawn** — the first ``max_fanout`` sub-tasks run concurrently, each as a child node in a
   ``ctx.span`` with its own budget slice. Sub-tasks beyond ``max_fanout`` follow
   ``overflow``: ``"drop"`` (default) discards them (counted in ``info``), ``"sequential"``
   runs them one at a time after the concurrent ones, so ``max_fanout`` then bounds
   concurrency, not the number of children. A child at depth < ``max_depth`` plans again
   (and may spawn); a child at ``max_depth`` is a leaf: one worker call (``spawn_task``).
3. **join** — the node's plan conversation is resumed: the plan as the assistant turn, then
   ``spawn_join`` with one ``<join>`` block per child (its sub-task and conclusion: the
   last paragraphs of its text, at most ``CONCLUSION_CHARS`` = 600 characters, or its last
   600 characters when no paragraph fits); the node writes its result, the root its final
   answer in ``\\boxed{}``. The join is lossy by design: everything a child wrote before
   its last 600 characters is dropped. Multiverse's Reduce stage is lossless (the merge
   attends to every branch's full KV cache), and APR's child threads choose what to return
   with ``join(msg)`` (in its Countdown runs, the solution path found, or nothing); here
   neither model is trained, so the cut is a fixed rule.

Context window per thread (``context_limit`` = C tokens, None: no limit). APR's headline
"83.4 % vs 60.0 % at 4k context" holds every *thread* to the model's 4,096-token window (the
parent: its prompt, plan, joined results and continuation; each child: the context the
parent passed it and its own search), not the problem to 4,096 tokens in all: that run's
threads summed to ~16.7k generated tokens per problem on average (its Fig. 7), and the
total-compute claim is a separate one ("80.1 % vs 66.6 % at 20k total tokens", APR
against SoS+ cons@7). With ``context_limit`` every call of a thread — the plan, a worker,
the sequential fallback and the join (whose prompt is the parent's whole conversation so
far) — gets ``max_tokens`` = min(max_tokens, C - its prompt tokens) (the backend's count:
exact on local, vLLM and Scripted, an upper bound on API backends); a thread whose prompt
alone fills C makes no call ("context window full" in the node's ``reason``, or the join
falls back to the children's vote). A per-problem budget still applies on top:
``benchmarks/sweeps/puzzles_apr.yaml`` holds each thread to 4,096 tokens and each problem to
APR's 20k generated tokens in all.

Budget: every call goes through the ledger (a refused call returns ``[]``). When a node
spawns k children (k counts the overflow ones run sequentially), each child gets a slice
``ctx.slice(Budget(...))`` holding, for every limit the chain sets among tokens,
completion_tokens, calls, usd and flops, ``(1 - join_share) × remaining / k`` of what is
left after the plan (calls: at least one call is kept back for the join). Slices are
ceilings: what a child leaves unspent stays with the parent, so the join gets the reserve
plus every child's leftovers. Seconds are not sliced: concurrent children share the
deadline. A child whose slice cannot fit a call reports "no result". If the join call is
refused, or cut at max_tokens before its ``\\boxed{}`` (the "last number" of a cut-off
text is arbitrary), the node's answer is the majority of its children's answers
(``info["fallback"]``).

``Outcome.info``: ``route`` (the root's), ``depth`` (deepest node reached), ``children``
(the root's child count), ``nodes``, ``dropped`` and ``tree`` (per node: depth, route,
task, children, dropped, and ``reason`` / ``fallback`` where they apply).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from reasoning.budget import Budget
from reasoning.context import Context, Sample
from pydantic import Field

from reasoning.strategy import MaxTokens, Outcome, Strategy, Temperature
from reasoning.types import Message
from reasoning.answers.latex_utils import last_boxed

from .registry import register
from .voting import majority

ROOT_TASK = "Solve the problem."
CONCLUSION_CHARS = 600


class _ContextFull(list):
    """The (empty) samples of a call not made because its prompt filled the thread's context."""


CONTEXT_FULL: list = _ContextFull()
_TAG = re.compile(r"<(/?)spawn>", re.IGNORECASE)
OVERFLOW = ("drop", "sequential")


class MalformedPlan(ValueError):
    """A plan whose spawn tags cannot be read; the message says why."""


def parse_spawns(plan: str) -> list[str]:
    """The sub-tasks marked ``<spawn>...</spawn>`` in ``plan``, in order ([] when none).

    Raises MalformedPlan for unbalanced or nested tags and for an empty sub-task.
    """
    tasks: list[str] = []
    opened: int | None = None
    for tag in _TAG.finditer(plan):
        closing = tag.group(1) == "/"
        if not closing:
            if opened is not None:
                raise MalformedPlan("nested <spawn> tags")
            opened = tag.end()
            continue
        if opened is None:
            raise MalformedPlan("</spawn> without an opening <spawn>")
        text = plan[opened : tag.start()].strip()
        if not text:
            raise MalformedPlan("empty sub-task")
        tasks.append(text)
        opened = None
    if opened is not None:
        raise MalformedPlan("<spawn> never closed")
    return tasks


def conclusion(text: str, limit: int = CONCLUSION_CHARS) -> str:
    """The last paragraphs of ``text`` that fit in ``limit`` characters (a tail if none fits)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    kept: list[str] = []
    for paragraph in reversed(paragraphs):
        if sum(len(p) + 2 for p in kept) + len(paragraph) > limit:
            break
        kept.insert(0, paragraph)
    if kept:
        return "\n\n".join(kept)
    return "…" + text.strip()[-limit:] if text.strip() else ""


def child_budget(ctx: Context, count: int, join_share: float) -> Budget:
    """One child's slice: (1 - join_share) of each finite remaining limit, split ``count`` ways."""
    return ctx.share_of(1 - join_share, split=count)


@dataclass(slots=True)
class _Node:
    depth: int
    task: str
    route: str
    text: str | None = None
    answer: str | None = None
    samples: list[Sample] = field(default_factory=list)
    children: list[_Node] = field(default_factory=list)
    dropped: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def shape(self) -> dict[str, Any]:
        shape: dict[str, Any] = {"depth": self.depth, "route": self.route, "task": self.task[:120]}
        if self.children or self.route == "spawn":
            shape["children"] = [child.shape() for child in self.children]
        if self.dropped:
            shape["dropped"] = self.dropped
        shape.update(self.info)
        return shape

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


@register("spawn-join")
class SpawnJoin(Strategy):
    size_option = "max_fanout"  # --n / sweeps / "spawn-join-4" set the parallel width

    max_depth: int = Field(1, ge=1, description="levels of sub-tasks below the root")
    max_fanout: int = Field(4, ge=1, description="most sub-tasks one node may spawn")
    overflow: Literal["drop", "sequential"] = Field("drop", description="sub-tasks past max_fanout: dropped, "
                                                    "or solved one after another by the parent")
    join_share: float = Field(0.25, ge=0, lt=1, description="share of a node's budget kept for joining its children")
    context_limit: int | None = Field(None, ge=1, description="context window of every thread, in tokens (APR's "
                                      "per-thread limit): each call's prompt plus what it generates; None: no limit")
    max_tokens: MaxTokens = None
    temperature: Temperature = None

    async def run(self, ctx: Context) -> Outcome:
        root = await self._node(ctx, ROOT_TASK, 0)
        nodes = list(root.walk())
        info = {
            "route": root.route,
            "depth": max(node.depth for node in nodes),
            "children": len(root.children),
            "nodes": len(nodes),
            "dropped": sum(node.dropped for node in nodes),
            "tree": root.shape(),
        }
        samples = [sample for node in nodes for sample in node.samples]
        return Outcome(root.answer, root.text, samples, info)

    # -- one node of the tree --------------------------------------------------------
    async def _node(self, ctx: Context, task: str, depth: int) -> _Node:
        if depth >= self.max_depth:
            return await self._solve(ctx, task, depth, "leaf")
        from reasoning.prompts import load_prompt

        plan_prompt = load_prompt("spawn_plan").render(
            problem=ctx.problem.text, task=task, max_fanout=str(self.max_fanout)
        )
        plans = await self._generate(ctx, plan_prompt, name="plan", stop=("<join",))
        if not plans:
            node = _Node(depth, task, "refused")
            if plans is CONTEXT_FULL:
                node.info["reason"] = "context window full"
            return node
        plan = plans[0]
        try:
            subtasks = parse_spawns(plan.text)
        except MalformedPlan as bad:
            return await self._solve(ctx, task, depth, "sequential", plans, reason=str(bad))
        if not subtasks:
            if last_boxed(plan.text) is not None:
                return _Node(depth, task, "direct", plan.text, plan.answer, plans)
            return await self._solve(ctx, task, depth, "sequential", plans, reason="no <spawn> tags and no answer")
        node = _Node(depth, task, "spawn", samples=list(plans))
        node.children, node.dropped = await self._spawn(ctx, subtasks, depth)
        await self._join(ctx, node, plan_prompt, plan.text)
        return node

    async def _solve(
        self, ctx: Context, task: str, depth: int, route: str, earlier: Sequence[Sample] = (), reason: str | None = None
    ) -> _Node:
        """One ordinary call: the problem's own prompt at the root, the worker prompt below."""
        if depth == 0:
            prompt = None
        else:
            from reasoning.prompts import load_prompt

            prompt = load_prompt("spawn_task").render(problem=ctx.problem.text, task=task)
        samples = await self._generate(ctx, prompt, name="solve" if depth == 0 else "work")
        node = _Node(depth, task, route, samples=[*earlier, *samples])
        if reason or samples is CONTEXT_FULL:
            node.info["reason"] = "; ".join(r for r in (reason, samples is CONTEXT_FULL and "context window full") if r)
        if samples:
            node.text, node.answer = samples[0].text, samples[0].answer
        return node

    async def _spawn(self, ctx: Context, subtasks: list[str], depth: int) -> tuple[list[_Node], int]:
        concurrent = subtasks[: self.max_fanout]
        later = subtasks[self.max_fanout :] if self.overflow == "sequential" else []
        dropped = len(subtasks) - len(concurrent) - len(later)
        budget = child_budget(ctx, len(concurrent) + len(later), self.join_share)

        async def child(index: int, text: str) -> _Node:
            async with ctx.span(f"spawn-{depth + 1}.{index + 1}", task=text, depth=depth + 1) as sub:
                return await self._node(sub.slice(budget, name="budget"), text, depth + 1)

        children = list(await asyncio.gather(*(child(i, text) for i, text in enumerate(concurrent))))
        for offset, text in enumerate(later):
            children.append(await child(len(concurrent) + offset, text))
        return children, dropped

    async def _join(self, ctx: Context, node: _Node, plan_prompt: tuple[Message, ...], plan: str) -> None:
        from reasoning.prompts import load_prompt

        blocks = []
        for index, child in enumerate(node.children, 1):
            full = child.info.get("reason", "").endswith("context window full")
            result = (conclusion(child.text) if child.text
                      else "(no result: its context window was full)" if full else "(no result: the budget ran out)")
            blocks.append(f"<join>\nSub-task {index}: {child.task}\nResult: {result}\n</join>")
        messages = (
            *plan_prompt,
            Message("assistant", plan.split("<join", 1)[0].rstrip()),
            *load_prompt("spawn_join").render(joins="\n\n".join(blocks)),
        )
        finals = await self._generate(ctx, messages, name="join")
        node.samples.extend(finals)
        vote = majority([Sample(c.text or "", c.answer) for c in node.children])
        if finals:
            final = finals[0]
            # The "last number" of a join cut off before its \boxed{} is an arbitrary value.
            cut = final.completion is not None and final.completion.finish_reason == "length"
            if not (cut and last_boxed(final.text) is None and vote.answer is not None):
                node.text, node.answer = final.text, final.answer
                return
            node.info["fallback"] = "children-vote (join truncated)"
        else:
            node.info["fallback"] = "children-vote (context window full)" if finals is CONTEXT_FULL else "children-vote"
        node.text, node.answer = (vote.sample.text or None) if vote.sample else None, vote.answer

    async def _generate(self, ctx: Context, prompt: Any, *, name: str, stop: Sequence[str] = ()) -> list[Sample]:
        """One call of a thread, held to ``context_limit`` (prompt + generation) when set; a
        prompt that already fills the window makes no call (the node's ``reason`` says so) and
        returns ``CONTEXT_FULL``."""
        options: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature, "stop": stop}
        if self.context_limit is not None:
            request = ctx.request(prompt, **options)
            prompt_tokens = ctx.backend.count_prompt_tokens(request)
            room = self.context_limit - prompt_tokens
            if room < 1:  # not a budget refusal: nothing is sent, charged or traced as a call
                return CONTEXT_FULL
            options["max_tokens"] = min(request.max_tokens, room)
        return await ctx.generate(prompt, name=name, **options)
