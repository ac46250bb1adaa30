"""ETS's node selection (Hooper et al. 2025, "ETS: Efficient Tree Search for Inference-Time
Scaling"): which frontier nodes to keep, as a small integer program solved with
``scipy.optimize.milp``; then REBASE's width allocation among the kept ones.

The frontier is N leaves; leaf i needs the nodes on its path (every step from the first to
itself; the prompt is shared by all and not counted). V is the union of those paths. Binary
variables: ``x_i`` (keep leaf i), ``z_v`` (node v is retained: its KV stays in the cache) and,
with a coverage term, ``c_k`` (semantic cluster k has a kept leaf). The program is

    maximise    sum_i O_i x_i  -  lambda_kv / |V| * sum_v z_v  +  lambda_coverage / K * sum_k c_k
    subject to  z_v >= x_i            for every leaf i and node v on its path
                z_v <= sum_{i: v on path i} x_i   (a node no kept leaf needs is dropped)
                c_k <= sum_{i in cluster k} x_i
                sum_i x_i >= 1

``O_i`` is the leaf's share of the width under REBASE's allocation (softmax of the rewards over
a temperature, rounded to whole children; the caller passes the allocation as ``weights``,
normalised here to sum to 1), so the reward term is the part of the width a leaf would have had.
Clusters group the leaves' newest steps by embedding similarity (``strategies/embeddings.py``).
This is the paper's formulation and the authors' ``softmax_costmodel`` (uniform node cost 1/|V|;
coverage weight divided by the number of clusters), solved to optimality (HiGHS, no gap). Three
differences: the authors' guard that turns ``lambda_kv = 0`` into a small reward for keeping
nodes is not copied (at 0 the program keeps exactly the leaves REBASE gives width to, the top
ones by reward; a negligible tie-break cost prefers fewer nodes); the authors count the root in
|V| (a constant); and REBASE's rounding is this project's (largest remainders, ``rebase.allocate``)
where the authors round up greedily from the best leaf.

The strategy (``strategies/ets.py``) then splits the width among the kept leaves as REBASE does.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

# Added to each node's cost: among (nearly) equal objectives the program keeps fewer nodes. Below
# the smallest reward share (1 child of 256 over a 20-node path is 2e-4), above HiGHS's 1e-6 gap.
TIE_BREAK = 1e-5


@dataclass(frozen=True, slots=True)
class Selection:
    keep: tuple[int, ...]  # indices of the kept leaves, ascending
    retained_nodes: int  # distinct tree nodes (besides the prompt) the kept leaves need
    candidate_nodes: int  # distinct tree nodes all the leaves would need (|V|)
    clusters: tuple[int, ...]  # cluster of each leaf (all 0 without a coverage term)
    covered: int  # clusters with a kept leaf


def select_nodes(
    paths: Sequence[Sequence[Hashable]],
    weights: Sequence[float],
    *,
    lambda_kv: float,
    lambda_coverage: float = 0.0,
    clusters: Sequence[int] | None = None,
) -> Selection:
    """Solve ETS's program for leaves whose node paths are ``paths`` (ids of the nodes from the
    first step down to the leaf itself) and outcome weights ``weights`` (>= 0: REBASE's children
    per leaf). ``clusters[i]`` is leaf i's semantic cluster (used when ``lambda_coverage`` > 0)."""
    n = len(paths)
    if n != len(weights):
        raise ValueError(f"{n} paths but {len(weights)} weights")
    if any(w < 0 for w in weights) or lambda_kv < 0 or lambda_coverage < 0:
        raise ValueError("weights, lambda_kv and lambda_coverage must be >= 0")
    if n == 0:
        return Selection((), 0, 0, (), 0)
    from scipy.optimize import Bounds, LinearConstraint, milp  # on first use: importing scipy takes a while
    from scipy.sparse import lil_array

    labels = tuple(clusters) if clusters is not None and lambda_coverage > 0 else (0,) * n
    if len(labels) != n:
        raise ValueError(f"{n} paths but {len(labels)} cluster labels")
    nodes = list(dict.fromkeys(v for path in paths for v in path))
    index = {v: j for j, v in enumerate(nodes)}
    groups = sorted(set(labels))
    m, k = len(nodes), len(groups) if lambda_coverage > 0 else 0

    total = sum(weights) or 1.0
    node_cost = lambda_kv / m + TIE_BREAK
    # minimise the negated objective; variables: x (n), z (m), c (k)
    c = np.concatenate([-np.asarray(weights, float) / total, np.full(m, node_cost),
                        np.full(k, -lambda_coverage / max(k, 1))])
    rows: list[tuple[dict[int, float], float, float]] = []
    users: dict[int, list[int]] = {j: [] for j in range(m)}
    for i, path in enumerate(paths):
        for v in dict.fromkeys(path):
            users[index[v]].append(i)
            rows.append(({n + index[v]: 1.0, i: -1.0}, 0.0, np.inf))  # z_v >= x_i
    for j, leaves in users.items():
        rows.append(({n + j: 1.0, **{i: -1.0 for i in leaves}}, -np.inf, 0.0))  # z_v <= sum x_i
    for g, label in enumerate(groups[:k]):
        members = [i for i in range(n) if labels[i] == label]
        rows.append(({n + m + g: 1.0, **{i: -1.0 for i in members}}, -np.inf, 0.0))  # c_k <= sum x_i
    rows.append(({i: 1.0 for i in range(n)}, 1.0, np.inf))  # keep at least one
    a = lil_array((len(rows), n + m + k))
    for r, (coefs, _, _) in enumerate(rows):
        for col, value in coefs.items():
            a[r, col] = value
    result = milp(
        c, integrality=np.ones(n + m + k), bounds=Bounds(0, 1),
        constraints=LinearConstraint(a.tocsr(), [lo for _, lo, _ in rows], [hi for _, _, hi in rows]),
        options={"mip_rel_gap": 0.0},  # the optimum, not one within 0.01 % (the programs are small)
    )
    if result.x is None:  # cannot happen for this program (keeping everything is feasible)
        raise RuntimeError(f"ETS node selection found no solution: {result.message}")
    keep = tuple(i for i in range(n) if result.x[i] > 0.5)
    return Selection(keep, retained_nodes(paths, keep), m, labels, len({labels[i] for i in keep}))


def retained_nodes(paths: Sequence[Sequence[Hashable]], keep: Sequence[int]) -> int:
    """Distinct tree nodes the leaves ``keep`` need (the KV a shared-prefix cache holds for them)."""
    return len({v for i in keep for v in paths[i]})
