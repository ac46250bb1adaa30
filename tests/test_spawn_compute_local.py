"""spawn-join and compute-optimal once each on the real embedded model (slow: -m slow).

Tiny max_tokens (32) keep the file short: 3 min measured on 2 CPU cores while another job held
1.3 of them. The model is far too small to solve the puzzles, so these pin down plumbing on
real text: every route ends somewhere defined, the trace and the usage agree, the budget holds.
"""

from __future__ import annotations

import asyncio
import json

import pytest

import reasoning as rz
from reasoning.benchmarks.datasets import load_items
from reasoning.answers import extract_answer, last_boxed
from reasoning.context import Sample
from reasoning.strategies import create
from reasoning.strategies.compute_optimal import agreement
from reasoning.strategies.spawn_join import MalformedPlan, parse_spawns
from reasoning.strategies.voting import majority

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend(local_backend):
    return local_backend


def solve(strategy, backend, problem, budget):
    return asyncio.run(rz.asolve(problem, strategy, backend, budget, sampling=rz.Sampling(max_tokens=32, min_tokens=8)))


def test_spawn_join_on_a_countdown_puzzle(backend):
    item = load_items("countdown", 1)[0]
    problem = rz.Problem(item.problem, item.id, item.metadata)
    budget = rz.Budget(tokens=6000)
    result = solve(create("spawn-join", max_depth=1, max_fanout=2, max_tokens=32), backend, problem, budget)
    info = result.info
    calls = result.trace.calls()
    assert calls[0].name == "plan" and calls[0].request["stop"] == ["<join"]
    # The route, the children and the calls follow from the plan the model wrote, read again
    # here with the strategy's own parser.
    plan = calls[0].completions[0]["text"]
    try:
        tasks = parse_spawns(plan)
    except MalformedPlan:
        tasks = None
    if tasks:
        route, children, names = "spawn", min(len(tasks), 2), ["plan"] + ["work"] * min(len(tasks), 2) + ["join"]
        assert info["dropped"] == len(tasks) - children and info["depth"] == 1
    elif tasks == [] and last_boxed(plan) is not None:
        route, children, names = "direct", 0, ["plan"]
    else:
        route, children, names = "sequential", 0, ["plan", "solve"]
    assert (info["route"], info["children"]) == (route, children)
    assert sorted(c.name for c in calls) == sorted(names) and all(c.error is None for c in calls)
    assert result.usage.calls == len(names)
    if "fallback" not in info["tree"]:  # the answer is the text of the call that ends the route
        final = {"spawn": "join", "direct": "plan", "sequential": "solve"}[route]
        assert result.text == next(c for c in calls if c.name == final).completions[0]["text"]
    assert sum(c.usage["tokens"] for c in calls) == result.usage.tokens <= 6000
    assert all(c.usage["completion_tokens"] <= 32 for c in calls)
    print(json.dumps(info["tree"], indent=1), result.answer)


def test_compute_optimal_on_a_gsm8k_problem(backend, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"probes": 2, "bins": [
        {"min_agreement": 1.0, "strategy": "stop"},
        {"min_agreement": 0.0, "strategy": "self-consistency", "options": {"n": 2}},
    ]}))
    item = load_items("gsm8k", 1)[0]
    budget = rz.Budget(tokens=3000)
    result = solve(create("compute-optimal", policy=str(policy), max_tokens=32), backend, item.problem, budget)
    info = result.info
    calls = result.trace.calls()
    assert calls[0].name == "probes" and calls[0].request["n"] == 2
    # Agreement, route and answer recomputed from the recorded completions: the probes' vote
    # picks the bin (both agree: stop), a split goes to two more samples voted with the probes.
    def samples(call):
        return [Sample(c["text"], extract_answer(c["text"])) for c in call.completions]

    probes = samples(calls[0])
    assert info["agreement"] == agreement(probes) and info["probe_votes"] == majority(probes).tally
    route = "stop" if agreement(probes) == 1.0 else "self-consistency(n=2)"
    assert info["route"] == route and len(calls) == result.usage.calls == (1 if route == "stop" else 2)
    voted = probes + (samples(calls[1]) if route != "stop" else [])
    assert result.answer == majority(voted).answer and info["votes"] == majority(voted).tally
    assert result.usage.tokens == sum(c.usage["tokens"] for c in calls) <= 3000
    print(info, result.answer)
