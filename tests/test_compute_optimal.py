"""Compute-optimal routing and policy learning on the Scripted backend."""

import asyncio
import json

import pytest

import reasoning as rz
from reasoning.benchmarks.calibrate import calibration_records, learn_policy, main, select_policy
from reasoning.benchmarks.datasets import Item
from reasoning.backends import Scripted
from reasoning.strategies import create
from reasoning.strategies.compute_optimal import DEFAULT_POLICY, ComputeOptimal, Policy, agreement


def solve(strategy, backend, problem="What is 6*7?", budget=None, **kw):
    return asyncio.run(rz.asolve(problem, strategy, backend, budget, **kw))


def by_batch(script):
    """A responder answering by the request's sample count: script[n] is a list cycled per sample."""
    position = {}

    def respond(request, index):
        answers = script[request.n]
        k = position.get(request.n, 0)
        position[request.n] = k + 1
        return f"Thinking. \\boxed{{{answers[k % len(answers)]}}}"

    return respond


# -- routing ---------------------------------------------------------------------------
def test_easy_problem_stops_with_the_probe_vote():
    backend = Scripted(["5"])
    result = solve(ComputeOptimal(), backend)
    assert result.answer == "5" and result.info["route"] == "stop" and result.info["agreement"] == 1.0
    assert [r.n for r in backend.requests] == [4] and result.usage.calls == 1


def test_medium_problem_gets_eight_more_votes_combined_with_the_probes():
    backend = Scripted(responder=by_batch({4: ["5", "5", "6", "7"], 8: ["6"]}))
    result = solve(ComputeOptimal(), backend)
    assert result.info["agreement"] == 0.5 and result.info["route"] == "self-consistency(n=8)"
    assert [r.n for r in backend.requests] == [4, 8]
    # probes 5,5,6,7 + eight 6s: 6 wins 9 to 2; the probes were reused as votes.
    assert result.answer == "6" and result.info["votes"] == {"5": 2.0, "6": 9.0, "7": 1.0}
    assert result.info["combined"] is True and len(result.trace.calls()) == 2
    route_span = next(n for n in result.trace.nodes if n.kind == "span" and n.name == "route")
    assert route_span.info == {"strategy": "self-consistency", "options": {"n": 8}}


def test_hard_problem_gets_sixteen_votes():
    backend = Scripted(responder=by_batch({4: ["1", "2", "3", "4"], 16: ["9"]}))
    result = solve(ComputeOptimal(), backend)
    assert result.info["agreement"] == 0.25 and result.info["bin"] == 2
    assert [r.n for r in backend.requests] == [4, 16] and result.answer == "9"
    assert sum(result.info["votes"].values()) == 20


def test_unanswered_probes_count_against_agreement():
    from reasoning.context import Sample

    samples = [Sample("a", "5"), Sample("b", "5"), Sample("c", None), Sample("d", None)]
    assert agreement(samples) == 0.5
    assert agreement([Sample("x", None)]) == 0.0 and agreement([]) == 0.0


def test_a_verifier_route_is_not_combined_and_falls_back_to_the_probes_when_refused(tmp_path):
    route = {"min_agreement": 0.0, "strategy": "best-of-n", "options": {"n": 2, "verifier": "judge"}}
    policy = {"probes": 2, "bins": [route]}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))

    def respond(request, index):
        if "Proposed solution" in request.messages[-1].content:
            return "Score: 9" if "boxed{8}" in request.messages[-1].content else "Score: 1"
        return "so \\boxed{7}" if request.n == 2 and index < 2 else "so \\boxed{8}"

    result = solve(ComputeOptimal(policy=str(path)), Scripted(responder=respond))
    assert result.info["combined"] is False and result.answer == "8"  # best-of-n's pick, not the vote (7)
    # Budget for the probes only: the routed run is refused, the probe vote stands.
    strategy = ComputeOptimal(policy=str(path), max_tokens=64)
    result = solve(strategy, Scripted(responder=respond), budget=rz.Budget(calls=1))
    assert result.answer == "7" and result.info["fallback"] == "probes" and result.stopped_by == "calls"


def test_refused_probes_give_no_answer():
    result = solve(ComputeOptimal(), Scripted(["5"]), budget=rz.Budget(tokens=5))
    assert result.answer is None and result.info["route"] is None and result.stopped_by == "tokens"


def test_routed_strategy_runs_within_the_problem_budget():
    backend = Scripted(responder=by_batch({4: ["1", "2", "3", "4"], 5: ["9"]}), completion_tokens=20)
    # The probes spend 4 x 20; what is left pays for 5 samples of max_tokens 100.
    result = solve(ComputeOptimal(max_tokens=100), backend, budget=rz.Budget(completion_tokens=4 * 20 + 5 * 100))
    assert [r.n for r in backend.requests] == [4, 5]  # 16 asked, shrunk to what fits
    assert result.stopped_by == "completion_tokens" and result.usage.completion_tokens <= 580
    assert backend.requests[1].max_tokens == 100  # max_tokens passed on to the routed strategy


# -- the policy object --------------------------------------------------------------------
def test_policy_json_round_trips(tmp_path):
    policy = Policy.default()
    assert policy.to_dict() == DEFAULT_POLICY
    path = policy.save(tmp_path / "p" / "policy.json")
    again = Policy.load(path)
    assert again == policy and json.loads(path.read_text()) == DEFAULT_POLICY
    strategy = create("compute-optimal", policy=str(path))
    assert isinstance(strategy, ComputeOptimal) and strategy.describe()["bins"] == DEFAULT_POLICY["bins"]
    # Bins are kept highest threshold first whatever the file's order.
    shuffled = {**DEFAULT_POLICY, "bins": DEFAULT_POLICY["bins"][::-1]}
    assert Policy.from_dict(shuffled) == policy
    assert [policy.bin_of(a) for a in (1.0, 0.75, 0.74, 0.5, 0.25, 0.0)] == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    "change, match",
    [
        ({"bins": []}, "non-empty list"),
        ({"bins": [{"min_agreement": 0.5, "strategy": "stop"}]}, "lowest bin must have min_agreement 0"),
        ({"bins": [{"min_agreement": 0, "strategy": "stop"}, {"min_agreement": 0, "strategy": "greedy"}]},
         "share min_agreement"),
        ({"bins": [{"min_agreement": 0, "strategy": "no-such"}]}, "unknown strategy 'no-such'"),
        ({"bins": [{"min_agreement": 0, "strategy": "self-consistency", "options": {"k": 3}}]}, "has no option 'k'"),
        ({"bins": [{"min_agreement": 0, "strategy": "self-consistency", "options": {"n": 0}}]}, "n must be >= 1"),
        ({"bins": [{"min_agreement": 0, "strategy": "best-of-n", "options": {"verifier": "oracle"}}]},
         "unknown verifier"),
        ({"bins": [{"min_agreement": 0, "strategy": "compute-optimal"}]}, "cannot route to compute-optimal"),
        ({"bins": [{"min_agreement": 0, "strategy": "stop", "options": {"n": 2}}]}, "takes no options"),
        ({"bins": [{"min_agreement": 1.5, "strategy": "stop"}]}, r"in \[0, 1\]"),
        ({"probes": 0}, "probes must be an integer >= 1"),
        ({"version": 2}, "version 2"),
        ({"extra": 1}, "unknown keys"),
    ],
)
def test_bad_policies_are_refused_with_clear_errors(tmp_path, change, match):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({**DEFAULT_POLICY, **change}))
    with pytest.raises(rz.ConfigError, match=match):
        create("compute-optimal", policy=str(path))


def test_bad_options_and_files_are_refused(tmp_path):
    with pytest.raises(rz.ConfigError, match="policy file not found"):
        create("compute-optimal", policy=str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(rz.ConfigError, match="not valid JSON"):
        create("compute-optimal", policy=str(tmp_path / "bad.json"))
    with pytest.raises(rz.ConfigError, match="thresholds were set for probes=4"):
        create("compute-optimal", probes=8)
    with pytest.raises(rz.ConfigError, match="probes must be >= 1"):
        create("compute-optimal", probes=0)
    assert create("compute-optimal", probes=4).probes == 4


# -- learning a policy -------------------------------------------------------------------
def calibration_backend():
    """Easy problems: every sample says 5 (right). Hard ones (gold 7): batches of 4 scatter
    over 1..4, batches of 8 or 16 all say 7."""

    def respond(request, index):
        if "easy" in request.messages[-1].content:
            return "\\boxed{5}"
        return f"\\boxed{{{index % 4 + 1}}}" if request.n == 4 else "\\boxed{7}"

    return Scripted(responder=respond)


def calibration_items():
    easy = [Item(f"e{i}", f"easy problem {i}", "5") for i in range(3)]
    hard = [Item(f"h{i}", f"hard problem {i}", "7") for i in range(3)]
    return easy + hard


def test_learn_policy_picks_the_cheapest_sufficient_config_per_bin(tmp_path):
    items = calibration_items()
    records = asyncio.run(calibration_records(items, calibration_backend(), concurrency=2))
    by_id = {r["id"]: r for r in records}
    assert all(by_id[f"e{i}"]["agreement"] == 1.0 for i in range(3))
    assert all(by_id[f"h{i}"]["agreement"] == 0.25 for i in range(3))
    hard = by_id["h0"]["candidates"]
    labels = ("stop", "self-consistency(n=4)", "self-consistency(n=8)", "self-consistency(n=16)")
    assert [hard[k]["correct"] for k in labels] == [False, False, True, True]
    assert hard["stop"]["tokens"] < hard["self-consistency(n=8)"]["tokens"] < hard["self-consistency(n=16)"]["tokens"]

    policy = select_policy(records)
    assert [(r.min_agreement, r.label) for r in policy.bins] == [
        (0.75, "stop"),                      # easy: the probes already agree
        (0.5, "self-consistency(n=8)"),      # no calibration problem: the harder bin's choice
        (0.0, "self-consistency(n=8)"),      # hard: 8 is right and cheaper than 16
    ]
    assert policy.notes["expected_accuracy"] == 1.0 and policy.notes["budget_met"] is True

    # A budget that cannot pay for 8 more samples on hard problems: they stop at the probes.
    stop_tokens = sum(r["candidates"]["stop"]["tokens"] for r in records) / len(records)
    tight = select_policy(records, token_budget=stop_tokens + 1)
    assert [r.label for r in tight.bins] == ["stop", "stop", "stop"]
    assert tight.notes["expected_accuracy"] == 0.5

    # learn_policy does all of it and writes the JSON, which the strategy then loads.
    out = tmp_path / "policy.json"
    learned = asyncio.run(learn_policy(items, calibration_backend(), out=out, concurrency=2))
    assert Policy.load(out) == learned and learned.bins == policy.bins
    strategy = create("compute-optimal", policy=str(out))
    assert solve(strategy, calibration_backend(), "hard problem 9").answer == "7"


def test_calibration_runs_each_candidate_under_the_per_problem_budget_less_the_probes():
    items = calibration_items()[3:4]  # one hard problem
    sampling = rz.Sampling(max_tokens=50)
    # Probes spend 4 x 20 completion tokens; then 8 samples of max_tokens 50 fit, 16 do not.
    budget = rz.Budget(completion_tokens=4 * 20 + 8 * 50)
    [record] = asyncio.run(calibration_records(items, calibration_backend(), budget=budget, sampling=sampling))
    found = record["candidates"]
    assert found["self-consistency(n=16)"]["tokens"] == found["self-consistency(n=8)"]["tokens"]  # shrunk to 8
    assert found["self-consistency(n=16)"]["correct"] and not record["cut_by_run_budget"]
    # A run budget that ends mid-problem: the problem is left out of the selection.
    [cut] = asyncio.run(calibration_records(items, calibration_backend(), run_budget=rz.Budget(calls=2)))
    assert cut["cut_by_run_budget"]
    with pytest.raises(rz.ConfigError, match="no calibration problem finished"):
        select_policy([cut])


def test_calibrate_cli_uses_problems_after_the_offset(tmp_path, capsys):
    data = tmp_path / "cal.jsonl"
    rows = [{"id": i, "problem": f"easy problem {i}", "answer": "5"} for i in range(6)]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "policy.json"
    code = main(["--dataset", str(data), "--offset", "4", "--limit", "10", "--backend", "scripted:5",
                 "--candidates", '[{"strategy": "stop"}, {"strategy": "self-consistency", "options": {"n": 2}}]',
                 "--out", str(out), "--max-tokens", "64"])
    assert code == 0
    policy = Policy.load(out)
    assert policy.notes["problems"] == 2  # rows 4 and 5 only
    assert policy.bins[0].label == "stop"
    assert "calibrated on 2 problems" in capsys.readouterr().out
    assert main(["--dataset", str(data), "--offset", "6", "--limit", "1", "--out", str(out)]) == 2


def test_both_strategies_are_registered_with_their_options():
    from reasoning.strategies import available
    from reasoning.strategies.registry import options_of

    names = available()
    assert {"spawn-join", "compute-optimal"} <= names.keys()
    assert list(options_of(names["compute-optimal"])) == ["probes", "policy", "max_tokens", "temperature"]
    assert list(options_of(names["spawn-join"])) == [
        "max_depth", "max_fanout", "overflow", "join_share", "context_limit", "max_tokens", "temperature"]
    # The registered name builds the default policy's routes: a scattered probe vote (1, 2, 3, 4)
    # goes to the 16-sample bin, and max_tokens/temperature pass on to the routed strategy.
    backend = Scripted(responder=by_batch({4: ["1", "2", "3", "4"], 16: ["9"]}))
    result = solve(names["compute-optimal"](max_tokens=64, temperature=0.3), backend)
    assert [(r.n, r.max_tokens, r.temperature) for r in backend.requests] == [(4, 64, 0.3), (16, 64, 0.3)]
    assert (result.info["bin"], result.info["route"], result.answer) == (2, "self-consistency(n=16)", "9")
    assert result.info["votes"] == {"1": 1.0, "2": 1.0, "3": 1.0, "4": 1.0, "9": 16.0}


# -- Snell et al.'s set-up: search vs best-of-N per quantile bin ---------------------------------
def test_quantile_thresholds_put_equal_shares_in_each_bin():
    from reasoning.benchmarks.calibrate import quantile_thresholds

    # 10 agreements, 5 bins: edges at sorted positions 2, 4, 6, 8.
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert quantile_thresholds(values, 5) == [0.9, 0.7, 0.5, 0.3, 0.0]
    # Ties merge edges: 4 probes give few distinct agreements.
    assert quantile_thresholds([0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0], 5) == [1.0, 0.75, 0.5, 0.0]
    assert quantile_thresholds([0.0, 0.0, 0.0, 0.5], 2) == [0.0]  # an edge at 0 is the last bin's
    assert quantile_thresholds([0.0, 0.5, 1.0], 3) == [1.0, 0.5, 0.0]
    assert quantile_thresholds([0.3], 1) == [0.0]
    with pytest.raises(rz.ConfigError):
        quantile_thresholds([0.5], 0)


def snell_backend():
    """Gold 7 everywhere; the PRM (the same model, prompted as a judge) says Yes to a step that
    ends in 7 and No to any other. Easy problems: the probes agree on 7; of 8 samples one says 7
    and seven say 3 (the vote with the probes says 3, best-of-N weighted finds the 7); beam
    search's steps end in 3. Hard ones: the probes scatter, every sample says 3, beam search's
    steps end in 7."""
    backend = Scripted(logprobs=False)

    def respond(request, index):
        if request.messages is not None and "careful math teacher" in request.messages[0].content:
            step = request.messages[-1].content.split("Latest step:")[1]
            return f"Checked.\nIs the step correct (Yes/No)? {'Yes' if 'boxed{7}' in step else 'No'}"
        easy = "easy" in backend.decode(backend.prompt_ids(request))
        if request.stop:  # a beam-search step (it stops at the step delimiter)
            return "So \\boxed{3}" if easy else "So \\boxed{7}"
        if request.n == 4:  # the probes
            return "\\boxed{7}" if easy else f"\\boxed{{{index % 4 + 1}}}"
        return "\\boxed{7}" if easy and index % 8 == 0 else "\\boxed{3}"  # the 8 samples of SC / best-of-N

    backend.responder = respond
    return backend


def test_snell_setup_learns_beam_search_or_best_of_n_per_quantile_bin(tmp_path):
    from reasoning.benchmarks.calibrate import snell_candidates

    candidates = snell_candidates(8)
    labels = [c["strategy"] for c in candidates]
    assert labels == ["self-consistency", "best-of-n", "beam-search", "beam-search"]
    assert candidates[1]["options"] == {"n": 8, "verifier": "prm", "aggregate": "sum"}
    assert [c["options"]["width"] for c in candidates[2:]] == [4, 3]  # Snell's M = 4 and M = sqrt(N)

    items = [Item(f"e{i}", f"easy problem {i}", "7") for i in range(3)] + [
        Item(f"h{i}", f"hard problem {i}", "7") for i in range(3)]
    out = tmp_path / "snell.json"
    policy = asyncio.run(learn_policy(items, snell_backend(), candidates=candidates, quantile_bins=5, out=out))
    # Agreements 1.0 (easy) and 0.25 (hard): the quantile edges are those two, plus 0.
    assert [(r.min_agreement, r.strategy) for r in policy.bins] == [
        (1.0, "best-of-n"),     # easy: SC's vote and beam search say 3; best-of-N weighted finds 7
        (0.25, "beam-search"),  # hard: only the search finds 7
        (0.0, "beam-search"),   # no calibration problem: the nearest easier bin's choice
    ]
    assert policy.bins[0].options == {"n": 8, "verifier": "prm", "aggregate": "sum"}
    notes = policy.notes
    assert notes["expected_accuracy"] == 1.0 and notes["bin_edges"] == "quantiles of 5 (3 distinct bins)"
    by_bin = {b["min_agreement"]: b["candidates"] for b in notes["bins"]}
    assert by_bin[1.0]["beam-search(n=8,width=4)"]["accuracy"] == 0.0
    assert by_bin[1.0]["self-consistency(n=8)"]["accuracy"] == 0.0
    assert by_bin[0.25]["best-of-n(aggregate=sum,n=8,verifier=prm)"]["accuracy"] == 0.0
    assert by_bin[0.25]["self-consistency(n=8)"]["accuracy"] == 0.0
    # The learned policy routes new problems the same way.
    strategy = create("compute-optimal", policy=str(out))
    easy = solve(strategy, snell_backend(), "easy problem 9")
    hard = solve(strategy, snell_backend(), "hard problem 9")
    assert (easy.info["route"], easy.answer) == ("best-of-n(aggregate=sum,n=8,verifier=prm)", "7")
    assert (hard.info["route"], hard.answer) == (policy.bins[1].label, "7")  # the cheaper of the two widths


def test_calibrate_cli_takes_snell_candidates_and_quantile_bins(tmp_path):
    from reasoning.benchmarks.calibrate import _candidates_arg

    assert _candidates_arg("snell:16")[-1] == {"strategy": "beam-search", "options": {"n": 16, "width": 4}}
    assert len(_candidates_arg("snell:16")) == 3  # sqrt(16) = 4: one beam width
    for bad in ("snell:x", "snell:0"):
        with pytest.raises(rz.ConfigError):
            _candidates_arg(bad)
    data = tmp_path / "cal.jsonl"
    rows = [{"id": i, "problem": f"easy problem {i}", "answer": "5"} for i in range(3)]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "policy.json"
    assert main(["--dataset", str(data), "--limit", "3", "--backend", "scripted:5", "--quantile-bins", "5",
                 "--candidates", '[{"strategy": "stop"}, {"strategy": "self-consistency", "options": {"n": 2}}]',
                 "--out", str(out), "--max-tokens", "64"]) == 0
    policy = Policy.load(out)
    assert [r.min_agreement for r in policy.bins] == [1.0, 0.0]  # every probe agreed: one edge, at 1.0
    assert policy.notes["bin_edges"].startswith("quantiles of 5")
