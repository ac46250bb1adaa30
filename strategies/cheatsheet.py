"""Dynamic Cheatsheet: a memory of curated insights that grows over the problems of a run.

After Suzgun, Yuksekgonul, Bianchi, Jurafsky, Zou 2025, "Dynamic Cheatsheet: Test-Time Learning
with Adaptive Memory" (arXiv 2504.07952; official code ``suzgunmirac/dynamic-cheatsheet``, MIT).
The paper has two variants. **DC-Cu** (cumulative): one cheatsheet goes into every problem's
prompt, and after each answer a curator call rewrites the whole cheatsheet from the question,
the model's answer and the previous cheatsheet. **DC-RS** (retrieval & synthesis): before each
problem, the k = 3 most similar earlier problems (cosine similarity of input embeddings) are
retrieved with the model's outputs on them, and a curator call synthesises the cheatsheet for
this problem from them and the previous cheatsheet. Neither ever sees a gold answer.

**What this strategy does** (the variant is "curated entries, retrieved": DC-Cu's curation
after each answer, DC-RS's retrieval before it):

1. *Retrieve*: embed the problem (``embedder``: MiniLM, the model ETS uses, when installed) and
   rank the entries committed to the memory so far by cosine similarity to it (ties: the older
   entry first); take the ``top_k`` most similar that fit in ``memory_chars`` characters, in
   that order, skipping any that would overflow. They are listed least similar first, the most
   similar nearest the problem (as DC-RS lists its retrieved pairs). An empty memory reads
   ``(empty)``, the paper's placeholder.
2. *Solve*: ``n`` samples (the paper: one, at temperature 0) with the cheatsheet above the
   problem (``prompts/cheatsheet_solve.md``; the run's system prompt is kept), majority vote.
   With ``execute_code`` (the paper's generator has it), the prompt says how to run Python
   (``prompts/cheatsheet_code.md``); a sample that ends a ```python block with "EXECUTE CODE!"
   has the block run in the code sandbox (``verifiers.code_exec.arun_python``, 10 s; what it
   printed, its last ~480 characters) appended after the flag, and the model is asked to go on
   (``prompts/cheatsheet_continue.md``, the last time saying so), at most ``code_rounds`` times
   (the paper: 3); the sample is then the whole exchange and its answer is read from it.
3. *Curate*: one call on the ``curator`` role (the generator's backend unless the run gives one;
   at ``curate_temperature``) sees the problem, the chosen solution and the retrieved entries
   and writes ONE short ``<memory_item>`` (``prompts/cheatsheet_curate.md``, after the paper's
   curator: judge the solution first, keep only what is reusable, improve an entry it
   duplicates). Cut at ``entry_chars`` and committed under the problem's id with the problem's
   embedding. A curator reply without a ``<memory_item>`` adds nothing (the paper then keeps the
   old cheatsheet).

``learn=False`` is the paper's baseline with the same prompt: an ``(empty)`` cheatsheet, nothing
read or written. Embeddings are computed locally, outside the ledger; both calls are charged to
the problem's budget (the curator's under the ``curator`` role in ``usage_by_role``).

**The memory** is a SQLite file (``memory``; the CLI's ``--memory PATH``; without one, a
temporary file private to this strategy object). See ``memory_store.py``: WAL, a busy timeout,
one transaction per entry, entries keyed by problem id so a resumed run that re-solves a
problem replaces its entry instead of adding one, and a problem never retrieves its own entry.
**Order and concurrency**: a problem sees exactly the entries committed before its retrieval
starts. With one problem at a time (``reasoning-bench run --concurrency 1``) that is every
earlier problem of the dataset, in order: the paper's sequential setting, deterministic on a
deterministic backend. With more in flight, problems that overlap do not see each other's
entries, and which ones overlap depends on timing; ``Outcome.info["visible"]`` and
``["retrieved"]`` record what each problem saw.

**Differences from the paper**: (a) the memory is a set of short per-problem entries of which
the most relevant are retrieved, not one rewritten document (DC-Cu) nor raw earlier outputs
synthesised by an extra call (DC-RS): this keeps it bounded (``memory_chars``), resumable and
safe under concurrency, where one carried-forward document would need strictly sequential
problems; (b) the memory budget: the paper's cheatsheet grows to about 2,000-2,500 words, here
at most ``top_k`` entries of at most ``entry_chars`` each, within ``memory_chars``; (c) code
execution is off by default (``execute_code``): the paper's Game-of-24 result (GPT-4o 10% ->
99%) comes from storing a brute-force solver and *running* it, which needs it on; the output
shown is cut to what the sandbox returns (~480 characters), and each continuation is a new call
(the paper's too) charged to the problem's budget.

``Outcome.info``: ``visible`` (entries in memory when retrieving), ``retrieved`` (their problem
ids, most similar first), ``similarity``, ``entry`` (what this problem committed, or None),
``votes``, ``n``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re

import numpy as np
from pydantic import Field, PrivateAttr
from reasoning.prompts import load_prompt
from reasoning.verifiers.code_exec import arun_python

from reasoning.context import Context, Sample
from reasoning.errors import ConfigError
from reasoning.strategy import MaxTokens, Outcome, Strategy, Temperature
from reasoning.types import Message

from .embeddings import EmbedderName, embed, embedder, embedder_name
from .memory_store import Entry, MemoryStore, open_store
from .registry import register
from .voting import majority

EMPTY = "(empty)"
EXECUTE = "EXECUTE CODE!"
CODE_TIMEOUT_S = 10.0
_PYTHON_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
CURATOR = "curator"
_ITEM = re.compile(r"<memory_item>.*?</memory_item>", re.DOTALL)


def problem_key(ctx: Context) -> str:
    """The key a problem's entry is stored under: its id, else a hash of its text."""
    if ctx.problem.id is not None:
        return str(ctx.problem.id)
    return "sha256:" + hashlib.sha256(ctx.problem.text.encode()).hexdigest()[:16]


def curated_entry(text: str, limit: int) -> str | None:
    """The first ``<memory_item>...</memory_item>`` of a curator reply, cut at ``limit``
    characters; None when there is none."""
    found = _ITEM.search(text)
    return found.group(0)[:limit].strip() if found else None


def code_to_run(text: str) -> tuple[str, str] | None:
    """(text up to the flag, the last ```python block before it) when ``text`` asks for code to
    be run: ``EXECUTE CODE!`` right after a closing ``` (the paper's rule), else None."""
    before = text.split(EXECUTE, 1)[0].rstrip()
    if EXECUTE not in text or not before.endswith("```"):
        return None
    blocks = _PYTHON_BLOCK.findall(before)
    return (before, blocks[-1]) if blocks else None


def render(entries: list[tuple[Entry, float]]) -> str:
    """The cheatsheet block: retrieved entries, least similar first (the most similar nearest
    the problem), each with the problem it came from."""
    if not entries:
        return EMPTY
    return "\n\n".join(f"(from problem {e.problem_id}, similarity {s:.2f})\n{e.entry}" for e, s in reversed(entries))


@register("cheatsheet")
class Cheatsheet(Strategy):
    memory: str | None = Field(None, description="SQLite file the memory lives in (CLI: --memory PATH); None: a "
                               "temporary one for this strategy object")
    n: int = Field(1, ge=1, description="samples per problem, majority-voted (the paper: 1)")
    top_k: int = Field(3, ge=1, description="entries retrieved into a prompt, most similar first (DC-RS: 3)")
    memory_chars: int = Field(4000, ge=1, description="characters of retrieved entries a prompt holds at most")
    entry_chars: int = Field(1200, ge=1, description="characters one curated entry keeps at most")
    curate_max_tokens: int = Field(384, ge=1, description="max new tokens of the curator's reply")
    curate_temperature: float = Field(0.0, ge=0, description="the curator's temperature (the paper: 0)")
    execute_code: bool = Field(False, description="run a ```python block the model ends with EXECUTE CODE! in the "
                               "code sandbox and show it the output (the paper's generator does)")
    code_rounds: int = Field(3, ge=0, description="execute_code: continuations after an execution (the paper: 3)")
    learn: bool = Field(True, description="False: the baseline, an (empty) cheatsheet, no memory read or written")
    embedder: EmbedderName = Field("auto", description="problem embeddings: minilm, ngrams, or auto (MiniLM if "
                                   "installed)")
    max_tokens: MaxTokens = None
    temperature: Temperature = None

    _store: MemoryStore | None = PrivateAttr(None)

    def store(self) -> MemoryStore:
        """The memory (opened, or created, on first use)."""
        if self._store is None:
            self._store = open_store(self.memory)
        return self._store

    async def run(self, ctx: Context) -> Outcome:
        key = problem_key(ctx)
        retrieved: list[tuple[Entry, float]] = []
        visible = 0
        if self.learn:
            store = self.store()
            entries = await asyncio.to_thread(store.entries, key)
            visible = len(entries)
            self._check_embedder(entries, embedder_name(self.embedder))  # before any model is loaded
            model = embedder(self.embedder)
            query = (await embed(ctx, [ctx.problem.text], model))[0].astype(np.float32)
            retrieved = self._retrieve(entries, query)
        cheatsheet = render(retrieved)
        *head, last = ctx.messages
        code = "\n\n" + load_prompt("cheatsheet_code").render()[0].content if self.execute_code else ""
        prompt = [*head, *load_prompt("cheatsheet_solve").render(cheatsheet=cheatsheet, code=code,
                                                                 problem=last.content)]
        samples = await ctx.generate(prompt, n=self.n, max_tokens=self.max_tokens, temperature=self.temperature,
                                     name="solve")
        if self.execute_code:
            samples = list(await asyncio.gather(*(self._with_code(ctx, prompt, s, i) for i, s in enumerate(samples))))
        vote = majority(samples)
        chosen = vote.sample or (samples[0] if samples else None)
        entry = None
        if self.learn and chosen is not None:
            entry = await self._curate(ctx, key, cheatsheet, chosen.text, query, model.name)
        info = {"visible": visible, "retrieved": [e.problem_id for e, _ in retrieved],
                "similarity": [round(s, 4) for _, s in retrieved], "entry": entry,
                "votes": vote.tally, "n": len(samples)}
        return Outcome(vote.answer, chosen.text if chosen else None, samples, info)

    async def _with_code(self, ctx: Context, prompt: list[Message], sample: Sample, index: int) -> Sample:
        """The paper's code loop for one sample: while its text ends a ```python block with
        EXECUTE CODE!, run the block, append what it printed, and (up to ``code_rounds`` times)
        ask the model to go on; the sample becomes the whole exchange, its answer read from it."""
        history, parts, current = list(prompt), [], sample
        for round_ in range(self.code_rounds + 1):
            block = code_to_run(current.text)
            if block is None:
                parts.append(current.text)
                break
            before, code = block
            status, printed = await arun_python(code, timeout=CODE_TIMEOUT_S)
            shown = printed if status == "ok" else f"({status}: {printed})"
            turn = f"{before}\n{EXECUTE}\n\n{shown.strip()}"
            parts.append(turn)
            if round_ == self.code_rounds:
                break
            warning = (" (This is the last round: no more code will be run. Give your final solution now.)"
                       if round_ + 1 == self.code_rounds else "")
            history += [Message("assistant", turn), *load_prompt("cheatsheet_continue").render(warning=warning)]
            more = await ctx.generate(history, n=1, max_tokens=self.max_tokens, temperature=self.temperature,
                                      name=f"code-{index}-{round_ + 1}")
            if not more:  # refused by the budget: what there is so far
                break
            current = more[0]
        text = "\n\n".join(parts)
        answer = ctx.extract(text) if parts else None
        info = dict(sample.info)
        if answer is not None and ctx.vote_key is not None:
            info["vote_key"] = ctx.vote_key(ctx.problem, answer)
        return Sample(text, answer, current.completion, trace_id=current.trace_id, info=info)

    def _check_embedder(self, entries: list[Entry], model_name: str) -> None:
        other = sorted({e.embedder for e in entries} - {model_name})
        if other:
            raise ConfigError(f"memory={self.memory!r} holds entries embedded with {', '.join(other)}; this run "
                              f"embeds with {model_name}: use the same embedder or another memory file")

    def _retrieve(self, entries: list[Entry], query: np.ndarray) -> list[tuple[Entry, float]]:
        ranked = sorted(((e, float(e.embedding @ query)) for e in entries), key=lambda pair: (-pair[1], pair[0].seq))
        chosen, used = [], 0
        for entry, similarity in ranked[:self.top_k]:
            if used + len(entry.entry) <= self.memory_chars:
                chosen.append((entry, similarity))
                used += len(entry.entry)
        return chosen

    async def _curate(self, ctx: Context, key: str, cheatsheet: str, solution: str, query: np.ndarray,
                      model_name: str) -> str | None:
        prompt = load_prompt("cheatsheet_curate").render(cheatsheet=cheatsheet, problem=ctx.problem.text,
                                                         solution=solution)
        replies = await ctx.generate(list(prompt), n=1, max_tokens=self.curate_max_tokens,
                                     temperature=self.curate_temperature, role=CURATOR, name="curate", min_tokens=1)
        entry = curated_entry(replies[0].text, self.entry_chars) if replies else None
        if entry:
            await asyncio.to_thread(self.store().put_entry, key, ctx.problem.text, entry, model_name, query)
        return entry

