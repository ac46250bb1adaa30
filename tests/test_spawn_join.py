"""Spawn-join on the Scripted backend: concurrency, slices, depth/fan-out, join, fallbacks, budget."""

import asyncio
import math
import re

import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.strategies import create
from reasoning.strategies.spawn_join import MalformedPlan, SpawnJoin, child_budget, conclusion, parse_spawns

PROBLEM = "Using the numbers 2, 3, 3, 6, make 24."


class Counting(Scripted):
    """Scripted that records how many calls were in flight at once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.active = 0
        self.peak = 0

    async def generate(self, request):
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            return await super().generate(request)
        finally:
            self.active -= 1


def task_of(content: str) -> str:
    found = re.search(r"Your (?:sub-)?task: (.*)", content)
    return found.group(1).strip() if found else ""


def joined(content: str) -> str:
    """The scripted join's answer, built only from the children's results in its prompt: each
    block's ``Result: ... Conclusion: <task> done`` gives a factor ``(<task less 'try', no spaces>)``,
    a block without one gives ``?``; the factors are multiplied in block order. Children working on
    "try 6 - 2" and "try 3 + 3" so join to the gold (6-2)*(3+3) only if both results reach the join."""
    factors = []
    for block in re.findall(r"<join>(.*?)</join>", content, re.DOTALL):
        found = re.search(r"Result:.*Conclusion: (.*?) done", block, re.DOTALL)
        factors.append(f"({found.group(1).removeprefix('try ').replace(' ', '')})" if found else "?")
    return "*".join(factors)


def responder(root_plan: str, child_plan: str | None = None):
    """Plans spawn by script; workers report '<task> done'; joins answer from the join blocks."""

    def respond(request, index):
        content = request.messages[-1].content
        if "<join>" in content:
            count, answer = content.count("<join>"), joined(content)
            return f"Joined {count} results.\n\nConclusion: {answer} done \\boxed{{{answer}}}"
        if "Your sub-task:" in content:
            task = task_of(content)
            return f"Worked on it.\n\nConclusion: {task} done \\boxed{{{len(task)}}}"
        if "Your task:" in content:
            return root_plan if task_of(content) == "Solve the problem." else (child_plan or "")
        return "Sequential reasoning. \\boxed{(6-2)*(3+3)}"  # the ordinary solve prompt

    return respond


def solve(strategy, backend, budget=None, **kw):
    return asyncio.run(rz.asolve(PROBLEM, strategy, backend, budget, **kw))


def spans(result, prefix):
    return [n for n in result.trace.nodes if n.kind == "span" and n.name.startswith(prefix)]


def descendants(result, node_id):
    out, frontier = [], [node_id]
    while frontier:
        parent = frontier.pop()
        for node in result.trace.children(parent):
            out.append(node)
            frontier.append(node.id)
    return out


# -- parsing --------------------------------------------------------------------------
def test_parse_spawns_reads_tags_in_order():
    plan = "Plan:\n<spawn>try 6 - 2 first</spawn>\nand <SPAWN> try 3 * 3 </spawn> then join."
    assert parse_spawns(plan) == ["try 6 - 2 first", "try 3 * 3"]
    assert parse_spawns("no tags at all") == []


@pytest.mark.parametrize(
    "plan, reason",
    [
        ("<spawn>a</spawn> <spawn>b", "never closed"),
        ("a</spawn>", "without an opening"),
        ("<spawn>a <spawn>b</spawn></spawn>", "nested"),
        ("<spawn>   </spawn>", "empty sub-task"),
    ],
)
def test_parse_spawns_refuses_malformed_plans(plan, reason):
    with pytest.raises(MalformedPlan, match=reason):
        parse_spawns(plan)


def test_conclusion_keeps_the_last_paragraphs_within_the_limit():
    text = "long reasoning " * 100 + "\n\nshort end \\boxed{4}"
    assert conclusion(text) == "short end \\boxed{4}"
    assert conclusion("x" * 1000, limit=10) == "…" + "x" * 10


# -- the tree -------------------------------------------------------------------------
def test_children_run_concurrently_each_in_its_own_slice():
    plan = "Plan: <spawn>try 6 - 2</spawn> <spawn>try 3 + 3</spawn> <spawn>try 6 / 3</spawn>"
    backend = Counting(responder=responder(plan), latency=0.05)
    budget = rz.Budget(tokens=6000)
    result = solve(SpawnJoin(max_depth=1, max_fanout=3), backend, budget)
    assert result.answer == "(6-2)*(3+3)*(6/3)"  # every child's result reached the join, in order
    assert backend.peak == 3  # the three workers were in flight together
    assert result.info["route"] == "spawn" and result.info["children"] == 3 and result.info["depth"] == 1
    # Each child: a span, then its budget slice = (1 - join_share) x what the plan left, / 3.
    plan_tokens = result.trace.calls()[0].usage["tokens"]
    expected = math.floor(0.75 * (6000 - plan_tokens) / 3)
    children = spans(result, "spawn-1.")
    assert [c.info["task"] for c in children] == ["try 6 - 2", "try 3 + 3", "try 6 / 3"]
    for child in children:
        [slice_node] = result.trace.children(child.id)
        assert slice_node.name == "budget" and slice_node.info["budget"] == {"tokens": expected}
        used = sum(n.usage.get("tokens", 0) for n in descendants(result, slice_node.id) if n.kind == "generate")
        assert 0 < used <= expected
    assert result.usage.tokens <= 6000


def test_join_resumes_the_plan_with_every_childs_conclusion():
    plan = "Plan: <spawn>try 6 - 2</spawn> <spawn>try 3 + 3</spawn>"
    backend = Scripted(responder=responder(plan))
    result = solve(SpawnJoin(), backend)
    join = backend.requests[-1]
    roles = [m.role for m in join.messages]
    assert roles == ["system", "user", "assistant", "user"]  # the plan conversation, resumed
    assert join.messages[2].content == plan
    blocks = re.findall(r"<join>(.*?)</join>", join.messages[-1].content, re.DOTALL)
    assert len(blocks) == 2
    assert "Sub-task 1: try 6 - 2" in blocks[0] and "Conclusion: try 6 - 2 done \\boxed{9}" in blocks[0]
    assert "Sub-task 2: try 3 + 3" in blocks[1] and "Conclusion: try 3 + 3 done" in blocks[1]
    assert result.text.startswith("Joined 2 results") and result.answer == "(6-2)*(3+3)"
    assert backend.requests[0].stop == ("<join",)  # the plan cannot invent its workers' results


def test_depth_and_fanout_limits_shape_the_tree():
    root = "<spawn>A</spawn><spawn>B</spawn><spawn>C</spawn>"
    child = "<spawn>x</spawn><spawn>y</spawn><spawn>z</spawn>"
    backend = Scripted(responder=responder(root, child))
    result = solve(SpawnJoin(max_depth=2, max_fanout=2), backend)
    info = result.info
    assert info["depth"] == 2 and info["children"] == 2
    assert info["nodes"] == 1 + 2 + 4 and info["dropped"] == 1 + 2  # one extra at the root, one per child
    tree = info["tree"]
    assert [c["task"] for c in tree["children"]] == ["A", "B"] and tree["dropped"] == 1
    for sub in tree["children"]:
        assert sub["route"] == "spawn" and [g["task"] for g in sub["children"]] == ["x", "y"]
        assert all(g["route"] == "leaf" and g["depth"] == 2 for g in sub["children"])
    # calls: root plan + 2 child plans + 4 leaves + 2 child joins + root join
    assert result.usage.calls == 1 + 2 + 4 + 2 + 1
    # Each child's join read its leaves' results (x)*(y); the root's join read the children's joins.
    assert result.answer == "((x)*(y))*((x)*(y))"


def test_overflow_sequential_runs_extra_spawns_after_the_concurrent_ones():
    root = "<spawn>A</spawn><spawn>B</spawn><spawn>C</spawn><spawn>D</spawn>"
    backend = Counting(responder=responder(root), latency=0.05)
    result = solve(SpawnJoin(max_fanout=2, overflow="sequential"), backend, rz.Budget(tokens=10_000))
    assert result.info["children"] == 4 and result.info["dropped"] == 0
    assert backend.peak == 2
    slices = [n.info["budget"]["tokens"] for n in result.trace.nodes if n.name == "budget"]
    assert len(slices) == 4 and len(set(slices)) == 1  # all four share what was left fairly


@pytest.mark.parametrize(
    "plan, reason",
    [
        ("I will just think about it.", "no <spawn> tags and no answer"),
        ("<spawn>try 6 - 2</spawn> <spawn>try 3 + 3", "<spawn> never closed"),
        ("<spawn> </spawn>", "empty sub-task"),
    ],
)
def test_malformed_plan_degrades_to_one_ordinary_solve_call(plan, reason):
    backend = Scripted(responder=responder(plan))
    result = solve(SpawnJoin(), backend)
    assert result.info["route"] == "sequential" and result.info["tree"]["reason"] == reason
    assert result.usage.calls == 2  # the plan, then one plain solve
    solve_request = backend.requests[1]
    assert solve_request.messages[0].content.startswith("Please reason step by step")  # solve_math
    assert result.answer == "(6-2)*(3+3)" and result.info["children"] == 0


def test_a_plan_that_already_answers_is_used_directly():
    backend = Scripted(responder=responder("Too simple to split: (6-2)*(3+3). \\boxed{(6-2)*(3+3)}"))
    result = solve(SpawnJoin(), backend)
    assert result.info["route"] == "direct" and result.usage.calls == 1
    assert result.answer == "(6-2)*(3+3)"


def test_refused_plan_returns_no_answer_and_names_the_limit():
    result = solve(SpawnJoin(), Scripted(responder=responder("<spawn>a</spawn>")), rz.Budget(tokens=50))
    assert result.answer is None and result.info["route"] == "refused"
    assert result.stopped_by == "tokens" and result.usage.calls == 0


def test_children_whose_slice_is_too_small_report_no_result_and_the_join_still_runs():
    plan = "<spawn>a</spawn><spawn>b</spawn>"
    backend = Scripted(responder=responder(plan))
    # Scripted counts: plan 156 prompt + 20 completion; a worker needs 68 + 64 (min_tokens),
    # the join about 205 + 64. 300 left after the plan: slices of 0.75 * 300 / 2 = 112 each.
    result = solve(SpawnJoin(max_tokens=64), backend, rz.Budget(tokens=176 + 300))
    assert [n.info["budget"]["tokens"] for n in result.trace.nodes if n.name == "budget"] == [112, 112]
    workers = [n for n in result.trace.calls() if n.name == "work"]
    assert len(workers) == 2 and all(n.error and "budget exhausted: tokens" in n.error for n in workers)
    join = backend.requests[-1].messages[-1].content
    assert join.count("(no result: the budget ran out)") == 2
    assert result.answer == "?*?"  # the join still answered, with neither child's result
    assert result.stopped_by == "tokens" and result.usage.tokens <= 476


def test_refused_join_falls_back_to_the_childrens_vote():
    plan = "<spawn>abc</spawn><spawn>xyz</spawn>"

    def tokens(text):  # each worker spends exactly its slice: (2000 - 20 for the plan) / 2
        return 990 if text.startswith("Worked") else 20

    backend = Scripted(responder=responder(plan), completion_tokens=tokens)
    result = solve(SpawnJoin(join_share=0.0, max_tokens=2000), backend, rz.Budget(completion_tokens=2000))
    assert result.info["tree"]["fallback"] == "children-vote"
    assert result.answer == "3"  # both workers boxed len("abc") == len("xyz") == 3
    assert result.trace.calls()[-1].name == "join" and result.trace.calls()[-1].error
    assert result.stopped_by == "completion_tokens"
    assert result.usage.completion_tokens <= 2000


def test_a_join_cut_before_its_boxed_answer_falls_back_to_the_childrens_vote():
    plan = "<spawn>abc</spawn><spawn>xyz</spawn>"
    backend = Scripted(responder=responder(plan), completion_tokens=lambda t: 10_000 if t.startswith("Joined") else 20)
    result = solve(SpawnJoin(max_tokens=64), backend)
    join = result.trace.calls()[-1]
    assert join.name == "join" and join.completions[0]["finish_reason"] == "length"
    assert result.answer == "3" and result.info["tree"]["fallback"] == "children-vote (join truncated)"


def test_child_budget_splits_every_finite_limit_and_keeps_a_call_for_the_join():
    async def go():
        from reasoning.budget import Ledger
        from reasoning.trace import Trace

        ledger = Ledger(rz.Budget(tokens=1000, calls=5, usd=1.0))
        ctx = rz.Context(rz.Problem("p"), Scripted(), ledger, Trace(), messages=(), extract=lambda t: None)
        return child_budget(ctx, 2, 0.25)

    budget = asyncio.run(go())
    assert budget.tokens == 375 and budget.calls == 1 and budget.usd == pytest.approx(0.375)
    assert budget.seconds is None and budget.flops is None


def test_options_are_validated_with_clear_errors():
    made = create("spawn-join", max_depth=2, max_fanout=3, overflow="sequential")
    assert (type(made), made.max_depth, made.max_fanout, made.overflow) == (SpawnJoin, 2, 3, "sequential")
    for bad, match in (
        ({"max_depth": 0}, "max_depth must be >= 1"),
        ({"max_fanout": 1.5}, "max_fanout must be an integer"),
        ({"max_fanout": True}, "max_fanout must be an integer"),
        ({"overflow": "inline"}, "overflow must be one of 'drop' or 'sequential'"),
        ({"join_share": 1.0}, "join_share must be < 1"),
        ({"max_tokens": 0}, "max_tokens must be"),
        ({"temperature": -1}, "temperature must be"),
    ):
        with pytest.raises(rz.ConfigError, match=match):
            create("spawn-join", **bad)


# -- APR's per-thread context window -----------------------------------------------------------
def test_context_limit_holds_every_thread_to_prompt_plus_generation():
    plan = "Plan: <spawn>try 6 - 2</spawn> <spawn>try 3 + 3</spawn>"
    free = Scripted(responder=responder(plan))
    unlimited = solve(SpawnJoin(max_tokens=5000), free)
    assert all(r.max_tokens == 5000 for r in free.requests)  # no limit: max_tokens as asked

    backend = Scripted(responder=responder(plan))
    result = solve(SpawnJoin(max_tokens=5000, context_limit=1000), backend)
    assert result.answer == unlimited.answer == "(6-2)*(3+3)"
    names = [n.name for n in result.trace.calls()]
    assert names == ["plan", "work", "work", "join"]
    # Every call of every thread (the plan, each worker, the parent's join) fills the window exactly:
    # its prompt (the join's is the parent's whole conversation) plus max_tokens is the limit.
    assert [backend.count_prompt_tokens(r) + r.max_tokens for r in backend.requests] == [1000] * 4
    assert backend.count_prompt_tokens(backend.requests[-1]) > backend.count_prompt_tokens(backend.requests[0])
    # A limit above prompt + max_tokens changes nothing.
    roomy = Scripted(responder=responder(plan))
    solve(SpawnJoin(max_tokens=64, context_limit=100_000), roomy)
    assert [r.max_tokens for r in roomy.requests] == [64] * 4


def test_a_thread_whose_prompt_fills_its_window_makes_no_call():
    plan = "<spawn>abc</spawn><spawn>xyz</spawn>"
    probe = Scripted(responder=responder(plan))
    solve(SpawnJoin(), probe)
    plan_prompt, worker_prompt, join_prompt = (probe.count_prompt_tokens(probe.requests[i]) for i in (0, 1, -1))
    assert max(plan_prompt, worker_prompt) < join_prompt
    # A window the plan and the workers fit in, but not the parent's conversation at the join.
    limit = join_prompt - 1
    backend = Scripted(responder=responder(plan))
    result = solve(SpawnJoin(context_limit=limit), backend)
    assert [n.name for n in result.trace.calls()] == ["plan", "work", "work"]  # the join was never sent
    assert len(backend.requests) == 3 and result.stopped_by is None  # not a budget refusal
    assert result.info["tree"]["fallback"] == "children-vote (context window full)"
    assert result.answer == "3" and result.usage.calls == 3

    # A window smaller than the plan prompt: the root cannot even plan.
    tiny = Scripted(responder=responder(plan))
    refused = solve(SpawnJoin(context_limit=plan_prompt), tiny)
    assert refused.info["route"] == "refused" and refused.info["tree"]["reason"] == "context window full"
    assert refused.answer is None and tiny.requests == []


def test_a_worker_whose_prompt_fills_its_window_has_no_result():
    long_task = "w " * 300
    plan = f"<spawn>{long_task}</spawn><spawn>xyz</spawn>"

    def backend():
        return Scripted(responder=responder(plan), completion_tokens=lambda text: 5)

    probe = backend()
    solve(SpawnJoin(), probe)
    plan_prompt = probe.count_prompt_tokens(probe.requests[0])
    # The plan fits; the worker handed the 300-word sub-task does not (its prompt holds the
    # sub-task); the worker on "xyz" does. The join (the plan conversation) does not fit either.
    used = backend()
    result = solve(SpawnJoin(context_limit=plan_prompt + 10), used)
    first, second = result.info["tree"]["children"]
    assert first["reason"] == "context window full" and "reason" not in second
    assert [n.name for n in result.trace.calls()] == ["plan", "work"]  # only the "xyz" worker was sent
    assert [r.messages[-1].content.count("w w w") > 0 for r in used.requests] == [False, False]  # plan, xyz
    assert result.answer == "3"  # the children's vote: only "xyz" (len 3) answered
    assert result.info["tree"]["fallback"] == "children-vote (context window full)"
