"""The two small interfaces strategies and verifiers implement.

The core runs any Strategy without knowing which one it is; concrete strategies live in
the ``strategies`` package and verifiers in ``verifiers``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .context import Context, Sample


@dataclass(slots=True)
class Outcome:
    """What a strategy returns: its answer, a representative solution and its evidence."""

    answer: str | None
    text: str | None = None
    samples: list[Sample] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def as_sample(self) -> Sample:
        """An outcome seen as one candidate, so strategies can be samplers of others."""
        return Sample(self.text or "", self.answer, info={"outcome": self.info})


class Strategy(ABC):
    """Pure logic over a Context. Must not keep per-problem state on ``self``:
    one instance serves many problems concurrently."""

    name: ClassVar[str] = "strategy"
    # The option that says how many samples/paths to draw, which `--n`, the server's model
    # names (self-consistency-8) and sweeps set; None when the strategy has no such knob.
    size_option: ClassVar[str | None] = "n"

    @abstractmethod
    async def run(self, ctx: Context) -> Outcome: ...

    def describe(self) -> dict[str, Any]:
        """Name and options, for summaries and traces."""
        options = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return {"strategy": self.name, **{k: _describe(v) for k, v in options.items()}}


class SampleReuse(ABC):
    """Mixin for strategies whose answer is a pure choice among n i.i.d. candidates.

    ``draw(ctx, n)`` makes (and scores) the candidates; ``choose(samples)`` picks the answer
    without calling the model. A sweep then draws the largest n once per problem and
    evaluates every smaller n on random subsets of that pool (search-and-learn style),
    which is exact in expectation because each candidate is drawn independently.
    """

    @abstractmethod
    async def draw(self, ctx: Context, n: int) -> list[Sample]: ...

    @abstractmethod
    def choose(self, samples: list[Sample]) -> Outcome: ...

    @property
    def reusable(self) -> bool:
        """False when a candidate's score depends on the other candidates drawn with it, i.e.
        when the strategy's ``verifier`` (if any) is set-dependent."""
        verifier = getattr(self, "verifier", None)
        return not (verifier is not None and verifier.set_dependent)


class Verifier(ABC):
    """Scores candidates; higher is better. May call the model through ``ctx``."""

    name: ClassVar[str] = "verifier"
    # True when a sample's score depends on the other samples scored with it (e.g. pooling
    # verdicts over answer groups); such scores cannot be reused on subsets.
    set_dependent: ClassVar[bool] = False

    @abstractmethod
    async def score(self, ctx: Context, samples: list[Sample]) -> list[float]: ...


def _describe(value: Any) -> Any:
    if isinstance(value, Strategy):
        return value.describe()
    if isinstance(value, Verifier):
        return value.name
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
