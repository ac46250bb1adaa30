"""Compute-optimal: probe how hard a problem is, then route it to the strategy its difficulty needs.

What this is, precisely: a per-problem router. A few probe samples estimate difficulty (their
agreement), and a policy of agreement bins says which registered strategy, with which
options, each bin gets. The default policy and ``benchmarks/calibrate.py``'s default
candidates choose *how much self-consistency* each bin gets (stop at the probes, or 4, 8, 16
more votes), learned to maximise expected accuracy under an expected-token budget. That is
adaptive sample allocation by difficulty: legitimate, but neither of the two papers below.

* Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally can be More Effective than
  Scaling Model Parameters", choose per difficulty bin (5 quantile bins of oracle pass@1 over
  2,048 samples, or of a verifier's predicted difficulty, neither charged) the best *method*
  at a fixed generation budget N: search against a PRM (beam search, lookahead) vs best-of-N
  weighted vs sequential revisions, θ*(N). Their "> 4×" efficiency gain over best-of-N is of
  that experiment. ``calibrate.py --candidates snell:N --quantile-bins 5`` learns a policy in
  that set-up (self-consistency, best-of-N weighted and beam search with the LLM PRM, all at
  N, per quantile bin of probe agreement); revisions, lookahead and an uncharged difficulty
  oracle are what it lacks (calibrate.py's docstring). Compare with Snell's numbers only
  from such a policy.
* SCALE (Xiao et al. 2025, "SCALE: Selective Resource Allocation for Overcoming Performance
  Bottlenecks in Mathematical Test-time Scaling") decomposes *one problem* into sequential
  sub-problems, rates each sub-problem's difficulty and solves it in a fast (System 1) or a
  deliberate (System 2) mode, passing context along. Nothing here decomposes a problem: this
  strategy allocates per problem, not per sub-problem, and is not SCALE.

1. **Probe**: ``probes`` samples in one batched call. Their *agreement* is the share of the
   majority answer among the probe samples returned (a sample without an answer counts
   against it; agreement is 0 when none answered).
2. **Route**: the policy's bins are agreement thresholds; the problem goes to the first bin
   (highest threshold first) whose ``min_agreement`` its agreement reaches. A bin names a
   registered strategy and its options, or ``"stop"``: answer with the probe vote.
3. **Run** the routed strategy (``strategies.registry`` classes) inside ``ctx.span("route")``.
   For a voting strategy (``self-consistency`` without a verifier or sampler) the probe
   samples are reused as votes: the answer is the majority over probes + routed samples.
   Otherwise the routed answer stands; if it has none (budget), the probe vote is kept.

Policy (``policy`` option: a path to a JSON file, or None for the default below)::

    {"version": 1, "probes": 4,
     "bins": [{"min_agreement": 0.75, "strategy": "stop", "options": {}},
              {"min_agreement": 0.5, "strategy": "self-consistency", "options": {"n": 8}},
              {"min_agreement": 0.0, "strategy": "self-consistency", "options": {"n": 16}}],
     "notes": {...}}

The default is a prior, not a measurement: unanimous-enough probes (3 of 4) stop, a split
vote gets 8 more samples, a scattered one 16. ``benchmarks/calibrate.py`` learns a policy from
a calibration split (its bins may route to any registered strategy: best-of-n, beam-search,
...). Bins must include ``min_agreement`` 0 (so every problem has a route);
options are checked against the strategy's own (``verifier`` is a verifier name such as
``"judge"``); ``max_tokens``/``temperature`` of this strategy pass to a routed strategy that
takes them and whose bin does not set them. ``probes`` (None = the policy's) must equal the
policy's probe count, as its thresholds were set for that count.

Budget: probes and the routed strategy draw from the problem's ledger — the per-problem
budget, itself a child of the run budget. Routing does not look at the budget: a hard
problem routed to 16 samples under a smaller budget gets what fits (the usual shrink, then
refusal; ``stopped_by`` names the limit). Under a run budget the expected cost per problem
is the policy's (``notes.expected_tokens`` of a learned one); once the run budget is spent
later problems are refused at the probes and return no answer.

Probes sample at ``temperature`` (default: the run's); at temperature 0 they always agree and
every problem looks easy. ``Outcome.info``: ``agreement``, ``bin``, ``route`` (its label),
``probe_votes``, ``probes``, ``combined``, ``votes`` (when combined), ``routed`` (the routed
strategy's own info) and ``fallback`` ("probes") when the probe vote replaced a missing answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasoning.context import Context, Sample
from reasoning.errors import ConfigError
from pydantic import Field, PrivateAttr

from reasoning.strategy import MaxTokens, Outcome, Strategy, Temperature

from .registry import register
from .voting import Vote, majority

STOP = "stop"
POLICY_VERSION = 1
DEFAULT_POLICY: dict[str, Any] = {
    "version": POLICY_VERSION,
    "probes": 4,
    "bins": [
        {"min_agreement": 0.75, "strategy": STOP, "options": {}},
        {"min_agreement": 0.5, "strategy": "self-consistency", "options": {"n": 8}},
        {"min_agreement": 0.0, "strategy": "self-consistency", "options": {"n": 16}},
    ],
}
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Route:
    """One bin of a policy: problems with agreement >= ``min_agreement`` run this."""

    min_agreement: float
    strategy: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"min_agreement": self.min_agreement, "strategy": self.strategy, "options": dict(self.options)}

    @property
    def label(self) -> str:
        options = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.strategy}({options})" if options else self.strategy


@dataclass(frozen=True)
class Policy:
    """Agreement bins (highest threshold first) -> route; JSON-serialisable."""

    bins: tuple[Route, ...]
    probes: int = 4
    notes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def default(cls) -> Policy:
        return cls.from_dict(DEFAULT_POLICY)

    @classmethod
    def from_dict(cls, data: Any, source: str = "policy") -> Policy:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object")
        unknown = set(data) - {"version", "probes", "bins", "notes"}
        if unknown:
            raise ConfigError(f"{source}: unknown keys {sorted(unknown)}")
        if data.get("version", POLICY_VERSION) != POLICY_VERSION:
            raise ConfigError(f"{source}: version {data.get('version')!r} is not {POLICY_VERSION}")
        probes = data.get("probes", 4)
        if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
            raise ConfigError(f"{source}: probes must be an integer >= 1, got {probes!r}")
        bins = data.get("bins")
        if not isinstance(bins, list) or not bins:
            raise ConfigError(f"{source}: 'bins' must be a non-empty list")
        routes = [check_route(entry, f"{source}: bin {i}") for i, entry in enumerate(bins)]
        routes.sort(key=lambda r: -r.min_agreement)
        thresholds = [r.min_agreement for r in routes]
        if len(set(thresholds)) != len(thresholds):
            raise ConfigError(f"{source}: two bins share min_agreement {thresholds}")
        if thresholds[-1] != 0:
            raise ConfigError(f"{source}: the lowest bin must have min_agreement 0 so every problem has a route")
        notes = data.get("notes", {})
        if not isinstance(notes, dict):
            raise ConfigError(f"{source}: 'notes' must be an object")
        return cls(tuple(routes), probes, notes)

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        path = Path(path).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"policy file not found: {path}") from None
        except json.JSONDecodeError as bad:
            raise ConfigError(f"policy {path}: not valid JSON ({bad.msg}, line {bad.lineno})") from None
        return cls.from_dict(data, f"policy {path}")

    def to_dict(self) -> dict[str, Any]:
        bins = [route.to_dict() for route in self.bins]
        data: dict[str, Any] = {"version": POLICY_VERSION, "probes": self.probes, "bins": bins}
        if self.notes:
            data["notes"] = self.notes
        return data

    def save(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def bin_of(self, agreement: float) -> int:
        """Index of the bin for ``agreement``: the first whose threshold it reaches."""
        for index, route in enumerate(self.bins):
            if agreement >= route.min_agreement - 1e-12:
                return index
        return len(self.bins) - 1


def check_route(entry: Any, where: str) -> Route:
    """A validated Route from its JSON form (``min_agreement`` may be absent for candidates)."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object with min_agreement, strategy, options")
    unknown = set(entry) - {"min_agreement", "strategy", "options"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    threshold = entry.get("min_agreement", 0.0)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ConfigError(f"{where}: min_agreement must be a number in [0, 1], got {threshold!r}")
    name = entry.get("strategy")
    options = entry.get("options", {})
    if not isinstance(name, str):
        raise ConfigError(f"{where}: 'strategy' must be a strategy name or {STOP!r}")
    if not isinstance(options, dict) or not all(isinstance(v, _SCALARS) for v in options.values()):
        raise ConfigError(f"{where}: 'options' must be an object of plain values")
    route = Route(float(threshold), name, dict(options))
    build_route(route, where=where)  # raises ConfigError on an unknown strategy or option
    return route


def build_route(
    route: Route, *, max_tokens: int | None = None, temperature: float | None = None, where: str = "policy"
) -> Strategy | None:
    """The strategy a route names (None for ``"stop"``), options checked against its own."""
    from .registry import create, get, options_of

    if route.strategy == STOP:
        if route.options:
            raise ConfigError(f"{where}: {STOP!r} takes no options")
        return None
    if route.strategy == "compute-optimal":
        raise ConfigError(f"{where}: a policy cannot route to compute-optimal itself")
    accepted = options_of(get(route.strategy))  # ConfigError for an unknown name
    unknown = [k for k in route.options if k not in accepted]
    if unknown or "sampler" in route.options:
        raise ConfigError(f"{where}: strategy {route.strategy!r} has no option {(unknown or ['sampler'])[0]!r} "
                          f"usable in a policy; it has: {', '.join(k for k in accepted if k != 'sampler')}")
    options = dict(route.options)
    if isinstance(options.get("verifier"), str):
        from reasoning.verifiers import make_verifier

        options["verifier"] = make_verifier(options["verifier"])
    for key, value in (("max_tokens", max_tokens), ("temperature", temperature)):
        if value is not None and key in accepted and key not in options:
            options[key] = value
    try:
        return create(route.strategy, **options)
    except ConfigError as bad:
        raise ConfigError(f"{where}: {bad}") from None


def votes_with_probes(strategy: Strategy | None) -> bool:
    """Whether the routed strategy is a plain vote, so the probes can be reused as votes."""
    from .self_consistency import SelfConsistency

    return strategy is None or (
        isinstance(strategy, SelfConsistency) and strategy.verifier is None and strategy.sampler is None
    )


def agreement(samples: list[Sample], vote: Vote | None = None) -> float:
    """Share of the probe samples that gave the majority answer (0 with no answer)."""
    vote = vote or majority(samples)
    if not samples or not vote.tally:
        return 0.0
    return max(vote.tally.values()) / len(samples)


async def probe(
    ctx: Context, probes: int, *, max_tokens: int | None = None, temperature: float | None = None
) -> list[Sample]:
    """``probes`` samples of the problem's own prompt in one batched call (maybe fewer or none)."""
    return await ctx.generate(n=probes, max_tokens=max_tokens, temperature=temperature, name="probes")


async def run_route(ctx: Context, route: Route, strategy: Strategy | None, probes: list[Sample]) -> Outcome:
    """Run ``strategy`` after the probes and combine: one outcome, the probe votes reused
    where the strategy is a plain vote, the probe vote kept where the routed run has no answer."""
    probe_vote = majority(probes)
    if strategy is None:
        text = probe_vote.sample.text if probe_vote.sample else None
        return Outcome(probe_vote.answer, text, list(probes), {"votes": probe_vote.tally, "combined": True})
    async with ctx.span("route", strategy=route.strategy, options=route.options) as sub:
        routed = await strategy.run(sub)
    if votes_with_probes(strategy):
        samples = [*probes, *routed.samples]
        vote = majority(samples)
        text = vote.sample.text if vote.sample else None
        return Outcome(vote.answer, text, samples, {"votes": vote.tally, "combined": True, "routed": routed.info})
    if routed.answer is None and probe_vote.answer is not None:
        text = probe_vote.sample.text if probe_vote.sample else None
        info = {"combined": False, "routed": routed.info, "fallback": "probes"}
        return Outcome(probe_vote.answer, text, [*probes, *routed.samples], info)
    return Outcome(routed.answer, routed.text, [*probes, *routed.samples], {"combined": False, "routed": routed.info})


@register("compute-optimal")
class ComputeOptimal(Strategy):
    size_option = None  # the policy decides how many samples; --n does not apply

    probes: int | None = Field(None, ge=1, description="probe samples whose agreement picks the route "
                               "(default: the policy's; must match it)")
    policy: str | Path | Policy | None = Field(None, description="policy JSON from benchmarks/calibrate.py "
                                               "(default: the built-in policy)")
    max_tokens: MaxTokens = None
    temperature: Temperature = None
    _policy: Policy = PrivateAttr()
    _strategies: list[Strategy] = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        policy = self.policy
        loaded = policy if isinstance(policy, Policy) else Policy.load(policy) if policy is not None else Policy.default()
        if self.probes is not None and self.probes != loaded.probes:
            raise ValueError(f"probes={self.probes} but the policy's thresholds were set for probes={loaded.probes}; "
                             "learn a policy with that probe count or leave probes unset")
        self.probes = loaded.probes
        self.policy = None if isinstance(policy, Policy) or policy is None else str(policy)
        self._policy = loaded
        self._strategies = [
            build_route(r, max_tokens=self.max_tokens, temperature=self.temperature, where=f"policy bin {i}")
            for i, r in enumerate(loaded.bins)
        ]

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        described["bins"] = [route.to_dict() for route in self._policy.bins]
        return described

    async def run(self, ctx: Context) -> Outcome:
        probes = await probe(ctx, self.probes, max_tokens=self.max_tokens, temperature=self.temperature)
        if not probes:
            return Outcome(None, info={"route": None, "agreement": None})
        probe_vote = majority(probes)
        share = agreement(probes, probe_vote)
        index = self._policy.bin_of(share)
        route = self._policy.bins[index]
        outcome = await run_route(ctx, route, self._strategies[index], probes)
        outcome.info = {
            "agreement": share,
            "bin": index,
            "route": route.label,
            "probe_votes": probe_vote.tally,
            "probes": len(probes),
            **outcome.info,
        }
        return outcome
