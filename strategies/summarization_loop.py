"""Summarization loop: reason in bounded segments, carry only a summary forward (InftyThink 2025).

After Yan et al. 2025, "InftyThink: Breaking the Length Limits of Long-Context Reasoning in
Large Language Models" (official code ``ZJU-REAL/InftyThink``). Instead of one ever-longer
chain, the model reasons in segments of at most ``segment_tokens`` (the paper's η); after each
one it writes a concise progress summary, and the next segment starts from the question and
that summary only, never from the full history. The context therefore stays bounded whatever
the number of rounds (the paper's "sawtooth"):

* a segment's prompt is the question plus at most one summary (``summary_tokens``) plus the
  template (``prompts/continue_from_summary.md``; round 1 uses the problem's own prompt);
* a summary's prompt is that segment's prompt plus the segment (``segment_tokens``) and the
  request to summarise (``prompts/summarize_progress.md``). It continues the segment's own
  chat, so a prefix-caching backend reuses the segment's prompt.

InftyThink trains the model to summarise within its own generation; ours is the prompt-level
version for any model, with the summary as a separate call bounded by ``summary_tokens``.

Segment length. The default η = 4,096 tokens is the paper's: its data construction
(``data_preprocess/segmentation.py``, ``--eta`` default 4096, choices 2048 / 4096 / 6144)
splits a long reasoning trace into segments of about η tokens at paragraph boundaries, and
the trained model then writes a segment of that length, stops and summarises (its inference
example allows 8,192 new tokens per iteration, reasoning plus summary, for up to 50
iterations). Here a segment is cut at ``segment_tokens`` wherever that falls, since an
untrained model does not stop by itself to summarise; the 512-token segments of this
strategy's first version (still set explicitly by ``benchmarks/sweeps/thinking_*.yaml``, so
the published results reproduce) cut chains mid-thought far more often than η = 4,096 does.

The loop stops on a final answer (a segment containing ``\\boxed{}``: ``stop="answer"``), on a
segment the model ended by itself within the limit with an extractable answer
(``"finished"``: it has nothing more to add), after ``max_rounds`` segments (``"max_rounds"``),
or when the budget refuses a segment or a summary (``"budget"``).

The answer is one the model committed to: the extracted answer of the last segment when that
segment wrote a ``\\boxed{}`` or ended by itself (not cut at ``segment_tokens``), else a
``\\boxed{}`` answer in the last summary, else none. The "last number" of a segment cut off
mid-thought (what a stop at ``max_rounds`` or at the budget usually leaves) is an arbitrary
intermediate value, not an answer: the same guard as parallel thinking's and spawn/join's
(a synthesis or join cut before its ``\\boxed{}`` is not used).

``Outcome.info``: ``rounds`` (segments written), ``stop``, ``summary`` (the last summary, None
if there was none), ``segment_tokens_used`` per round, ``answer_from`` (``"segment"``,
``"summary"`` or None) and ``uncommitted_answer`` (what the extractor would have read from a
cut-off last segment and was not used; None otherwise).
"""

from __future__ import annotations

from reasoning.context import Context, Sample
from pydantic import Field

from reasoning.strategy import Outcome, Strategy, Temperature
from reasoning.types import Message
from reasoning.answers.latex_utils import last_boxed

from .registry import register


@register("summarization-loop")
class SummarizationLoop(Strategy):
    size_option = None

    segment_tokens: int = Field(4096, ge=1, description="tokens of reasoning per round (the paper's eta: 4,096; "
                                "the published sweeps used 512)")
    summary_tokens: int = Field(128, ge=1, description="tokens of the summary that replaces a round's reasoning")
    max_rounds: int = Field(8, ge=1, description="most reasoning rounds")
    temperature: Temperature = None
    summary_temperature: float = Field(0.0, ge=0, description="temperature of the summaries")
    continue_prompt: str = Field("continue_from_summary", description="prompt file (prompts/) that continues from a summary")

    async def run(self, ctx: Context) -> Outcome:
        from reasoning.prompts import load_prompt

        resume = load_prompt(self.continue_prompt)
        summarize = load_prompt("summarize_progress").render()
        segments: list[Sample] = []
        summary: str | None = None
        stop = "max_rounds"
        for round_ in range(1, self.max_rounds + 1):
            async with ctx.span(f"round-{round_}") as sub:
                prompt = ctx.messages if summary is None else resume.render(problem=ctx.problem.text, summary=summary)
                written = await sub.generate(
                    prompt, max_tokens=self.segment_tokens, temperature=self.temperature, name="segment"
                )
                if not written:
                    stop = "budget"
                    break
                segment = written[0]
                segments.append(segment)
                if last_boxed(segment.text) is not None:
                    stop = "answer"
                    break
                if segment.answer is not None and ended_by_itself(segment):
                    stop = "finished"
                    break
                if round_ == self.max_rounds:
                    break  # no next segment to summarise for
                notes = await sub.generate(
                    (*prompt, Message("assistant", segment.text), *summarize), max_tokens=self.summary_tokens,
                    temperature=self.summary_temperature, name="summary", min_tokens=min(16, self.summary_tokens),
                )
                if not notes:
                    stop = "budget"
                    break
                summary = notes[0].text.strip()

        last = segments[-1] if segments else None
        answer, source = None, None
        if last is not None and committed(last):
            answer, source = last.answer, "segment"
        elif summary and last_boxed(summary) is not None:
            answer = ctx.extract(summary)
            source = "summary" if answer is not None else None
        info = {
            "rounds": len(segments),
            "stop": stop,
            "summary": summary,
            "segment_tokens_used": [s.completion.completion_tokens if s.completion else None for s in segments],
            "answer_from": source,
            "uncommitted_answer": last.answer if last is not None and source != "segment" else None,
        }
        return Outcome(answer, last.text if last else None, segments, info)


def ended_by_itself(sample: Sample) -> bool:
    """Whether the model stopped the text itself (end of sequence or a stop string), not a limit."""
    return sample.completion is not None and sample.completion.finish_reason == "stop"


def committed(sample: Sample) -> bool:
    """Whether ``sample``'s answer is one the model committed to: a ``\\boxed{}`` it wrote, or
    an answer in a text it ended by itself. A text cut at its token limit without a
    ``\\boxed{}`` has none (its last number is an intermediate value)."""
    return sample.answer is not None and (last_boxed(sample.text) is not None or ended_by_itself(sample))
