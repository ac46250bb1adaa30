"""Tree searches (beam search, DVTS, REBASE) on a scripted tree with a scripted PRM: exactly which
nodes are expanded, kept, pruned and finished, the PRM-weighted vote of the finished paths, the
answer when the budget refuses an expansion mid-search, the trace (a span per depth, prefixes by
reference) and the CLI."""

from collections import Counter

import pytest
from reasoning.benchmarks.cli import main
from reasoning.strategies import DVTS, BeamSearch, Rebase
from reasoning.strategies.rebase import allocate

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.strategy import ProcessVerifier

# label -> (PRM score of the step, boxed answer when the step ends the solution)
STEPS = {
    "a": (0.9, None), "b": (0.2, None), "c": (0.8, None), "d": (0.5, None),
    "ap": (0.3, None), "aq": (0.95, "7"), "cp": (0.7, None), "cq": (0.6, None),
    "cpx": (0.9, "5"), "cpy": (0.4, "7"), "cqx": (0.6, "5"), "cqy": (0.5, None),
}


def step_text(label, steps=STEPS):
    answer = steps[label][1]
    return f"{label}.\n\n" if answer is None else f"{label}. So \\boxed{{{answer}}}"


def label(step):
    return step.split(".")[0]


def tree_backend(children, steps=STEPS, ramble=False):
    """Each request continues a path; its k-th sample is the k-th child (in ``children``) of
    the path's last step (cycling), whatever order the concurrent requests arrive in. With
    ``ramble``, a last step (no stop string) that gives no answer goes on and on (cut by length)."""
    backend = Scripted(completion_tokens=lambda text: max(1, len(text) // 4))
    drawn = Counter()

    def respond(request, index):
        done = backend.continuation(request)
        parent = label(done.rstrip("\n").split("\n\n")[-1]) if done else ""
        k = drawn[done]
        drawn[done] += 1
        text = step_text(children[parent][k % len(children[parent])], steps)
        return text + "and so on, " * 40 if ramble and not request.stop and text.endswith("\n\n") else text

    backend.responder = respond
    return backend


class LabelPRM(ProcessVerifier):
    """Scores each step by its label's entry in the table (aggregate: last step)."""

    name = "label-prm"

    def __init__(self, steps=STEPS):
        self.steps = steps
        self.scored = []  # (role, number of prefixes) per call: this test double's own record

    async def step_scores(self, ctx, prefixes):
        self.scored.append((ctx.role, len(prefixes)))
        return [[self.steps[label(s)][0] for s in p.steps] for p in prefixes]


def solve(strategy, backend, budget=None):
    return rz.solve("Find x.", strategy, backend, budget)


def shape(result):
    """The search tree as {label: (parent label, status, score)}."""
    nodes = result.info["tree"]
    names = {n["id"]: label(n["step"]) if n["step"] else "root" for n in nodes}
    return {names[n["id"]]: (names.get(n["parent"]), n["status"], n["score"]) for n in nodes[1:]}


BEAM_TREE = {"": ["a", "b", "c", "d"], "a": ["ap", "aq"], "c": ["cp", "cq"], "cp": ["cpx", "cpy"], "cq": ["cqx", "cqy"]}


def test_beam_search_keeps_the_best_n_over_width_and_sets_finished_paths_aside():
    backend = tree_backend(BEAM_TREE)
    prm = LabelPRM()
    result = solve(BeamSearch(n=4, width=2, prm=prm, max_steps=5), backend)
    assert shape(result) == {
        "a": ("root", "kept", 0.9), "b": ("root", "pruned", 0.2),
        "c": ("root", "kept", 0.8), "d": ("root", "pruned", 0.5),
        # aq finished (set aside); of ap, cp, cq the best two are kept
        "ap": ("a", "pruned", 0.3), "aq": ("a", "complete", 0.95), "cp": ("c", "kept", 0.7), "cq": ("c", "kept", 0.6),
        # four finished paths (n): the search stops with cqy still open
        "cpx": ("cp", "complete", 0.9), "cpy": ("cp", "complete", 0.4), "cqx": ("cq", "complete", 0.6),
        "cqy": ("cq", "kept", 0.5),
    }
    # depth 1: the root, n ways in one call; then each kept beam, width ways
    assert [r.n for r in backend.requests] == [4, 2, 2, 2, 2]
    # PRM-weighted vote: 5 (0.9 + 0.6) beats 7 (0.95 + 0.4), though 7 has the best single path
    assert result.answer == "5" and result.info["votes"] == pytest.approx({"5": 1.5, "7": 1.35})
    assert result.text == "c.\n\ncp.\n\ncpx. So \\boxed{5}"  # the best-scored path with that answer
    assert result.info["ended_by"] == "paths" and result.stopped_by is None and result.info["paths"] == 4
    assert prm.scored == [("verifier", 4), ("verifier", 4), ("verifier", 4)]  # every child, on the verifier role


def test_beam_search_scores_the_lookahead_rollout_not_the_step():
    # with lookahead 1, b's greedy continuation (bp, scored 0.99) lifts b above a
    steps = {**STEPS, "bp": (0.99, None), "az": (0.1, None), "cz": (0.1, None), "dz": (0.1, None)}
    children = {"": ["a", "b", "c", "d"], "a": ["az"], "b": ["bp"], "c": ["cz"], "d": ["dz"]}
    result = solve(BeamSearch(n=4, width=4, prm=LabelPRM(steps), max_steps=2, lookahead=1),
                   tree_backend(children, steps))
    depth_one = {k: v for k, v in shape(result).items() if v[0] == "root"}
    assert depth_one == {"a": ("root", "pruned", 0.1), "b": ("root", "kept", 0.99),
                         "c": ("root", "pruned", 0.1), "d": ("root", "pruned", 0.1)}


DVTS_STEPS = {
    "a": (0.9, None), "b": (0.2, None), "c": (0.4, None), "d": (0.6, "3"),
    "ap": (0.5, "3"), "aq": (0.7, None), "aqx": (0.8, "4"), "aqy": (0.1, "4"),
}
DVTS_TREE = {"": ["a", "b", "c", "d"], "a": ["ap", "aq"], "aq": ["aqx", "aqy"]}


def test_dvts_searches_each_subtree_greedily_until_its_best_child_finishes():
    backend = tree_backend(DVTS_TREE, DVTS_STEPS)
    result = solve(DVTS(n=4, width=2, prm=LabelPRM(DVTS_STEPS), max_steps=5), backend)
    assert shape(result) == {
        "a": ("root", "kept", 0.9), "b": ("root", "pruned", 0.2),  # subtree 0
        "c": ("root", "pruned", 0.4), "d": ("root", "complete", 0.6),  # subtree 1 ends: its best child finished
        "ap": ("a", "complete", 0.5), "aq": ("a", "kept", 0.7),  # a finished sibling is set aside, the best goes on
        "aqx": ("aq", "complete", 0.8), "aqy": ("aq", "complete", 0.1),
    }
    assert [n["subtree"] for n in result.info["tree"][1:]] == [0, 0, 1, 1, 0, 0, 0, 0]
    assert [r.n for r in backend.requests] == [2, 2, 2, 2]  # two subtrees, then only the live one
    # 3 (0.6 + 0.5) beats 4 (0.8 + 0.1): the weighted vote, not the best single path
    assert result.answer == "3" and result.text == "d. So \\boxed{3}" and result.info["ended_by"] == "paths"


def test_rebase_allocation_is_softmax_rounded_to_the_width_left():
    assert allocate([0.9, 0.1, 0.3], 3, 0.5) == [2, 0, 1]  # quotas 1.99, 0.40, 0.60
    assert allocate([0.9, 0.1, 0.3], 3, 0.05) == [3, 0, 0]  # a low temperature is nearly greedy
    assert allocate([0.5, 0.5, 0.5], 4, 1.0) == [2, 1, 1]  # equal remainders: the earlier node
    assert allocate([0.2, 0.7], 0, 1.0) == [0, 0] and allocate([], 5, 1.0) == []
    assert sum(allocate([0.1, 0.9, 0.4, 0.8, 0.3], 7, 0.3)) == 7


REBASE_STEPS = {
    "a": (0.9, None), "b": (0.1, None), "c": (0.5, "2"), "d": (0.3, None),
    "ap": (0.8, "2"), "aq": (0.6, None), "dp": (0.7, "9"), "aqx": (0.2, "9"),
}
REBASE_TREE = {"": ["a", "b", "c", "d"], "a": ["ap", "aq"], "d": ["dp"], "aq": ["aqx"]}


def test_rebase_expands_in_proportion_to_reward_until_n_paths_finish():
    backend = tree_backend(REBASE_TREE, REBASE_STEPS)
    result = solve(Rebase(n=4, balance_temperature=0.5, prm=LabelPRM(REBASE_STEPS), max_steps=5), backend)
    assert shape(result) == {
        # c finished: width 3 left for a, b, d by softmax(score / 0.5) -> 2, 0, 1
        "a": ("root", "kept", 0.9), "b": ("root", "pruned", 0.1), "c": ("root", "complete", 0.5),
        "d": ("root", "kept", 0.3),
        "ap": ("a", "complete", 0.8), "aq": ("a", "kept", 0.6), "dp": ("d", "complete", 0.7),  # width 1 left
        "aqx": ("aq", "complete", 0.2),
    }
    assert [n.get("children") for n in result.info["tree"][1:5]] == [2, 0, None, 1]
    assert [r.n for r in backend.requests] == [4, 2, 1, 1]
    assert result.answer == "2" and result.info["votes"] == pytest.approx({"2": 1.3, "9": 0.9})
    assert result.text == "a.\n\nap. So \\boxed{2}" and result.info["ended_by"] == "paths"


def test_paths_cut_at_max_steps_are_finished_and_vote():
    result = solve(BeamSearch(n=4, width=2, prm=LabelPRM(), max_steps=2, max_step_tokens=20),
                   tree_backend(BEAM_TREE, ramble=True))
    tree = shape(result)
    assert {k: v[1] for k, v in tree.items() if v[0] != "root"} == {
        "ap": "final", "aq": "complete", "cp": "final", "cq": "final"}
    assert result.info["ended_by"] == "paths" and result.answer == "7"  # the only path with an answer
    # the last allowed step was asked without the delimiter, so the solution may end there
    assert backend_stops(result) == [("\n\n",), (), ()]


def backend_stops(result):
    return [tuple(n.request["stop"]) for n in result.trace.calls()]


def test_a_refused_expansion_ends_the_search_with_the_best_finished_path():
    # two calls: the root's, then a's; c's expansion does not fit and is not started
    result = solve(BeamSearch(n=4, width=2, prm=LabelPRM(), max_steps=5), tree_backend(BEAM_TREE), rz.Budget(calls=2))
    assert result.answer == "7" and result.text == "a.\n\naq. So \\boxed{7}"
    assert result.stopped_by == "calls" and result.info["stopped_by"] == "calls" and result.info["ended_by"] == "budget"
    assert not result.info["partial"] and [c.error is not None for c in result.trace.calls()] == [False, False, True]
    assert "cp" not in shape(result)


@pytest.mark.parametrize("strategy", [
    BeamSearch(n=4, width=2, prm=LabelPRM()), DVTS(n=4, width=2, prm=LabelPRM()), Rebase(n=4, prm=LabelPRM()),
], ids=["beam-search", "dvts", "rebase"])
def test_with_no_finished_path_the_best_partial_one_is_returned(strategy):
    result = solve(strategy, tree_backend(BEAM_TREE), rz.Budget(calls=1))
    assert result.text == "a.\n\n" and result.answer is None and result.info["partial"]
    assert result.stopped_by == "calls" and result.info["ended_by"] == "budget"
    assert not any(n["depth"] > 1 for n in result.info["tree"])  # nothing was started past the refusal


def test_the_trace_shows_the_tree_a_span_per_depth_and_prefixes_by_reference():
    result = solve(BeamSearch(n=4, width=2, prm=LabelPRM(), max_steps=5), tree_backend(BEAM_TREE))
    nodes = result.trace.nodes
    depths = [n for n in nodes if n.kind == "span" and n.name.startswith("depth-")]
    assert [d.name for d in depths] == ["depth-1", "depth-2", "depth-3"]
    assert [d.info["expand"] for d in depths] == [[0], [1, 3], [7, 8]]  # node ids of the tree records
    assert [d.info["kept"] for d in depths] == [[1, 3], [7, 8], [12]] and depths[2].info["complete"] == [9, 10, 11]
    # every tree node points to the call that drew it, which sits under its depth's span
    for record in result.info["tree"][1:]:
        call = nodes[record["trace"]]
        assert call.kind == "generate" and nodes[call.parent].name == f"depth-{record['depth']}"
    # the PRM runs in its own span inside each depth
    assert [nodes[n.parent].name for n in nodes if n.name == "prm"] == ["depth-1", "depth-2", "depth-3"]
    # continuations name their prefix (trace node, length), never copy its token ids
    continued = [n for n in result.trace.calls() if n.request.get("prefix")]
    assert continued and all("prompt_token_ids" not in n.request for n in continued)
    last = continued[-1].request["prefix"]
    assert (nodes[last["node"]].kind, last["steps"], last["chars"]) == ("generate", 2, len("c.\n\ncq.\n\n"))
    # so no list in the trace or the tree is as long as the prompt's token ids (a copied prefix)
    prompt_ids = len(Scripted().prompt_ids(backend_request(result)))
    assert max_list(result.trace.to_list()) < prompt_ids and max_list(result.info["tree"]) < prompt_ids


def backend_request(result):
    from reasoning.types import GenerationRequest, Message

    first = result.trace.calls()[0].request
    return GenerationRequest(messages=tuple(Message(m["role"], m["content"]) for m in first["messages"]))


def max_list(value):
    """Length of the longest list anywhere in a JSON value."""
    if isinstance(value, list):
        return max([len(value), *(max_list(v) for v in value)])
    if isinstance(value, dict):
        return max([0, *(max_list(v) for v in value.values())])
    return 0


def test_the_cli_lists_each_search_and_its_options(capsys):
    for name in ("beam-search", "dvts", "rebase"):
        assert main(["strategies", name]) == 0
        out = capsys.readouterr().out
        assert "prm" in out and "max_step_tokens" in out and "lookahead" in out
    assert main(["strategies", "rebase"]) == 0 and "balance_temperature" in capsys.readouterr().out
    assert main(["strategies"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("beam-search", "dvts", "rebase"))


def test_options_are_checked():
    with pytest.raises(ValueError, match="width must be at most n"):
        BeamSearch(n=2, width=4)
    with pytest.raises(ValueError, match="width must be at most n"):
        DVTS(n=2, width=4)
    with pytest.raises(ValueError):
        Rebase(balance_temperature=0.0)
    assert BeamSearch().describe()["prm"] == "prm"  # the LLM PRM by default
    assert Rebase(prm=LabelPRM()).describe()["prm"] == "label-prm"  # a process reward by its name, not its repr


@pytest.mark.parametrize("name", ["beam-search", "dvts", "rebase", "ets"])
def test_each_search_runs_from_the_cli_with_its_default_llm_prm(name, tmp_path):
    import json

    from reasoning.benchmarks.cli import main

    out = tmp_path / name
    assert main(["run", "--dataset", "gsm8k", "--limit", "1", "--strategy", name, "--n", "4", "--backend", "scripted:7",
                 "--out", str(out)]) == 0
    trace = json.loads((out / "traces.jsonl").read_text().splitlines()[0])["trace"]
    roles = {n["info"].get("role") for n in trace if n["kind"] == "generate"}
    assert roles == {"generator", "verifier"}  # the default LLM PRM judged steps on the verifier role
    assert any(n["kind"] == "span" and n["name"].startswith("depth-") for n in trace)
