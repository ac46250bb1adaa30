"""ETS (strategies/ets.py) on a scripted tree with a scripted PRM: the exact tree it grows, that it
keeps fewer distinct tree nodes than REBASE at the same width, the coverage term, the answer when
the budget refuses an expansion, the trace and the CLI name."""

from collections import Counter

import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.benchmarks.cli import main
from reasoning.strategies import registry
from reasoning.strategies.ets import ETS
from reasoning.strategies.rebase import Rebase
from reasoning.strategy import ProcessVerifier

# label -> (PRM score of the step, boxed answer when the step ends the solution)
STEPS = {
    "a": (0.9, None), "b": (0.85, None), "c": (0.3, None), "d": (0.3, None),
    "ap": (0.9, None), "aq": (0.8, None), "bp": (0.85, None), "bq": (0.3, None),
    "apx": (0.9, "5"), "apy": (0.4, "7"), "aqx": (0.6, "5"), "aqy": (0.5, "5"), "bpx": (0.95, "7"), "bpy": (0.2, "7"),
}
TREE = {"": ["a", "b", "c", "d"], "a": ["ap", "aq"], "b": ["bp", "bq"], "ap": ["apx", "apy"], "aq": ["aqx", "aqy"],
        "bp": ["bpx", "bpy"]}


def label(step):
    return step.split(".")[0]


def step_text(name, steps):
    answer = steps[name][1]
    return f"{name}.\n\n" if answer is None else f"{name}. So \\boxed{{{answer}}}"


def tree_backend(children, steps=STEPS, text=step_text):
    """The k-th sample continuing a path is the k-th child of its last step (cycling), whatever
    order the concurrent requests arrive in."""
    backend = Scripted(completion_tokens=lambda out: max(1, len(out) // 4))
    drawn = Counter()

    def respond(request, index):
        done = backend.continuation(request)
        parent = label(done.rstrip("\n").split("\n\n")[-1]) if done else ""
        k = drawn[done]
        drawn[done] += 1
        return text(children[parent][k % len(children[parent])], steps)

    backend.responder = respond
    return backend


class LabelPRM(ProcessVerifier):
    name = "label-prm"

    def __init__(self, steps=STEPS):
        self.steps = steps

    async def step_scores(self, ctx, prefixes):
        return [[self.steps[label(s)][0] for s in p.steps] for p in prefixes]


def shape(result):
    """The search tree as {label: (parent label, status)}."""
    nodes = result.info["tree"]
    names = {n["id"]: label(n["step"]) if n["step"] else "root" for n in nodes}
    return {names[n["id"]]: (names.get(n["parent"]), n["status"]) for n in nodes[1:]}


def kept_nodes_per_depth(result):
    """Distinct tree nodes (besides the root) on the paths of the nodes each depth kept."""
    nodes = {n["id"]: n for n in result.info["tree"]}
    per_depth = Counter()
    seen = {}
    for n in nodes.values():
        if n["status"] != "kept":
            continue
        ids, cur = set(), n
        while cur["parent"] is not None:
            ids.add(cur["id"])
            cur = nodes[cur["parent"]]
        seen.setdefault(n["depth"], set()).update(ids)
    for depth, ids in seen.items():
        per_depth[depth] = len(ids)
    return [per_depth[d] for d in sorted(per_depth)]


def solve(strategy, backend, budget=None):
    return rz.solve("Find x.", strategy, backend, budget)


def test_ets_prunes_to_siblings_that_share_their_prefix():
    backend = tree_backend(TREE)
    result = solve(ETS(n=4, lambda_kv=1.0, lambda_coverage=0.0, prm=LabelPRM(), max_steps=5), backend)
    assert shape(result) == {
        # depth 1: REBASE's split is a:2, b:2; keeping both is worth it (no shared nodes yet)
        "a": ("root", "kept"), "b": ("root", "kept"), "c": ("root", "pruned"), "d": ("root", "pruned"),
        # depth 2: REBASE would give ap:2 aq:1 bp:1 (5 nodes: a, b, ap, aq, bp); ETS keeps the
        # siblings ap, aq (3 nodes: a, ap, aq) and splits the width 2:2 between them
        "ap": ("a", "kept"), "aq": ("a", "kept"), "bp": ("b", "pruned"), "bq": ("b", "pruned"),
        "apx": ("ap", "complete"), "apy": ("ap", "complete"), "aqx": ("aq", "complete"), "aqy": ("aq", "complete"),
    }
    assert [r.n for r in backend.requests] == [4, 2, 2, 2, 2]
    assert result.info["kv_nodes"] == [2, 3] and result.info["kv_nodes_rebase"] == [2, 5]
    # PRM-weighted vote of the four paths: 5 (0.9 + 0.6 + 0.5) over 7 (0.4)
    assert result.answer == "5" and result.info["votes"] == pytest.approx({"5": 2.0, "7": 0.4})
    assert result.text == "a.\n\nap.\n\napx. So \\boxed{5}"
    assert result.info["ended_by"] == "paths" and result.stopped_by is None


def test_ets_retains_fewer_distinct_nodes_than_rebase_at_the_same_width():
    ets = solve(ETS(n=4, lambda_kv=1.0, lambda_coverage=0.0, prm=LabelPRM(), max_steps=5), tree_backend(TREE))
    rebase = solve(Rebase(n=4, prm=LabelPRM(), max_steps=5), tree_backend(TREE))
    assert shape(rebase)["bp"] == ("b", "kept")  # REBASE keeps the lone good node in the other branch
    assert kept_nodes_per_depth(ets) == [2, 3]
    assert kept_nodes_per_depth(rebase) == [2, 5]
    # lambda_kv = 0 (and no coverage): ETS keeps what REBASE keeps
    plain = solve(ETS(n=4, lambda_kv=0.0, lambda_coverage=0.0, prm=LabelPRM(), max_steps=5), tree_backend(TREE))
    assert shape(plain) == shape(rebase) and plain.answer == rebase.answer


DUP_STEPS = {"a1": (0.9, None), "a2": (0.9, None), "b": (0.9, None),
             "x": (0.9, "1"), "y": (0.8, "1"), "z": (0.7, "2")}


def same_text(name, steps):
    """a1 and a2 write the same step: they fall into one cluster."""
    if name in ("a1", "a2"):
        return f"{name}. Let the unknown be x and add the two equations together.\n\n"
    return step_text(name, steps)


def test_coverage_keeps_one_node_per_cluster_instead_of_a_duplicate():
    children = {"": ["a1", "a2", "b"], "a1": ["x"], "a2": ["y"], "b": ["z"]}
    options = {"n": 3, "lambda_kv": 1.5, "prm": LabelPRM(DUP_STEPS), "max_steps": 2, "embeddings": "ngrams",
               "cluster_distance": 0.3}
    alone = solve(ETS(lambda_coverage=0.0, **options), tree_backend(children, DUP_STEPS, same_text))
    assert sum(s == "kept" for _, s in shape(alone).values() if _ == "root") == 1
    covered = solve(ETS(lambda_coverage=1.0, **options), tree_backend(children, DUP_STEPS, same_text))
    first = {k: v[1] for k, v in shape(covered).items() if v[0] == "root"}
    assert first["b"] == "kept" and sorted([first["a1"], first["a2"]]) == ["kept", "pruned"]
    clusters = {label(n["step"]): n["cluster"] for n in covered.info["tree"][1:4]}
    assert clusters["a1"] == clusters["a2"] != clusters["b"]
    depth_one = next(n for n in covered.trace.nodes if n.name == "depth-1")
    assert depth_one.info["clusters"] == 2 and depth_one.info["clusters_kept"] == 2


def test_an_expansion_the_budget_refuses_is_not_started_and_the_best_partial_path_answers():
    backend = tree_backend(TREE)
    # room for the first expansion (one call) only
    result = solve(ETS(n=4, lambda_kv=1.0, lambda_coverage=0.0, prm=LabelPRM(), max_steps=5), backend,
                   rz.Budget(calls=1))
    assert [r.n for r in backend.requests] == [4]
    assert result.info["ended_by"] == "budget" and result.info["stopped_by"] == "calls"
    assert result.stopped_by == "calls"
    assert result.info["partial"] and result.text == "a.\n\n" and result.answer is None


def test_the_trace_has_a_span_per_depth_with_kept_and_pruned_nodes():
    result = solve(ETS(n=4, lambda_kv=1.0, lambda_coverage=0.0, prm=LabelPRM(), max_steps=5), tree_backend(TREE))
    spans = [n for n in result.trace.nodes if n.name.startswith("depth-")]
    assert [s.name for s in spans] == ["depth-1", "depth-2", "depth-3"]
    ids = {label(n["step"]): n["id"] for n in result.info["tree"][1:]}
    assert spans[1].info["kept"] == {ids["ap"]: 2, ids["aq"]: 2}
    assert spans[1].info["pruned"] == [ids["bp"], ids["bq"]]
    assert (spans[1].info["kv_nodes"], spans[1].info["kv_nodes_rebase"], spans[1].info["candidate_nodes"]) == (3, 5, 6)


def test_ets_is_registered_by_name_with_typed_options():
    cls = registry.get("ets")
    assert cls is ETS and cls.size_option == "n"
    strategy = registry.create("ets", n=6, lambda_kv=0.5, prm=LabelPRM())
    assert (strategy.n, strategy.lambda_kv, strategy.lambda_coverage, strategy.embeddings) == (6, 0.5, 1.4, "auto")
    with pytest.raises(ValueError):
        ETS(lambda_kv=-1.0, prm=LabelPRM())


def test_the_cli_lists_ets_and_its_options(capsys):
    assert main(["strategies", "ets"]) == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("lambda_kv", "lambda_coverage", "embeddings", "prm", "max_step_tokens"))
    assert main(["strategies"]) == 0 and "ets" in capsys.readouterr().out


def test_with_the_papers_weights_coverage_of_all_different_steps_keeps_the_lone_branch():
    # lambda_kv 1, lambda_coverage 1.4 (the authors' settings), n-gram clusters: at depth 2 the
    # four steps are four clusters, each worth 1.4 / 4, more than bp's extra nodes cost (2 / 6)
    result = solve(ETS(n=4, prm=LabelPRM(), max_steps=5, embeddings="ngrams"), tree_backend(TREE))
    rebase = solve(Rebase(n=4, prm=LabelPRM(), max_steps=5), tree_backend(TREE))
    assert shape(result) == shape(rebase) and result.info["kv_nodes"] == [2, 5]
    depth_two = next(n for n in result.trace.nodes if n.name == "depth-2")
    assert (depth_two.info["clusters"], depth_two.info["clusters_kept"]) == (4, 3)
    assert result.answer == "5" and result.info["votes"] == pytest.approx({"5": 1.5, "7": 1.35})
