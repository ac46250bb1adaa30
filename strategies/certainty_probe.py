"""Certainty probing: stop a reasoning trace once probes of its current answer agree (Dynasor-CoT 2025).

After Fu et al. 2025, "Efficiently Serving LLM Reasoning Programs with Certaindex"
(arXiv 2412.20993; Dynasor-CoT, also "Reasoning Without Self-Doubt: More Efficient
Chain-of-Thought Through Certainty Probing", ICLR 2025 workshop). Official code:
``hao-ai-lab/Dynasor`` (``dynasor/cot.py``); TensorRT-LLM's Scaffolding port
(``DynasorGenerationController``) has the same loop.

One trace is written in segments of ``probe_every`` tokens (``ctx.extend`` on the trace's
prefix). After each segment a probe asks the model for its answer now: the trace so far plus
the fixed ``probe`` text, which ends in ``\\boxed{``, continued for at most ``probe_tokens``
tokens. The probe's answer is what it writes up to the first unpaired ``}`` (none if it does
not close the brace), read with the run's extractor and compared normalised (the context's
vote key where it has one, else ``normalize_answer``). The trace stops when

* **agreed**: the last ``agree`` probes gave the same non-empty answer and none of them
  hesitated (contains one of ``hesitation_words``, matched as Dynasor does: lower-cased
  substrings of the probe's whole text, so "no" also catches "not" or "know"); the answer is
  the probe's;
* **finished**: a segment ended the trace by itself (end of sequence) before that; the answer
  is the trace's own (its last ``\\boxed{}``, else what the extractor reads), or the last
  probe's if the trace has none;
* **max_tokens**: the trace reached ``max_tokens`` (the run's ``--max-tokens`` by default)
  without agreement; the last segment is still probed, and the answer is the last probe's,
  else the trace's committed one (a ``\\boxed{}`` it wrote);
* **budget**: the ledger refused a segment or a probe; the answer is the best so far, by the
  same rule as at ``max_tokens`` (``result.stopped_by`` names the limit).

Defaults, from the official code: ``probe`` is Dynasor's probe text verbatim (``cot.py`` and
the Scaffolding port: "... Oh, I suddenly got the answer to the whole problem,
**Final Answer**\\n\\n\\[ \\boxed{", appended to the trace with nothing in between);
``probe_every=64`` and ``agree=3`` are the Scaffolding controller's defaults
(``chunk_size=64, certainty_threshold=3``) and ``cot.py``'s "mid" saving effort (its levels,
(agree, tokens): mild (8, 64), low (5, 64), mid (3, 64), high (2, 64), crazy (2, 32));
``probe_tokens=20``, ``probe_temperature=0.6`` and ``probe_top_p=0.95`` are the probe
request of both; ``hesitation_words`` is their ``uncertain_words`` list. The issue's "every few
hundred tokens" is not theirs: they probe every 32 or 64.

What differs from Dynasor, and why:

* Dynasor sends each probe together with the next chunk (same prompt, in parallel), so its
  first probe reads the bare question and a decision leaves one chunk generated for nothing.
  Here a probe follows its segment (none of the bare question): no chunk is wasted after the
  decision, and each probe's latency is added to the wall time instead of hidden.
* On agreement Dynasor appends its own closing text with the answer to the trace; here the
  outcome's text is the trace, the probe text and the answer, ``} \\]`` closed.
* Probes reuse the trace's prefix. On backends that take token ids and render a prompt to ids
  (``prompt_ids``: the embedded model, vLLM, Scripted) a probe is the trace's exact ids plus
  the probe text's ids (tokenised once, without the special tokens the tokenizer adds to any
  text, i.e. those it gives an empty one), so a prefix cache serves the whole trace; elsewhere
  the trace text plus the probe goes as the assistant turn to continue (Dynasor sends text to a
  completions endpoint; a server's prefix cache still serves what tokenises the same).
* One trace (n = 1); Dynasor's self-consistency variants (Certaindex over several traces) are
  not implemented.

``Outcome.info``: ``stop``, ``answer_source`` (``"probe"``, ``"trace"`` or None), ``segments``,
``probes`` (probes made), ``probe_answers`` (each probe's answer, None where it gave none),
``hesitant`` (per probe), ``trace_tokens`` (completion tokens of the trace), ``probe_tokens``
(completion tokens of the probes), ``max_tokens``, ``saved_vs_max_tokens`` (``max_tokens``
minus trace and probe tokens: completion tokens saved against one trace run to
``max_tokens``; negative when the probes cost more than the exit saved) and ``probe_ids``
(whether probes went by token ids). ``Outcome.samples``: the probes (each with its probe
answer), then the trace.
"""

from __future__ import annotations

from pydantic import Field

from reasoning.answers import normalize_answer
from reasoning.answers.latex_utils import last_boxed, matching_brace
from reasoning.context import Context, Prefix, Sample
from reasoning.strategy import Outcome, Strategy, Temperature
from reasoning.types import GenerationRequest

from .registry import register

DYNASOR_PROBE = "... Oh, I suddenly got the answer to the whole problem, **Final Answer**\n\n\\[ \\boxed{"
DYNASOR_HESITATION = "wait,hold,but,okay,no,hmm"


@register("certainty-probe")
class CertaintyProbe(Strategy):
    size_option = None

    probe_every: int = Field(64, ge=1, description="trace tokens between probes (Dynasor: 64; 32 at its most saving)")
    agree: int = Field(3, ge=1, description="consecutive probes that must give the same answer to stop (Dynasor: 3)")
    probe_tokens: int = Field(20, ge=1, description="tokens a probe may write after its \\boxed{ (Dynasor: 20)")
    max_tokens: int | None = Field(None, ge=1, description="most tokens the trace writes in all, probes apart "
                                   "(default: the run's --max-tokens)")
    temperature: Temperature = None
    probe_temperature: float = Field(0.6, ge=0, description="temperature of the probes (Dynasor: 0.6)")
    probe_top_p: float = Field(0.95, gt=0, le=1, description="top-p of the probes (Dynasor: 0.95)")
    probe: str = Field(DYNASOR_PROBE, min_length=1, description="text appended to the trace to ask for its answer "
                       "(Dynasor's, ending in \\boxed{)")
    hesitation_words: str = Field(DYNASOR_HESITATION, description="comma-separated; a probe whose text contains "
                                  "one (lower-cased substring) does not count towards agreement (Dynasor's list; "
                                  "'' for none)")

    async def run(self, ctx: Context) -> Outcome:
        limit = self.max_tokens or ctx.sampling.max_tokens
        trace: Sample | None = None  # the trace so far (its newest segment's sample)
        prefix = Prefix()
        probes: list[Sample] = []
        keys: list[str | None] = []
        hesitant: list[bool] = []
        probe_ids: tuple[int, ...] | None = None
        segments = trace_tokens = 0
        words = [w.strip().lower() for w in self.hesitation_words.split(",") if w.strip()]
        stop = "max_tokens"
        while trace_tokens < limit:
            written = await ctx.extend(prefix, max_tokens=min(self.probe_every, limit - trace_tokens),
                                       temperature=self.temperature, name=f"segment-{segments + 1}")
            if not written:
                stop = "budget"
                break
            trace, segments = written[0], segments + 1
            prefix = trace.prefix
            wrote = trace.completion.completion_tokens if trace.completion else 0
            trace_tokens += wrote
            if prefix.complete or not wrote:  # ended by itself (a segment of nothing ends it too)
                stop = "finished"
                break
            if probe_ids is None:
                probe_ids = self._probe_ids(ctx)
            ids = (*prefix.token_ids, *probe_ids) if prefix.token_ids is not None and probe_ids else None
            asked = await ctx.extend(prefix.then(self.probe, ids, prefix.trace_id, complete=False),
                                     max_tokens=self.probe_tokens, temperature=self.probe_temperature,
                                     top_p=self.probe_top_p, name=f"probe-{len(probes) + 1}")
            if not asked:
                stop = "budget"
                break
            probe = asked[0]
            said = probe.completion.text if probe.completion else ""
            probe.answer = probe_answer(ctx, said)
            keys.append(answer_key(ctx, probe.answer))
            if ctx.vote_key is not None:  # the key of the probe's answer, not of the whole text's
                probe.info["vote_key"] = keys[-1]
            probes.append(probe)
            hesitant.append(any(word in said.lower() for word in words))
            recent = keys[-self.agree:]
            if len(recent) == self.agree and recent[0] is not None and len(set(recent)) == 1 \
                    and not any(hesitant[-self.agree:]):
                stop = "agreed"
                break

        answer, source = choose(stop, trace, probes)
        text = trace.text if trace is not None else None
        if stop == "agreed":
            text = f"{prefix.text}{self.probe}{answer}}} \\]"
        probe_tokens = sum(p.completion.completion_tokens for p in probes if p.completion)
        info = {
            "stop": stop, "answer_source": source, "segments": segments, "probes": len(probes),
            "probe_answers": [p.answer for p in probes], "hesitant": hesitant,
            "trace_tokens": trace_tokens, "probe_tokens": probe_tokens, "max_tokens": limit,
            "saved_vs_max_tokens": limit - trace_tokens - probe_tokens, "probe_ids": bool(probe_ids),
        }
        return Outcome(answer, text, [*probes, *([trace] if trace is not None else [])], info)

    def _probe_ids(self, ctx: Context) -> tuple[int, ...]:
        """The probe text's token ids, where the backend takes ids and renders prompts to ids;
        () where it does not (probes then go as text)."""
        backend = ctx.backend
        render = getattr(backend, "prompt_ids", None)
        if not backend.capabilities.token_ids or render is None:
            return ()
        added = list(render(GenerationRequest(prompt="")))  # what the tokenizer adds to any text (a BOS)
        ids = list(render(GenerationRequest(prompt=self.probe)))
        return tuple(ids[len(added):] if added and ids[: len(added)] == added else ids)


def choose(stop: str, trace: Sample | None, probes: list[Sample]) -> tuple[str | None, str | None]:
    """(answer, where it came from): the agreed probe's; a finished trace's own (else the last
    probe's); otherwise the best so far: the last probe that gave an answer, else a
    ``\\boxed{}`` the trace wrote."""
    if stop == "agreed":
        return probes[-1].answer, "probe"
    if stop == "finished" and trace is not None and trace.answer is not None:
        return trace.answer, "trace"
    for probe in reversed(probes):
        if probe.answer is not None:
            return probe.answer, "probe"
    if trace is not None and trace.answer is not None and last_boxed(trace.text) is not None:
        return trace.answer, "trace"
    return None, None


def probe_answer(ctx: Context, written: str) -> str | None:
    """The answer a probe wrote after its ``\\boxed{``: up to the first unpaired ``}`` (None if
    it never closes), cleaned by the run's extractor."""
    close = matching_brace("{" + written, 0)
    if close is None:
        return None
    inner = written[: close - 1].strip()
    return ctx.extract(f"\\boxed{{{inner}}}") if inner else None


def answer_key(ctx: Context, answer: str | None) -> str | None:
    """What probes must share to agree: the context's vote key, else the normalised answer."""
    if answer is None:
        return None
    key = ctx.vote_key(ctx.problem, answer) if ctx.vote_key is not None else normalize_answer(answer)
    return key or None
