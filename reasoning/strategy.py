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

    @abstractmethod
    async def run(self, ctx: Context) -> Outcome: ...

    def describe(self) -> dict[str, Any]:
        """Name and options, for summaries and traces."""
        options = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return {"strategy": self.name, **{k: _describe(v) for k, v in options.items()}}


class Verifier(ABC):
    """Scores candidates; higher is better. May call the model through ``ctx``."""

    name: ClassVar[str] = "verifier"

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
