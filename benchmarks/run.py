"""``reasoning-bench run``: a dataset through a strategy, resumable, graded, summarised.

Crash safety: each finished problem is one line appended to ``results.jsonl`` and fsync'd
before the next is reported. A restarted run with the same ``--out`` skips the problems
already there and drops a half-written last line left by a kill. ``journal.jsonl`` records
every reservation of the run ledger, fsync'd before its call, and what each call was charged;
a restarted run charges its run budget with everything earlier attempts charged, a call that
was in flight when one died at its reservation's worst case (so ``--run-budget`` spans
restarts and kills). Problems a ``run:*`` limit stopped are retried once that limit is raised.

``--ray [ADDRESS]`` solves on Ray workers instead (``benchmarks/distributed.py``): the run ledger
and its journal move into one ledger actor, results still come back here and are written by the
same writer, so everything above holds for a distributed run too.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from reasoning import Budget, Ledger, Problem, Result, Usage, asolve_many
from reasoning.backends.base import Backend
from reasoning.budget import Reservation
from reasoning.context import Sampling
from reasoning.errors import ConfigError
from reasoning.solve import require_prices
from reasoning.strategy import Strategy

from .datasets import Item, load_items

# Config fields that change what a result means; a resumed run must match them.
_IDENTITY = ("dataset", "strategy", "strategy_options", "backend", "roles", "budget", "max_tokens", "temperature",
             "price")


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str
    limit: int | None = None
    strategy: str
    strategy_options: dict[str, Any] = {}
    backend: str
    api_base: str | None = None
    roles: dict[str, str] = {}  # role -> backend spec (--role NAME=SPEC[@API_BASE])
    budget: str = ""
    run_budget: str = ""
    price: list[float] | None = None  # --price: USD per prompt and completion token
    concurrency: int = 16
    max_tokens: int = 1024
    # The temperature the strategy's generations are sent at: --temperature, unless the
    # strategy fixes its own (greedy: 0) or sets it by an option (Strategy.generation_temperature).
    temperature: float = 0.7
    # Code grading: "strict" refuses to grade without the sandbox's full isolation.
    sandbox: Literal["auto", "strict"] = "auto"
    out: str


def stored(path: Path) -> Path:
    """``path``, or its gzip-compressed copy ``path.gz`` when only that exists: finished result
    folders keep their big JSONL files compressed (every GPU call carries the repository)."""
    packed = path.with_name(path.name + ".gz")
    return packed if not path.exists() and packed.exists() else path


def unpack(path: Path) -> None:
    """Before appending to ``path``: a compressed stored copy (``path.gz``) becomes the plain
    file again, so a resumed folder keeps one append-only file."""
    packed = path.with_name(path.name + ".gz")
    if not path.exists() and packed.exists():
        import gzip
        import shutil

        with gzip.open(packed, "rb") as source, path.open("wb") as target:
            shutil.copyfileobj(source, target)
        packed.unlink()


def stored_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a finished JSONL file as stored, plain or compressed (``stored``), read as they
    are (no repair; a missing file raises)."""
    found = stored(path)
    if found != path:
        import gzip

        text = gzip.decompress(found.read_bytes()).decode("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The complete rows of an append-only JSONL results file, in order; a truncated last line
    (killed mid-write) is cut from the file so that appending can resume after it. A file
    stored compressed (``path.gz``, see ``stored``) is read as it is."""
    if stored(path) != path:
        return stored_rows(path)
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = []
    good_bytes = 0
    with path.open("rb") as handle:
        for raw in handle:
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:
                break
            if not raw.endswith(b"\n"):
                break
            rows.append(row)
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(good_bytes)
    return rows


def read_done(results_path: Path) -> dict[str, dict[str, Any]]:
    """Finished problems by id; a truncated last line (killed mid-write) is dropped."""
    return {str(row["id"]): row for row in read_rows(results_path)}


def check_resume(out: Path, config: BaseModel, identity: tuple[str, ...], what: str = "run") -> dict[str, Any] | None:
    """Refuse to resume ``out`` with a config that differs in a field of ``identity`` (what the
    results mean); record ``config``; return the earlier attempt's config (None: a new one)."""
    config_path = out / "config.json"
    old = None
    if config_path.exists():
        old = json.loads(config_path.read_text())
        # A field the earlier attempt did not record yet had its default then.
        fields = type(config).model_fields
        changed = [k for k in identity if old.get(k, fields[k].default) != getattr(config, k)]
        if changed:
            raise ConfigError(
                f"{out} holds a {what} with a different {', '.join(changed)}; use another --out or delete it"
            )
    config_path.write_text(config.model_dump_json(indent=2))
    return old


def _run_limit_raised(row: dict[str, Any], run_budget: Budget, previous: str) -> bool:
    """Whether a problem stopped by a run-wide limit (``run:calls``...) would get more now:
    that limit is higher than when it stopped (rows record their run budget; ``previous`` is
    the earlier attempt's, for rows from before they did)."""
    stopped = row.get("stopped_by") or ""
    if not stopped.startswith("run:"):
        return False
    name = stopped.removeprefix("run:")
    then, now = getattr(Budget.parse(row.get("run_budget", previous)), name), getattr(run_budget, name)
    return then is not None and (now is None or now > then)


class RunJournal:
    """``journal.jsonl``: each reservation of the run ledger, fsync'd before its backend call,
    and what the call was charged. Its first line carries what earlier attempts charged."""

    def __init__(self, path: Path, on_commit: Callable[[Usage], None] | None = None) -> None:
        self.path = path
        self.handle: Any = None
        self._count = 0
        self._open: dict[int, int] = {}  # id(reservation) -> its number in this attempt
        self.on_commit = on_commit  # hears what each call was charged (progress displays)

    def charged_before(self) -> Usage | None:
        """Everything the attempts recorded here charged, a reservation never committed (its
        call was in flight when the run died) at its worst case; None when there is no journal."""
        if not self.path.exists():
            return None
        total, in_flight = Usage(), {}
        for row in read_rows(self.path):
            if "carried" in row:
                total.add(Usage.from_dict(row["carried"]))
            elif "reserve" in row:
                in_flight[row["reserve"]] = Usage.from_dict(row["usage"])
            elif "commit" in row:
                in_flight.pop(row["commit"], None)
                total.add(Usage.from_dict(row["usage"]))
        for amount in in_flight.values():
            total.add(amount)
        return total

    def start(self, carried: Usage) -> None:
        """Replace the journal, atomically, by one line carrying ``carried``; append after it."""
        carried = carried.minus(Usage(seconds=carried.seconds))  # wall time is per problem, not charged
        fresh = self.path.with_name(self.path.name + ".new")
        with fresh.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps({"carried": carried.to_dict()}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(fresh, self.path)
        self.handle = self.path.open("a", encoding="utf-8")

    def reserved(self, reservation: Reservation) -> None:
        self._count += 1
        self._open[id(reservation)] = self._count
        self.handle.write(json.dumps({"reserve": self._count, "usage": reservation.amount.to_dict()}) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())  # durable before the call is made

    def committed(self, reservation: Reservation, charged: Usage) -> None:
        number = self._open.pop(id(reservation), None)
        if number is not None:  # losing this line to a crash only overcharges (the reservation)
            self.handle.write(json.dumps({"commit": number, "usage": charged.to_dict()}) + "\n")
            self.handle.flush()
        if self.on_commit is not None:
            self.on_commit(charged)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


class _Appender:
    """Appends one JSON line per finished problem and makes it durable at once."""

    def __init__(self, path: Path) -> None:
        self.handle = path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self.handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


CODE_TIMEOUT_S = 10.0  # wall clock per program run against its tests


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), for n samples, c correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_ks(n: int) -> list[int]:
    """k = 1, every power of two below n, and n."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return sorted(set(ks + [n])) if n >= 1 else []


def code_program(item: Item, code: str) -> dict[str, Any]:
    """The keyword arguments of ``run_code_tests`` for ``code`` on a code item. MBPP's
    functions under test are the reference solution's functions (one is called ``sum``)."""
    from reasoning.verifiers.code_extract import assemble_humaneval

    meta = item.metadata
    if meta.get("format") == "humaneval":
        return {"program": assemble_humaneval(meta["prompt"], code, meta["entry_point"]), "tests": meta["test"],
                "entry_point": meta["entry_point"]}
    imports = "\n".join(meta.get("test_imports") or [])
    return {"program": f"{imports}\n{code}", "tests": "\n".join(meta["test_list"]), "entry_point": None,
            "subjects": tuple(meta.get("subjects") or ())}


def sample_texts(trace: list[dict[str, Any]]) -> list[str]:
    """Texts of every solution sample in a trace: generate nodes not inside a verify span, nor
    inside a span a strategy marked ``solutions=False`` (its intermediate calls: PlanSearch's
    observations, sketches and pseudocode are not programs)."""
    by_id = {node["id"]: node for node in trace}

    def in_verify(node: dict[str, Any]) -> bool:
        parent = node.get("parent")
        while parent is not None:
            up = by_id[parent]
            if up["kind"] == "verify" or up["name"] == "verify" or (up.get("info") or {}).get("solutions") is False:
                return True
            parent = up.get("parent")
        return False

    return [c["text"] for node in trace if node["kind"] == "generate" and not in_verify(node)
            for c in node.get("completions", [])]


async def grade_code(item: Item, answer: str | None, texts: list[str], strict: bool = False) -> dict[str, Any]:
    """Run the chosen program and every sample's program; pass@k over the samples."""
    from reasoning.verifiers.code_exec import arun_code_tests
    from reasoning.verifiers.code_extract import extract_code

    entry = item.metadata.get("entry_point")
    verdicts: dict[str, Any] = {}

    async def verdict(code: str | None) -> Any:
        if code is None:
            return None
        if code not in verdicts:
            verdicts[code] = asyncio.ensure_future(arun_code_tests(**code_program(item, code), timeout=CODE_TIMEOUT_S, strict=strict,
                                                                      lane="grade"))
        return await verdicts[code]

    sample_codes = [extract_code(text, entry) for text in texts]
    results = await asyncio.gather(*(verdict(code) for code in [answer, *sample_codes]))
    chosen, per_sample = results[0], results[1:]
    statuses = [v.status if v else "no_code" for v in per_sample]
    n, c = len(per_sample), sum(bool(v and v.passed) for v in per_sample)
    return {
        "correct": bool(chosen and chosen.passed),
        "status": chosen.status if chosen else "no_code",
        "detail": chosen.detail if chosen else "no code found in the answer",
        "isolation": next((v.isolation for v in results if v), ""),
        "n_samples": n,
        "n_passed": c,
        "sample_status": statuses,
        "pass_at": {str(k): pass_at_k(n, c, k) for k in pass_ks(n)},
    }


async def grade(gold: str, answer: str | None, problem: str | None = None) -> bool | None:
    """Grade the strategy's final answer, already extracted (and voted) from its samples: so
    this compares only. A whole response text goes through ``verifiers.agrade`` instead, which
    extracts first; both share ``ais_equivalent``'s verdicts (None when undecidable, False
    without an answer). With the ``problem`` text, a list answer to a problem that asks for a
    set ("all solutions", "separated by commas", ...: ``answer_is_set``) compares in any order."""
    from reasoning.verifiers import ais_equivalent
    from reasoning.verifiers.math_equiv import answer_is_set

    if answer is None:
        return False
    return await ais_equivalent(gold, answer, unordered=bool(problem) and answer_is_set(problem))


def solve_options(kind: str) -> dict[str, Any]:
    """``asolve`` options for a kind of item. Code tasks get the code prompt and the code
    extractor: a sample's "answer" is its program, so self-consistency votes among identical
    programs. Puzzles vote valid expressions together. Everything else uses the math prompt
    and the shared answer extractor."""
    if kind == "code":
        from reasoning.verifiers.code_extract import extract_code

        return {"prompt": "solve_code", "extract": extract_code}
    if kind == "expression":
        from reasoning.verifiers.expression import expression_vote_key

        return {"vote_key": expression_vote_key}  # equivalent valid expressions vote together
    return {}


async def grade_item(item: Item, answer: str | None, texts: list[str],
                     strict_sandbox: bool = False) -> tuple[bool | None, dict[str, Any]]:
    """Grade one finished problem by its kind: (correct or None if unverifiable, extra fields).
    ``texts`` are the solution samples' texts (code tasks report pass@k over them)."""
    if item.kind == "code":
        graded = await grade_code(item, answer, texts, strict_sandbox)
        return graded["correct"], {k: v for k, v in graded.items() if k != "correct"}
    if item.kind == "expression":
        from reasoning.verifiers.expression import check_expression

        meta = item.metadata
        verdict = check_expression(answer, meta["numbers"], meta["target"], use_all=meta.get("use_all", True))
        return verdict.valid, {"detail": verdict.reason}
    return await grade(item.answer, answer, item.problem), {}


def check_budget_fits_a_prompt(items: list[Item], backend: Backend, budget: Budget, floor: int = 1) -> None:
    """A per-problem budget that cannot hold the shortest prompt plus ``floor`` new tokens (the
    shortest answer a call is shrunk to before it is refused) would refuse every call: say so up
    front (the prompt is counted as the backend counts it: exact locally, a bound over HTTP)."""
    completion = budget.completion_tokens
    if completion is not None and completion < floor:
        raise ConfigError(f"--budget allows {completion} completion tokens per problem, fewer than the {floor} below "
                          f"which a call is refused: every call would be refused; raise it to at least {floor}")
    limit = min((v for v in (budget.tokens, budget.uncached_tokens) if v is not None), default=None)
    if limit is None or not items:
        return
    from reasoning.solve import problem_messages
    from reasoning.types import GenerationRequest

    shortest = min(
        backend.count_prompt_tokens(GenerationRequest(
            messages=problem_messages(Problem(item.problem, item.id), solve_options(item.kind).get("prompt", "solve_math"))))
        for item in items
    )
    if limit < shortest + floor:
        why = ("every call would be refused" if limit <= shortest else
               f"that leaves {limit - shortest} for an answer, fewer than the {floor} below which a call is refused")
        raise ConfigError(f"--budget allows {limit} tokens per problem, but the shortest prompt alone is {shortest} "
                          f"tokens on {backend.name}: {why}; raise the budget to at least {shortest + floor}")


class RunProgress:
    """What ``run_benchmark`` reports while it runs. This base keeps the counts and says
    nothing; the CLI draws them. Problems run concurrently, so the problem count moves in
    jumps: the completion tokens move as calls return (and as a local model decodes)."""

    def __init__(self) -> None:
        self.total = 0  # problems in the run
        self.done = 0  # finished, earlier attempts included
        self.todo = 0  # problems this attempt solves
        self.finished = 0  # of those, finished so far
        self.calls = 0  # backend calls returned in this attempt
        self.completion_tokens = 0  # what they were charged
        self.finished_tokens = 0  # completion tokens of the problems finished in this attempt
        self.started: float | None = None  # time.monotonic() when solving began (models loaded)
        self.in_flight: Callable[[], int] = lambda: 0  # tokens decoded by calls still running
        self._shown = 0

    def note(self, text: str) -> None:
        """A line for the user: a model being prepared, a run being resumed."""

    def begin(self) -> None:
        """Solving starts (``total``, ``done``, ``todo`` and ``started`` are set)."""

    def changed(self) -> None:
        """A count changed."""

    def tokens(self) -> int:
        """Completion tokens generated in this attempt so far, in flight included (never shrinks:
        a returned call's tokens leave the in-flight count a moment before they are charged)."""
        self._shown = max(self._shown, self.completion_tokens + self.in_flight())
        return self._shown

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left, or None while there is no honest estimate: the completion tokens a
        finished problem took on average, times the problems of this attempt, less the tokens
        generated so far, at the token rate so far. None before the first problem finishes and
        once the running problems have outgrown that average."""
        if self.started is None:
            return None
        if self.finished >= self.todo:
            return 0.0
        if self.finished == 0:
            return None
        now = time.monotonic() if now is None else now
        tokens, elapsed = self.tokens(), now - self.started
        left = self.finished_tokens / self.finished * self.todo - tokens
        if tokens <= 0 or elapsed <= 0 or left <= 0:
            return None
        return left * elapsed / tokens

    def _call(self, charged: Usage) -> None:
        self.calls += charged.calls
        self.completion_tokens += charged.completion_tokens
        self.changed()

    def _problem(self, usage: Usage) -> None:
        self.done += 1
        self.finished += 1
        self.finished_tokens += usage.completion_tokens
        self.changed()


def resume_note(items: list[Item], done: dict[str, dict[str, Any]], todo: list[Item]) -> str | None:
    """``resuming: 2 of 4 done`` when an earlier attempt finished some of ``items``."""
    finished = len(items) - len(todo)
    retried = sum(item.id in done for item in todo)
    if not finished and not retried:
        return None
    text = f"resuming: {finished} of {len(items)} done"
    if retried:
        text += f"; {retried} stopped by a run limit that is higher now {'is' if retried == 1 else 'are'} redone"
    return text + ("; nothing left to run" if not todo else "")


async def run_benchmark(
    config: RunConfig,
    strategy: Strategy,
    backend: Backend,
    *,
    items: list[Item] | None = None,
    progress: RunProgress | None = None,
    roles: dict[str, Backend] | None = None,
    ray: Any = None,
) -> dict[str, Any]:
    """``roles`` gives roles other than the generator their own backends (``--role``);
    ``progress`` hears how the run goes (the CLI draws it). ``ray`` (``distributed.RayOptions``,
    with the backends' specs) solves on Ray workers; ``backend`` and ``roles`` are then only
    checked here (prices), never loaded."""
    backends = list(dict.fromkeys([backend, *(roles or {}).values()]))
    for each in backends:
        require_prices(each, Budget.parse(config.budget), Budget.parse(config.run_budget))
    progress = progress or RunProgress()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if items is None:
        items = load_items(config.dataset, config.limit)
    # config.json records the temperature the generations go out at (greedy: 0, not --temperature);
    # where the strategy decides it, the run's --temperature does not change what results mean.
    sampled = strategy.generation_temperature(config.temperature)
    run_temperature_used = strategy.fixed_temperature is None and getattr(strategy, "temperature", None) is None
    sampling = Sampling(max_tokens=config.max_tokens, temperature=config.temperature)
    config = config.model_copy(update={"temperature": sampled})
    done = read_done(out / "results.jsonl")
    journal = RunJournal(out / "journal.jsonl")
    charged = journal.charged_before()
    if charged is None:  # a run folder from before the journal: what its finished problems used
        charged = Usage()
        for row in done.values():
            charged.add(Usage.from_dict(row["usage"]))
    identity = _IDENTITY if run_temperature_used else tuple(k for k in _IDENTITY if k != "temperature")
    if not done and not _spent(charged):  # an attempt refused up front (a budget too small): start over
        identity = ()
    previous = check_resume(out, config, identity)
    if config.sandbox == "strict" and any(item.kind == "code" for item in items):
        from reasoning.verifiers.code_exec import FULL_ISOLATION, sandbox_isolation

        layers, reason = sandbox_isolation()
        if not FULL_ISOLATION <= set(layers.split(",")):
            raise ConfigError(f"--sandbox strict: the code sandbox here gives only {layers} ({reason}); "
                              f"full isolation needs {', '.join(sorted(FULL_ISOLATION))}")
    run_budget = Budget.parse(config.run_budget)
    earlier_run_budget = (previous or {}).get("run_budget", config.run_budget)
    todo = [item for item in items
            if item.id not in done or _run_limit_raised(done[item.id], run_budget, earlier_run_budget)]

    cluster = ledger_actor = None
    if ray is None:
        journal.on_commit = progress._call
        run_ledger = Ledger(run_budget, label="run:", journal=journal)
        run_ledger.used.add(charged)  # earlier attempts spent this already
        journal.start(charged)
    else:  # the run ledger and its journal live in the ledger actor, on this node
        from .distributed import RayCluster

        cluster = RayCluster(ray.address)
        ledger_actor = cluster.ledger(config.run_budget, str(journal.path), charged)
    if note := resume_note(items, done, todo):
        progress.note(note)

    results_file = _Appender(out / "results.jsonl")
    traces_file = _Appender(out / "traces.jsonl")
    started = time.monotonic()

    async def on_result(index: int, result: Result) -> None:
        await record(group[index], result)

    async def record(item: Item, result: Result) -> None:
        trace = result.trace.to_list()
        correct, graded = await grade_item(item, result.answer, sample_texts(trace) if item.kind == "code" else [],
                                           config.sandbox == "strict")
        row = {
            "id": item.id,
            "answer": result.answer,
            "gold": item.answer,
            "correct": bool(correct),
            "unverifiable": correct is None,
            **graded,
            "usage": result.usage.to_dict(),
            "usage_by_role": {role: u.to_dict() for role, u in result.usage_by_role.items()},
            "stopped_by": result.stopped_by,
            # Calls whose reported usage was out of bounds (charged at their reservation).
            "usage_anomalies": sum("usage_anomaly" in node.info for node in result.trace.calls()),
        }
        if (result.stopped_by or "").startswith("run:"):  # retried once this run budget is raised
            row["run_budget"] = config.run_budget
        traces_file.write({"id": item.id, "text": result.text, "info": result.info, "trace": trace,
                           "ledger": result.ledger_events})
        results_file.write(row)
        done[item.id] = row
        progress._problem(result.usage)

    previous_wall = _previous_wall_seconds(out)
    group: list[Item] = []
    ray_workers = 0
    try:
        if ray is not None:
            ray_workers = await _solve_on_ray(ray, cluster, ledger_actor, config, strategy, backend, sampling, todo,
                                              items, progress, record)
        else:
            if todo:
                for each in backends:
                    if note := each.preparation_note():
                        progress.note(note)
                    await each.load()  # a model load must not eat the first problems' seconds budget
                floor = min(sampling.min_tokens, sampling.max_tokens)  # the shortest call a strategy gets
                check_budget_fits_a_prompt(todo, backend, Budget.parse(config.budget), floor)
            progress.total, progress.done, progress.todo = len(items), len(items) - len(todo), len(todo)
            progress.in_flight = lambda: sum(each.tokens_in_flight() for each in backends)
            progress.started = time.monotonic()
            progress.begin()
            for kind in dict.fromkeys(item.kind for item in todo):  # each kind once, in order
                group = [item for item in todo if item.kind == kind]
                options = solve_options(kind)
                problems = [Problem(item.problem, item.id, item.metadata) for item in group]
                await asolve_many(
                    problems,
                    strategy,
                    backend,
                    Budget.parse(config.budget),
                    run_ledger=run_ledger,
                    concurrency=config.concurrency,
                    on_result=on_result,
                    sampling=sampling,
                    backends=roles or None,
                    **options,
                )
    finally:
        results_file.close()
        traces_file.close()
        journal.close()
        ended = time.monotonic()
        summary = summarise(config, items, done, previous_wall + ended - started)
        # This attempt's wall clock once every model was loaded (Ray: every worker's): the
        # denominator of a throughput that does not count engine start-up.
        summary["solve_seconds"] = None if progress.started is None else ended - progress.started
        # What --run-budget counted over every attempt: also what interrupted attempts spent.
        if cluster is None:
            used, held = run_ledger.used, run_ledger.reserved
        else:  # a dead worker's calls stay held: charged at their worst case
            try:
                totals = cluster.get(ledger_actor.totals.remote())
                cluster.get(ledger_actor.close.remote())
                used, held = Usage.from_dict(totals["used"]), Usage.from_dict(totals["reserved"])
                summary["ray"] = {"workers": ray_workers, "in_flight_at_end": totals["open"]}
            finally:
                cluster.close()
        charged = used.minus(Usage(seconds=used.seconds))
        charged.add(held)
        summary["run_charged"] = _without_seconds(charged)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


async def _solve_on_ray(ray: Any, cluster: Any, ledger_actor: Any, config: RunConfig, strategy: Strategy,
                        backend: Backend, sampling: Sampling, todo: list[Item], items: list[Item],
                        progress: RunProgress, record: Callable[[Item, Result], Any]) -> int:
    """``run_benchmark``'s solving part on Ray workers (``benchmarks/distributed.py``); returns
    how many workers it used."""
    from .distributed import SolveWorker, dispatch, gpus_per_worker

    gpus = gpus_per_worker(ray.generator, backend)
    count = ray.workers or cluster.default_workers(gpus)
    progress.total, progress.done, progress.todo = len(items), len(items) - len(todo), len(todo)
    if not todo:
        progress.started = time.monotonic()
        progress.begin()
        return count
    progress.note(f"on Ray: {count} worker{'s' if count != 1 else ''}, {config.concurrency} problems in flight each")
    workers = cluster.workers(SolveWorker, count, config.concurrency, gpus, ray.generator, ray.roles, strategy,
                              config.budget, config.run_budget, sampling, ledger_actor)
    floor = min(sampling.min_tokens, sampling.max_tokens)
    await cluster.aget(workers[0].check_budget.remote(todo, floor))  # as the local run checks, with a loaded backend
    try:  # every worker loaded: solving starts now (one that died is dispatch's to restart)
        await cluster.aget([worker.pid.remote() for worker in workers[1:]])
    except cluster.ray.exceptions.RayActorError:
        pass
    progress.started = time.monotonic()
    progress.begin()

    async def done(job: tuple, result: Result) -> None:
        progress._call(result.usage)
        await record(job[0], result)

    await dispatch(cluster, workers, "solve", [(item,) for item in todo], config.concurrency, done)
    return count


def _spent(usage: Usage) -> bool:
    """Whether ``usage`` holds anything a budget charges (seconds aside)."""
    return any(_without_seconds(usage).values())


def _without_seconds(usage: Usage) -> dict[str, float]:
    """``usage`` as a dict less its seconds: summed per call or per problem they are not wall time."""
    data = usage.to_dict()
    del data["seconds"]
    return data


def _previous_wall_seconds(out: Path) -> float:
    """Wall time of earlier attempts at this run, so a resumed run reports the total."""
    try:
        return float(json.loads((out / "summary.json").read_text())["wall_seconds"])
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return 0.0


def summarise(config: RunConfig, items: list[Item], done: dict[str, dict[str, Any]], wall: float) -> dict[str, Any]:
    rows = [done[item.id] for item in items if item.id in done]
    total = Usage()
    for row in rows:
        total.add(Usage.from_dict(row["usage"]))
    correct = sum(row["correct"] for row in rows)
    code: dict[str, Any] = {}
    coded = [row for row in rows if "pass_at" in row]
    if coded:
        ks = sorted({int(k) for row in coded for k in row["pass_at"]})
        # pass@k averages over the problems that drew at least k samples.
        code["pass_at"] = {
            str(k): sum(row["pass_at"][str(k)] for row in coded if str(k) in row["pass_at"])
            / sum(str(k) in row["pass_at"] for row in coded)
            for k in ks
        }
        code["status"] = dict(Counter(row["status"] for row in coded))
        # Which sandbox layers graded the programs (see verifiers/code_exec.py).
        code["sandbox_isolation"] = sorted({row["isolation"] for row in coded if row.get("isolation")})
    return {
        "accuracy": correct / len(rows) if rows else 0.0,
        "n_problems": len(rows),
        "n_correct": correct,
        "n_unverifiable": sum(row.get("unverifiable", False) for row in rows),
        "complete": len(rows) == len(items),
        "usage": _without_seconds(total),
        "stopped_by": dict(Counter(row["stopped_by"] for row in rows if row["stopped_by"])),
        "usage_anomalies": sum(row.get("usage_anomalies", 0) for row in rows),
        # Two times, named apart: the run's wall clock over every attempt, and the problems'
        # own seconds added up (more than the wall time when problems run concurrently).
        "wall_seconds": wall,
        "problem_seconds_sum": total.seconds,
        **code,
        "config": config.model_dump(),
    }
