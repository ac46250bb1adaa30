"""Sleep-time compute: think about a context once, offline; answer its questions cheaply.

After Lin, Snell, Wang, Packer, Wooders, Stoica, Gonzalez 2025, "Sleep-time Compute: Beyond
Inference Scaling at Test-time" (arXiv 2504.13171; code ``letta-ai/sleep-time-compute``). A
prompt is split into a *context* c, known before any question, and a *query* q. Offline ("sleep
time") the model re-represents the context, S(c) -> c': it writes down the quantities and
inferences it expects future questions to need. At test time it answers from c' (with c) and
q under a small budget. Sleep-time compute is paid once per context and amortised over every
question about it. The paper reports ~5x less test-time compute for the same accuracy on
Stateful GSM-Symbolic and Stateful AIME, and a 2.5x lower cost per query when several
questions share a context (Multi-Query GSM-Symbolic).

**What this strategy does**, per question:

1. The context and the query: ``problem.metadata["context"]`` and ``["query"]`` when the
   dataset gives them (``reasoning-bench run --dataset stateful-gsm8k``), else the paper's
   split of the problem text: the last sentence is the query, the rest the context
   (``split_context``). The context's id is ``metadata["context_id"]``, else a hash of it.
2. The notes: read from the memory (``memory``, a SQLite file: the CLI's ``--memory PATH``;
   without one, a temporary file private to this strategy object). When a context has none
   yet, ``sleep_samples`` offline generations (``prompts/sleep_time_think.md``, up to
   ``sleep_max_tokens`` each, on the ``sleep`` role: the generator's backend unless the run
   gives one) are joined into its notes and committed. Questions that share a context in one
   process wait for the first one's notes (one computation per context); a resumed run reuses
   the committed notes without paying for them again.
3. The answer: ``n`` samples (default 1) of ``prompts/sleep_time_answer.md`` (context, notes,
   query; the run's system prompt kept), up to ``max_tokens`` each, majority vote.

**Accounting.** The offline calls run under their own ledger, ``sleep_tokens`` tokens per
context at most, a child of the run's ledger (so ``--run-budget`` bounds them too) but not of
the question's: the question's budget and ``result.usage`` are test-time compute only. The
offline usage is charged to the ``sleep`` role of the question that computed it
(``result.usage_by_role["sleep"]``: so a run's rows add up to everything the model did) and is
reported in ``Outcome.info``: ``sleep_usage`` (what the context's notes cost, whoever paid),
``context_questions`` (questions sharing the context: ``metadata["context_questions"]`` when the
dataset says, else those that have read the notes so far) and ``sleep_usage_amortised``
(``sleep_usage`` / ``context_questions``, the per-question share the paper reports; its tokens
also as the scalar ``sleep_tokens_amortised``, which sweep rows keep);
``notes_computed_here`` says whether this question paid for them.

``sleep=False`` is the test-time-only baseline with the same prompt and budget (notes
"(none)", no offline calls).

**Differences from the paper**: the paper's sleep-time agent edits a memory block by tool calls
(``rethink_memory``, repeated until it calls ``finish_rethinking_memory``) with few-shot
example questions in its context, and scales sleep-time compute with more or longer sleep-time
passes; here the notes are one plain generation (or ``sleep_samples`` of them, joined), no
example questions. Its test-time compute is varied by verbosity prompts (non-reasoning models)
or reasoning effort; here by ``max_tokens`` and ``n`` under the question's enforced budget.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass

from pydantic import Field, PrivateAttr
from reasoning.prompts import load_prompt

from reasoning.budget import Budget, Ledger
from reasoning.context import Context
from reasoning.errors import ConfigError
from reasoning.strategy import MaxTokens, Outcome, Strategy, Temperature

from .memory_store import MemoryStore, Notes, key_lock, open_store
from .registry import register
from .voting import majority

SLEEP = "sleep"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_context(text: str) -> tuple[str, str]:
    """(context, query): the last sentence of ``text`` is the query, everything before it the
    context (Stateful GSM-Symbolic's split; a sentence ends at . ! or ? followed by a space)."""
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
    if len(sentences) < 2:
        raise ConfigError("sleep-time needs a context and a question: give the problem metadata 'context' and "
                          f"'query', or a text of several sentences (got {text[:80]!r})")
    return " ".join(sentences[:-1]), sentences[-1]


def context_id_of(context: str) -> str:
    return "sha256:" + hashlib.sha256(context.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Situation:
    context: str
    query: str
    context_id: str
    questions: int | None  # questions sharing the context, when the dataset says


def situation(ctx: Context) -> Situation:
    meta = ctx.problem.metadata or {}
    if isinstance(meta.get("context"), str) and isinstance(meta.get("query"), str):
        context, query = meta["context"], meta["query"]
    else:
        context, query = split_context(ctx.problem.text)
    shared = meta.get("context_questions")
    return Situation(context, query, str(meta.get("context_id") or context_id_of(context)),
                     shared if isinstance(shared, int) and shared >= 1 else None)


def scaled(usage: dict[str, float], by: float) -> dict[str, float]:
    return {k: v / by for k, v in usage.items()}


@register("sleep-time")
class SleepTime(Strategy):
    memory: str | None = Field(None, description="SQLite file caching each context's notes (CLI: --memory PATH); "
                               "None: a temporary one for this strategy object")
    n: int = Field(1, ge=1, description="test-time samples per question, majority-voted")
    sleep_samples: int = Field(1, ge=1, description="offline generations per context, joined into its notes")
    sleep_max_tokens: int = Field(1024, ge=1, description="max new tokens of one offline generation")
    sleep_tokens: int | None = Field(None, ge=1, description="offline tokens per context at most (prompt + "
                                     "completion; None: only the run budget bounds them)")
    sleep: bool = Field(True, description="False: the test-time-only baseline (same prompt, no notes)")
    max_tokens: MaxTokens = None
    temperature: Temperature = None

    _store: MemoryStore | None = PrivateAttr(None)

    def store(self) -> MemoryStore:
        if self._store is None:
            self._store = open_store(self.memory)
        return self._store

    async def run(self, ctx: Context) -> Outcome:
        where = situation(ctx)
        info: dict = {"context_id": where.context_id}
        notes_text = "(none)"
        if self.sleep:
            notes, computed = await self._notes(ctx, where)
            notes_text = notes.notes or "(none)"
            uses = await asyncio.to_thread(self.store().use_notes, where.context_id)
            shared = where.questions or max(1, uses)
            amortised = scaled(notes.usage, shared)
            info.update(notes_computed_here=computed, sleep_usage=notes.usage, context_questions=shared,
                        sleep_usage_amortised=amortised, notes=notes.notes,
                        sleep_tokens_amortised=amortised.get("tokens", 0.0))  # a scalar: sweeps keep it per row
        *head, _ = ctx.messages
        prompt = [*head, *load_prompt("sleep_time_answer").render(context=where.context, notes=notes_text,
                                                                  question=where.query)]
        samples = await ctx.generate(prompt, n=self.n, max_tokens=self.max_tokens, temperature=self.temperature,
                                     name="answer")
        vote = majority(samples)
        info.update(votes=vote.tally, n=len(samples))
        return Outcome(vote.answer, vote.sample.text if vote.sample else None, samples, info)

    async def _notes(self, ctx: Context, where: Situation) -> tuple[Notes, bool]:
        """The context's notes, computed here (True) when the memory has none yet."""
        store = self.store()
        async with key_lock(store, where.context_id):
            stored = await asyncio.to_thread(store.notes, where.context_id)
            if stored is not None:
                return stored, False
            # Offline compute: its own ledger under the run's (not under this question's).
            top = ctx.ledger
            while top.parent is not None and top.parent.parent is not None:
                top = top.parent  # the question's ledger (ctx may be a slice of it)
            offline = (top.parent.child(Budget(tokens=self.sleep_tokens)) if top.parent is not None
                       else Ledger(Budget(tokens=self.sleep_tokens)))
            async with ctx.span("sleep-time", context_id=where.context_id) as span:
                # _derive: the same solve (trace, roles, memo), another ledger and role.
                sleeper = span._derive(ledger=offline, role=SLEEP)
                thoughts = await sleeper.generate(list(load_prompt("sleep_time_think").render(context=where.context)),
                                                  n=self.sleep_samples, max_tokens=self.sleep_max_tokens,
                                                  name="think", min_tokens=1)
            text = "\n\n".join(t.text.strip() for t in thoughts if t.text.strip())
            usage = offline.usage().to_dict()
            usage.pop("seconds", None)
            if not thoughts:  # refused (budget): nothing spent, nothing stored; a later question may try again
                return Notes(where.context_id, "", usage, 0), True
            stored = await asyncio.to_thread(store.put_notes, where.context_id, where.context, text, usage)
            return stored, True

