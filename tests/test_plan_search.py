"""PlanSearch: observations, their subsets, plans, fixes and code, graded on public tests in the
real code sandbox; the call order, the plan counts and the budget's stop on the Scripted backend."""

import asyncio
import json
import math
import re

import pytest
from reasoning.benchmarks.run import pass_at_k, sample_texts
from reasoning.strategies import create
from reasoning.strategies.plan_search import PlanSearch, parse_list, public_tests, subsets

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.budget import Ledger
from reasoning.errors import ConfigError
from reasoning.trace import Trace

# A HumanEval-like task: the docstring's example is its only public test.
PROMPT = '''def add(a: int, b: int) -> int:
    """Return the sum of a and b.
    >>> add(2, 3)
    5
    """
'''
# The hidden test (never shown to the strategy) fails every program: it must not be read.
PROBLEM = rz.Problem(PROMPT, "add", {"entry_point": "add", "test": "assert False"})
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
KINDS = {
    "useful, non-obvious and correct observations": "observe",
    "Derive new, useful": "derive",
    "high-level solution in natural language": "sketch",
    "demanding reviewer": "critique",
    "Rewrite the idea": "fix",
    "into pseudocode": "pseudocode",
    "Implement the given plan": "code",
}


def kind(request):
    system = request.messages[0].content
    return next(name for marker, name in KINDS.items() if marker in system)


class Script:
    """Replies by kind of call; records (kind, user prompt) in order."""

    def __init__(self, observations=("A", "B", "C"), derived=("D1", "D2"), programs=(RIGHT,)):
        self.observations, self.derived, self.programs = observations, derived, programs
        self.calls: list[tuple[str, str]] = []
        self.coded = 0

    def __call__(self, request, index):
        what, user = kind(request), request.messages[-1].content
        self.calls.append((what, user))
        if what == "observe":
            return "Here they are.\n" + "\n".join(f"{i}. {o}" for i, o in enumerate(self.observations, 1))
        if what == "derive":
            return "Implications first.\n" + "\n".join(f"{i}. {o}" for i, o in enumerate(self.derived, 1))
        if what == "sketch":
            return f"SKETCH#{sum(c[0] == 'sketch' for c in self.calls)}"
        if what == "critique":
            return "CRITICISM: fails on add(0, 0)"
        if what == "fix":
            return "FIXED SKETCH"
        if what == "pseudocode":
            return "PSEUDO for " + user.rsplit("Here is the solution in natural language:\n\n", 1)[1].split("\n")[0]
        self.coded += 1
        return self.programs[(self.coded - 1) % len(self.programs)]

    def kinds(self):
        return [k for k, _ in self.calls]


class Solved:
    """A strategy's Outcome run on a Context of its own: answer, info, samples, trace, ledger."""

    def __init__(self, strategy, backend, budget, problem):
        self.ledger, self.trace = Ledger(budget), Trace()
        ctx = rz.Context(problem, backend, self.ledger, self.trace, messages=(), extract=lambda text: None)
        outcome = asyncio.run(strategy.run(ctx))
        self.answer, self.info, self.samples = outcome.answer, outcome.info, outcome.samples
        self.stopped_by, self.usage = self.ledger.stopped_by, self.ledger.usage()


def solve(strategy, script, budget=None, problem=PROBLEM):
    backend = Scripted(responder=script)
    return Solved(strategy, backend, budget, problem), backend


def sketched_sets(script):
    """The observation set each sketch call was shown, in call order."""
    shown = []
    for what, user in script.calls:
        if what == "sketch":
            lines = [line[2:] for line in user.splitlines() if line.startswith("- ")]
            shown.append(tuple(lines))
    return shown


def test_subset_counts_are_the_binomial_sums():
    items = ["a", "b", "c", "d"]
    assert len(subsets(items, 2)) == 1 + 4 + 6
    assert len(subsets(items, 3)) == 1 + 4 + 6 + 4
    assert len(subsets(items, 2, empty=False)) == 4 + 6
    assert subsets(["a", "b", "c"], 2) == [(), ("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c")]
    assert subsets(["a"], 3) == [(), ("a",)]


def test_first_order_plans_in_exact_call_order():
    script = Script()
    strategy = PlanSearch(n=100, observations=3, second_order=False, fix_plans=False, parallel=1)
    result, backend = solve(strategy, script)
    # 1 + 3 + 3 observation sets, each: sketch, pseudocode, code; the observation call first.
    assert script.kinds() == ["observe"] + ["sketch", "pseudocode", "code"] * 7
    assert sketched_sets(script) == [(), ("A",), ("B",), ("C",), ("A", "B"), ("A", "C"), ("B", "C")]
    assert result.info["observations"] == ["A", "B", "C"] and result.info["observation_sets"] == 7
    assert result.info["programs"] == 7 and len(result.samples) == 7 and backend.calls == 1 + 3 * 7
    # The observation prompt asks for the configured count; pseudocode is made from the sketch,
    # and the code call is shown the pseudocode.
    assert "Write 3 non-obvious observations" in script.calls[0][1]
    assert script.calls[2][1].count("SKETCH#1") == 1
    assert "PSEUDO for SKETCH#1" in script.calls[3][1]
    assert [s.info["plan"] for s in result.samples] == list(range(7))
    assert all(r.max_tokens == 512 for r, (k, _) in zip(backend.requests, script.calls) if k != "code")


def test_second_order_observations_add_their_subsets_and_only_as_many_as_needed():
    script = Script(observations=("A", "B"), derived=("D1", "D2"))
    everything = PlanSearch(n=100, observations=2, derived=2, fix_plans=False, parallel=1)
    result, _ = solve(everything, script)
    # 1 + 2 + 1 first-order sets; each derives 2 observations: 2 + 1 non-empty subsets each.
    assert script.kinds()[:5] == ["observe"] + ["derive"] * 4
    assert result.info["observation_sets"] == 4 + 4 * 3 and result.info["programs"] == 16
    assert sketched_sets(script)[4:7] == [("D1",), ("D2",), ("D1", "D2")]
    # The derive calls are shown their first-order subset (the first one: none).
    derives = [user for what, user in script.calls if what == "derive"]
    assert "No observations are given" in derives[0] and "- A\n" not in derives[0]
    assert "- A" in derives[1] and "- A\n- B" in derives[3]

    script = Script(observations=("A", "B"), derived=("D1", "D2"))
    few = PlanSearch(n=6, observations=2, derived=2, fix_plans=False, parallel=1)
    result, _ = solve(few, script)
    # 4 first-order sets; 2 more are needed, one derive call gives 3: one call only.
    assert script.kinds() == ["observe", "derive"] + ["sketch", "pseudocode", "code"] * 6
    assert result.info["programs"] == 6 and len(result.info["derived"]) == 1


def test_fix_doubles_the_plans_and_codes_the_fixed_sketch():
    script = Script(observations=("A", "B"))
    strategy = PlanSearch(n=3, observations=2, second_order=False, parallel=1)
    result, _ = solve(strategy, script)
    assert script.kinds() == ["observe",
                              "sketch", "pseudocode", "code", "critique", "fix", "pseudocode", "code",
                              "sketch", "pseudocode", "code"]
    critique, fix, pseudo = script.calls[4][1], script.calls[5][1], script.calls[6][1]
    assert "SKETCH#1" in critique and "Assume this solution is not correct" in critique
    assert "SKETCH#1" in fix and "CRITICISM: fails on add(0, 0)" in fix
    assert "PSEUDO" not in pseudo and "FIXED SKETCH" in pseudo
    assert [(s.info["plan"], s.info["fixed"]) for s in result.samples] == [(0, False), (0, True), (1, False)]


def test_public_tests_pick_the_program_that_passes_in_the_sandbox():
    script = Script(observations=("A",), programs=(WRONG, RIGHT, WRONG))
    strategy = PlanSearch(n=3, observations=1, second_order=False, fix_plans=False, parallel=1)
    result, _ = solve(strategy, script)
    assert [s.score for s in result.samples] == [0.0, 1.0]  # two observation sets: (), (A,)
    assert [s.info["public_status"] for s in result.samples] == ["failed", "passed"]
    assert result.info["route"] == "public-tests" and result.info["chosen"] == 1
    assert result.info["public_tests"] == 1 and result.info["passed_public"] == [1]
    assert result.answer == "def add(a, b):\n    return a + b\n"
    # pass@k over the programs, as the benchmark computes it: the idea calls are not samples.
    texts = sample_texts(result.trace.to_list())
    assert texts == [WRONG, RIGHT]
    assert pass_at_k(len(texts), 1, 1) == 0.5


def test_no_passing_program_answers_with_the_first_program():
    script = Script(observations=("A",), programs=(WRONG,))
    result, _ = solve(PlanSearch(n=2, observations=1, second_order=False, fix_plans=False), script)
    assert [s.score for s in result.samples] == [0.0, 0.0]
    assert result.info["route"] == "first-program" and result.info["chosen"] == 0
    assert result.answer == "def add(a, b):\n    return a - b\n"


def test_without_public_tests_nothing_is_run():
    script = Script(observations=("A",), programs=(WRONG, RIGHT))
    problem = rz.Problem("Write add(a, b) returning the sum.", "p", {"entry_point": "add"})
    result, _ = solve(PlanSearch(n=2, observations=1, second_order=False, fix_plans=False), script, problem=problem)
    assert [s.score for s in result.samples] == [None, None] and result.info["public_tests"] == 0
    assert result.info["route"] == "first-program" and "return a - b" in result.answer


def test_budget_stops_mid_plan_and_starts_no_new_plan():
    script = Script(observations=("A", "B"))
    strategy = PlanSearch(n=10, observations=2, second_order=False, fix_plans=False, parallel=1)
    result, _ = solve(strategy, script, rz.Budget(calls=5))
    # observe; plan 0: sketch, pseudocode, code; plan 1: sketch, then its pseudocode is refused.
    assert script.kinds() == ["observe", "sketch", "pseudocode", "code", "sketch"]
    refused = [n for n in result.trace.nodes if n.kind == "generate" and n.error]
    assert len(refused) == 1 and refused[0].name == "pseudocode"
    assert [n.name for n in result.trace.nodes if n.name.startswith("plan-")] == ["plan-0", "plan-1"]  # no plan-2
    assert result.stopped_by == "calls" and result.usage.calls == 5
    assert len(result.samples) == 1 and result.answer == "def add(a, b):\n    return a + b\n"
    assert result.info["route"] == "public-tests"


def test_budget_refusing_the_observations_gives_no_answer():
    script = Script()
    result, _ = solve(PlanSearch(n=4), script, rz.Budget(calls=0))
    assert script.calls == [] and result.answer is None and result.info["route"] == "none"
    assert result.info["programs"] == 0


def test_parse_list_reads_numbered_and_bulleted_items():
    text = "Intro 1 line.\n1. First idea\n2) Second idea\n- **Observation 3:** third\n   4. fourth one  \nnot an item"
    assert parse_list(text, 10) == ["First idea", "Second idea", "third", "fourth one"]
    assert parse_list(text, 2) == ["third", "fourth one"]
    assert parse_list("no list here", 3) == []


def test_public_tests_come_from_the_prompt_or_the_metadata_never_the_hidden_tests():
    assert public_tests(PROBLEM) == ["assert add(2, 3) == 5"]
    mbpp = rz.Problem("Write a function.\nYour code should pass this test:\nassert f(1) == 2", "m",
                      {"test_list": ["assert f(1) == 2", "assert f(5) == 6"]})
    assert public_tests(mbpp) == ["assert f(1) == 2"]
    given = rz.Problem(PROMPT, "g", {"public_tests": ["assert add(1, 1) == 2"]})
    assert public_tests(given) == ["assert add(1, 1) == 2"]
    broken = rz.Problem(">>> f(\n1\nassert (", "b")
    assert public_tests(broken) == []


def test_bad_options_are_config_errors_naming_them():
    with pytest.raises(ConfigError, match="subset_size"):
        create("plan-search", subset_size=-1)
    with pytest.raises(ConfigError, match="observations"):
        create("plan-search", observations=0)
    strategy = create("plan-search", n=5)
    assert isinstance(strategy, PlanSearch) and strategy.n == 5


def test_plans_needed_for_n_programs():
    # Each observation set gives one program, two with the fix: ceil(n / 2) sets.
    script = Script(observations=("A", "B", "C"))
    result, _ = solve(PlanSearch(n=5, observations=3, second_order=False, parallel=2), script)
    assert result.info["programs"] == 5 and result.info["observation_sets"] == math.ceil(5 / 2)
    assert script.kinds().count("sketch") == 3 and script.kinds().count("critique") == 2


@pytest.mark.slow
def test_plan_search_on_the_embedded_model(local_backend):
    """Tiny settings: one observation, two plans (the empty set and the observation), no
    pseudocode; every program graded on the docstring's example in the sandbox."""
    strategy = PlanSearch(n=2, observations=1, subset_size=1, second_order=False, fix_plans=False,
                          pseudocode=False, idea_tokens=48, max_tokens=96, temperature=0.0, parallel=2)
    result = Solved(strategy, local_backend, rz.Budget(tokens=8000), PROBLEM)
    sets = result.info["observation_sets"]  # 2, or 1 when the model wrote no numbered observation
    assert sets == 1 + min(1, len(result.info["observations"]))
    assert result.usage.calls == 1 + 2 * sets and result.info["programs"] == sets == len(result.samples)
    assert all(s.score in (0.0, 1.0) for s in result.samples) and result.info["public_tests"] == 1
    assert sample_texts(result.trace.to_list()) == [s.text for s in result.samples]
    if result.info["route"] == "public-tests":  # the program it answers with passes the example
        verdict = rz.run_code_tests(result.answer, "assert add(2, 3) == 5")
        assert verdict.passed


def test_the_sweep_config_pools_plan_search_against_repeated_sampling(tmp_path):
    """benchmarks/sweeps/plan_search_code.yaml, cut to two HumanEval problems and n = 1, 2, run
    on a scripted model: both strategies are pools, so both get pass@k coverage."""
    from pathlib import Path

    import yaml
    from reasoning.benchmarks.sweep import Sweep, SweepConfig

    from reasoning.backends.cache import CachedBackend

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "sweeps" / "plan_search_code.yaml"
    text = path.read_text()
    assert "Run on 2026-11-29" in text and "cut" in text and "77.0 %" in text and "60.6 %" in text
    data = yaml.safe_load(text)
    assert [s["name"] for s in data["strategies"]] == ["self-consistency", "plan-search"]
    for spec in data["strategies"]:
        spec.pop("n", None)
    data.update(datasets=["humaneval"], limit=2, n=[1, 2], out=str(tmp_path / "sweep"), subsets=4)
    config = SweepConfig.model_validate(data)

    def respond(request, index):
        if "observations" in request.messages[0].content or "Derive new" in request.messages[0].content:
            return "1. one\n2. two"
        name = re.search(r"def (\w+)\(", request.messages[-1].content).group(1)
        return f"```python\ndef {name}(*args):\n    return None\n```"

    backend = CachedBackend(Scripted(responder=respond), tmp_path / "sweep" / "generations.sqlite")
    summary = asyncio.run(Sweep(config, backend).run())
    cells = {(row["strategy"], row["point"]): row for row in summary["cells"]}
    assert {key for key in cells} == {(s, f"n={n}") for s in ("repeated-sampling", "plan-search") for n in (1, 2)}
    assert {row["mode"] for row in cells.values()} == {"reuse"}
    assert set(summary["coverage"]["humaneval"]) == {"repeated-sampling", "plan-search"}
    # A plan-search program costs more than one sample: observations, sketch, pseudocode, code.
    assert cells[("plan-search", "n=1")]["usage"]["calls"] > cells[("repeated-sampling", "n=1")]["usage"]["calls"]
    # The observation call is made once whatever the number of programs: a direct run at k = 1
    # pays it in full, so it is the pool's fixed part, and only the rest is charged k/N.
    rows = [json.loads(line) for line in (tmp_path / "sweep" / "problems.jsonl").read_text().splitlines()]
    for row in (r for r in rows if r["strategy"] == "plan-search"):
        fixed, pool, k, size = row["fixed_cost"], row["pool_cost"], row["n"], row["pool"]
        assert fixed["calls"] == 1 and 0 < fixed["tokens"] < pool["tokens"]
        assert row["cost"]["tokens"] == pytest.approx(fixed["tokens"] + k * (pool["tokens"] - fixed["tokens"]) / size)
