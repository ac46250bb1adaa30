"""ETS's node-selection integer program (strategies/ets_select.py): exact selections on tiny trees."""

import pytest

from reasoning.strategies.ets_select import retained_nodes, select_nodes

# root -> A -> a1, a2;  root -> B -> b1;  root -> C -> c1   (paths name each leaf's nodes)
SHARED = [("A", "a1"), ("A", "a2"), ("B", "b1"), ("C", "c1")]


def test_two_leaves_sharing_a_parent_are_cheaper_to_keep_than_two_in_different_branches():
    # Equal rewards; 7 nodes at lambda_kv / 7 each: one leaf 1/4 - 2/7, the siblings 2/4 - 3/7,
    # b1 + c1 2/4 - 4/7, three leaves 3/4 - 5/7, all four 1 - 7/7.
    chosen = select_nodes(SHARED, [1, 1, 1, 1], lambda_kv=1.0)
    assert chosen.keep == (0, 1)
    assert (chosen.retained_nodes, chosen.candidate_nodes) == (3, 7)


def test_a_much_better_leaf_in_another_branch_is_still_kept():
    chosen = select_nodes(SHARED, [1, 1, 6, 0], lambda_kv=1.0)
    assert chosen.keep == (2,)  # 6/8 - 2/7 beats b1 with a sibling pair: 8/8 - 5/7
    assert chosen.retained_nodes == 2


def test_lambda_zero_keeps_exactly_the_leaves_with_width_the_top_by_reward():
    assert select_nodes(SHARED, [3, 0, 2, 1], lambda_kv=0.0).keep == (0, 2, 3)
    assert select_nodes(SHARED, [1, 1, 1, 1], lambda_kv=0.0).keep == (0, 1, 2, 3)


def test_a_large_penalty_keeps_one_leaf_the_best():
    assert select_nodes(SHARED, [1, 2, 3, 4], lambda_kv=50.0).keep == (3,)


def test_coverage_keeps_one_leaf_per_cluster_when_rewards_tie():
    paths = [("A", "a1"), ("B", "b1"), ("C", "c1"), ("D", "d1")]  # no sharing: 2 nodes per leaf
    # lambda_kv 2 over 8 nodes: each leaf costs 1/2 and brings 1/4: without coverage, one leaf.
    assert len(select_nodes(paths, [1, 1, 1, 1], lambda_kv=2.0).keep) == 1
    # Coverage 1 over 2 clusters: a cluster's first leaf brings 1/4 + 1/2 - 1/2 > 0, a second one < 0.
    chosen = select_nodes(paths, [1, 1, 1, 1], lambda_kv=2.0, lambda_coverage=1.0, clusters=[0, 0, 1, 1])
    assert len(chosen.keep) == 2 and {chosen.clusters[i] for i in chosen.keep} == {0, 1}
    assert chosen.covered == 2


def test_coverage_prefers_a_diverse_leaf_over_a_better_duplicate():
    paths = [("A", "a1"), ("B", "b1"), ("C", "c1")]
    weights = [3, 2, 1]
    assert select_nodes(paths, weights, lambda_kv=1.5).keep == (0,)
    # a1 and b1 say the same thing: the diverse c1 joins instead of b1.
    chosen = select_nodes(paths, weights, lambda_kv=1.5, lambda_coverage=1.0, clusters=[0, 0, 1])
    assert chosen.keep == (0, 2)


def test_coverage_is_ignored_without_its_weight():
    assert select_nodes(SHARED, [1, 1, 1, 1], lambda_kv=1.0, clusters=[0, 1, 2, 3]).keep == (0, 1)


def test_deeper_paths_count_every_shared_ancestor_once():
    paths = [("A", "A1", "x"), ("A", "A1", "y"), ("A", "A2", "z")]
    assert retained_nodes(paths, [0, 1]) == 4 and retained_nodes(paths, [0, 2]) == 5
    assert retained_nodes(paths, [0, 1, 2]) == 6


def test_empty_and_invalid_inputs():
    assert select_nodes([], [], lambda_kv=1.0).keep == ()
    with pytest.raises(ValueError, match="2 paths but 1 weights"):
        select_nodes([("a",), ("b",)], [1.0], lambda_kv=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        select_nodes([("a",)], [1.0], lambda_kv=-1.0)
