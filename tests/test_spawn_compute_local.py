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
from reasoning.strategies import create

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
    assert info["route"] in ("spawn", "direct", "sequential")
    assert info["children"] <= 2 and info["depth"] <= 1
    calls = result.trace.calls()
    assert calls[0].name == "plan" and calls[0].request["stop"] == ["<join"]
    expected_calls = {"spawn": 1 + info["children"] + 1, "direct": 1, "sequential": 2}[info["route"]]
    assert result.usage.calls == expected_calls == len(calls)
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
    assert info["route"] in ("stop", "self-consistency(n=2)")
    assert len(calls) == (1 if info["route"] == "stop" else 2)
    assert 0.0 <= info["agreement"] <= 1.0
    assert result.usage.tokens <= 3000
    print(info, result.answer)
