"""One step primitive for every search (beam search, DVTS, REBASE, ETS): continue prefixes by
one reasoning step, in the spirit of its_hub's StepGeneration and search-and-learn.

A step ends at ``delimiter`` (kept in the text and token ids, so continuations from text and
from ids agree), at the end of the solution (the prefix is then ``complete``), or at
``max_step_tokens``. The last allowed step (``max_steps``) is generated without the delimiter,
so the solution is finished. ``lookahead`` rolls each new step forward that many more steps at
temperature 0 before it is scored (the rolled-out text is only used for scoring).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from reasoning.context import Context, Prefix, Sample


@dataclass(frozen=True, slots=True)
class StepConfig:
    delimiter: str = "\n\n"
    max_step_tokens: int = 256
    max_steps: int = 20
    lookahead: int = 0
    temperature: float | None = None

    def stop_for(self, prefix: Prefix) -> tuple[str, ...]:
        return () if prefix.depth + 1 >= self.max_steps else (self.delimiter,)


async def next_steps(ctx: Context, prefixes: Sequence[Prefix], n: int | Sequence[int],
                     config: StepConfig) -> list[list[Sample]]:
    """Expand every prefix by one step, ``n`` samples each (or ``n[i]`` for prefix i), all
    concurrently, one batched request per prefix. A prefix whose expansion the budget refuses
    gets an empty list. With lookahead, ``sample.info["scored_prefix"]`` is the rolled-out
    prefix a process reward should score; ``sample.prefix`` is always the one-step prefix."""
    counts = [n] * len(prefixes) if isinstance(n, int) else list(n)

    async def expand(prefix: Prefix, count: int) -> list[Sample]:
        if count <= 0 or prefix.complete:
            return []
        samples = await ctx.extend(prefix, n=count, stop=config.stop_for(prefix), max_tokens=config.max_step_tokens,
                                   temperature=config.temperature, name=f"step-{prefix.depth + 1}")
        if config.lookahead:
            await asyncio.gather(*(_look_ahead(ctx, s, config) for s in samples))
        return samples

    return list(await asyncio.gather(*(expand(p, c) for p, c in zip(prefixes, counts, strict=True))))


async def _look_ahead(ctx: Context, sample: Sample, config: StepConfig) -> None:
    prefix = sample.prefix
    assert prefix is not None
    for _ in range(config.lookahead):
        if prefix.complete:
            break
        rolled = await ctx.extend(prefix, n=1, stop=config.stop_for(prefix), max_tokens=config.max_step_tokens,
                                  temperature=0.0, name="lookahead")
        if not rolled:
            break
        prefix = rolled[0].prefix
    sample.info["scored_prefix"] = prefix


def scored_prefix(sample: Sample) -> Prefix:
    """What a process reward scores for a sample: its look-ahead rollout, else its prefix."""
    return sample.info.get("scored_prefix") or sample.prefix  # type: ignore[return-value]
