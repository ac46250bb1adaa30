"""Summarization loop: reason in bounded segments, carry only a summary forward (InftyThink 2025).

After Yan et al. 2025, "InftyThink: Breaking the Length Limits of Long-Context Reasoning in
Large Language Models". Instead of one ever-longer chain, the model reasons in segments of at
most ``segment_tokens``; after each one it writes a concise progress summary, and the next
segment starts from the question and that summary only, never from the full history. The
context therefore stays bounded whatever the number of rounds (the paper's "sawtooth"):

* a segment's prompt is the question plus at most one summary (``summary_tokens``) plus the
  template (``prompts/continue_from_summary.md``; round 1 uses the problem's own prompt);
* a summary's prompt is that segment's prompt plus the segment (``segment_tokens``) and the
  request to summarise (``prompts/summarize_progress.md``). It continues the segment's own
  chat, so a prefix-caching backend reuses the segment's prompt.

InftyThink trains the model to summarise within its own generation; ours is the prompt-level
version for any model, with the summary as a separate call bounded by ``summary_tokens``.

The loop stops on a final answer (a segment containing ``\\boxed{}``: ``stop="answer"``), on a
segment the model ended by itself within the limit with an extractable answer
(``"finished"``: it has nothing more to add), after ``max_rounds`` segments (``"max_rounds"``),
or when the budget refuses a segment or a summary (``"budget"``). The answer is the shared
extractor's answer of the last segment (best so far), else of the last summary.

``Outcome.info``: ``rounds`` (segments written), ``stop``, ``summary`` (the last summary, None
if there was none) and ``segment_tokens_used`` per round.
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

    segment_tokens: int = Field(512, ge=1, description="tokens of reasoning per round")
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
                if segment.answer is not None and segment.completion and segment.completion.finish_reason == "stop":
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
        answer = last.answer if last else None
        if answer is None and summary:
            answer = ctx.extract(summary)
        info = {
            "rounds": len(segments),
            "stop": stop,
            "summary": summary,
            "segment_tokens_used": [s.completion.completion_tokens if s.completion else None for s in segments],
        }
        return Outcome(answer, last.text if last else None, segments, info)
