"""The two small interfaces strategies and verifiers implement.

The core runs any Strategy without knowing which one it is; concrete strategies live in
the ``strategies`` package and verifiers in ``verifiers``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.fields import FieldInfo

from .context import Context, Prefix, Sample


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


class Strategy(BaseModel, ABC):
    """Pure logic over a Context. Must not keep per-problem state on ``self``:
    one instance serves many problems concurrently.

    Options are declared once, as typed pydantic fields with a default and a one-line
    ``description``; validation (ranges, types, cross-field rules in a ``model_validator``),
    ``describe()``, ``reasoning-bench strategies NAME`` and the proxy's schema all read them.
    Options may also be given positionally, in the order they are declared.
    """

    # strict: no silent bool -> int or "8" -> 8 (the CLI and JSON already give typed values)
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=(), strict=True)

    name: ClassVar[str] = "strategy"
    # The option that says how many samples/paths to draw, which `--n`, the server's model
    # names (self-consistency-8) and sweeps set; None when the strategy has no such knob.
    size_option: ClassVar[str | None] = "n"
    # The temperature every generation of this strategy goes out at, whatever the run's
    # (greedy: 0); None when it samples at its own ``temperature`` option or the run's.
    fixed_temperature: ClassVar[float | None] = None

    def __init__(self, *args: Any, **options: Any) -> None:
        names = list(type(self).model_fields)
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes at most {len(names)} positional options")
        for key, value in zip(names, args):
            if key in options:
                raise TypeError(f"{type(self).__name__}: option {key!r} given twice")
            options[key] = value
        super().__init__(**options)

    @abstractmethod
    async def run(self, ctx: Context) -> Outcome: ...

    def generation_temperature(self, default: float) -> float:
        """The temperature this strategy's generations are sent at when the run's is ``default``:
        its fixed one, else its own ``temperature`` option when set, else ``default``."""
        if self.fixed_temperature is not None:
            return self.fixed_temperature
        own = getattr(self, "temperature", None)
        return default if own is None else float(own)

    def describe(self) -> dict[str, Any]:
        """Name and options, for summaries and traces."""
        return {"strategy": self.name, **{k: _describe(getattr(self, k)) for k in type(self).model_fields}}

    @classmethod
    def options(cls) -> dict[str, OptionInfo]:
        """Every option: type, default, help and whether it is plain data (CLI, JSON)."""
        return {name: OptionInfo.of(name, field) for name, field in cls.model_fields.items()}


# Options many strategies share, declared once.
MaxTokens = Annotated[int | None, Field(ge=1, description="max new tokens per sample (default: the run's --max-tokens)")]
Temperature = Annotated[float | None, Field(ge=0, description="sampling temperature (default: the run's --temperature)")]


@dataclass(frozen=True, slots=True)
class OptionInfo:
    """One strategy option as declared: for ``reasoning-bench strategies NAME`` and schemas."""

    name: str
    annotation: Any
    default: Any
    help: str
    required: bool
    constraints: tuple[Any, ...] = ()  # ge=, lt=, ... as pydantic keeps them

    @classmethod
    def of(cls, name: str, field: FieldInfo) -> OptionInfo:
        default = None if field.is_required() else _describe(field.get_default(call_default_factory=True))
        return cls(name, field.annotation, default, field.description or "", field.is_required(), tuple(field.metadata))

    @property
    def type(self) -> str:
        return _type_name(self.annotation)

    @property
    def plain(self) -> bool:
        """Settable from a command line or JSON (numbers, strings, booleans, choices)."""
        kinds = [a for a in (get_args(self.annotation) or (self.annotation,)) if a is not type(None)]
        if get_origin(self.annotation) is Literal:
            return True
        return all(a in (int, float, str, bool) or get_origin(a) is Literal for a in kinds)

    def json_schema(self) -> dict[str, Any]:
        annotated = Annotated[(self.annotation, *self.constraints)] if self.constraints else self.annotation
        schema = TypeAdapter(annotated).json_schema() if self.plain else {}
        return {**schema, "description": self.help, **({} if self.required else {"default": self.default})}


class ProcessVerifier(ABC):
    """Scores partial solutions step by step (a process reward model, PRM).

    ``step_scores`` returns, for each prefix, the score of every one of its steps; an
    implementation scores only steps it has not scored before in this problem (cache them in
    ``ctx.memo``), so a search of depth d costs O(d) scoring calls per path, not O(d^2).
    ``score_steps`` aggregates them into one score per prefix (``aggregate``: last, min,
    product or mean; search-and-learn uses last or min).
    """

    name: ClassVar[str] = "process-verifier"
    aggregate: str = "last"

    @abstractmethod
    async def step_scores(self, ctx: Context, prefixes: Sequence[Prefix]) -> list[list[float]]: ...

    async def score_steps(self, ctx: Context, prefixes: Sequence[Prefix]) -> list[float]:
        return [aggregate_step_scores(scores, self.aggregate) for scores in await self.step_scores(ctx, prefixes)]


AGGREGATIONS = ("last", "min", "product", "mean")


def aggregate_step_scores(scores: Sequence[float], how: str = "last") -> float:
    """One score for a path from its step scores (0.0 for a path with no steps)."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATIONS)}, got {how!r}")
    if not scores:
        return 0.0
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    if how == "mean":
        return float(sum(scores) / len(scores))
    product = 1.0
    for score in scores:
        product *= score
    return product


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " | ".join(repr(a) for a in get_args(annotation))
    if get_args(annotation):
        return " | ".join(_type_name(a) for a in get_args(annotation))
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


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
    if isinstance(value, (Verifier, ProcessVerifier)):
        return value.name
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
