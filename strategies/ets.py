"""ETS: efficient tree search (Hooper et al. 2025), REBASE pruned to share the KV cache.

"ETS: Efficient Tree Search for Inference-Time Scaling" adds a pruning step to REBASE that keeps
the kept tree small, so the paths share more of their KV cache (the authors report 1.8x less KV
cache and 1.4x more throughput than REBASE at matched accuracy).

A width budget of ``n`` paths, as in REBASE (``strategies/rebase.py``). The root gets ``n``
first steps; the PRM scores them. At every depth, finished children are collected as paths and
the width left is ``n`` minus the paths collected. Then, over the unfinished nodes of the depth:

1. REBASE's allocation of the width left (softmax of PRM scores over ``balance_temperature``,
   rounded to whole children) gives each node its outcome weight;
2. the newest steps of the nodes are embedded and clustered (``strategies/embeddings.py``:
   all-MiniLM-L6-v2 when its package is installed, else hashed n-grams; average-linkage cosine
   clusters cut at ``cluster_distance``);
3. an integer program (``strategies/ets_select.py``) keeps the nodes that maximise their share
   of the width, plus ``lambda_coverage`` x the share of clusters with a kept node, minus
   ``lambda_kv`` x the share of the depth's tree nodes (every step on a node's path) that the
   kept nodes need: siblings are cheap to keep together, a lone node in another branch costs its
   whole branch;
4. the width left is split among the kept nodes by REBASE's allocation again; a node given no
   children is pruned.

The search ends when ``n`` paths are finished, at ``max_steps``, when no node is left, or when
the budget refuses an expansion (each expansion is reserved before it starts; the answer then
comes from the finished paths, else the best partial one, with ``stopped_by``). The answer is
the PRM-weighted vote of the finished paths (``strategies/tree.py``). ``info["kv_nodes"]`` has,
per depth, the distinct tree nodes the kept nodes need (what a prefix cache holds for the next
expansion) and ``info["kv_nodes_rebase"]`` what REBASE's allocation alone would have kept on the
same frontier; each depth's trace span lists the kept and pruned nodes and the clusters.
"""

from __future__ import annotations

from pydantic import Field

from reasoning.context import Context
from reasoning.strategy import Outcome

from .embeddings import EmbedderName, cluster, embed, embedder
from .ets_select import retained_nodes, select_nodes
from .rebase import allocate
from .registry import register
from .tree import Node, StepSearch, Tree, assign_children, expand, finish, note, step_config, width_search_ended


@register("ets")
class ETS(StepSearch):
    n: int = Field(8, ge=1, description="width budget: paths to finish (the root gets n first steps)")
    lambda_kv: float = Field(1.0, ge=0, description="weight of the KV cost: share of the depth's tree nodes kept")
    lambda_coverage: float = Field(1.4, ge=0, description="weight of semantic coverage: share of step clusters kept")
    balance_temperature: float = Field(0.2, gt=0, description="T in softmax(score / T): lower favours the best more")
    embeddings: EmbedderName = Field("auto", description="step embeddings: minilm, ngrams, auto (minilm if installed)")
    cluster_distance: float = Field(0.05, ge=0, le=2, description="cosine distance within which steps share a cluster")

    async def run(self, ctx: Context) -> Outcome:
        tree = Tree(step_config(self))
        frontier, counts, ended_by = [tree.root], [self.n], "max_steps"
        kv_nodes: list[int] = []
        kv_nodes_rebase: list[int] = []
        for depth in range(1, self.max_steps + 1):
            expanding = dict(zip([f.id for f in frontier], counts, strict=True))
            async with ctx.span(f"depth-{depth}", depth=depth, expand=expanding) as sub:
                children = [c for group in await expand(sub, tree, frontier, counts, self.prm) for c in group]
                _, active = tree.settle(children)
                width = self.n - len(tree.finished())
                counts, facts = await self.prune(sub, tree, active, width)
                frontier, counts = assign_children(active, counts)
                note(sub, width=width, kept=dict(zip([f.id for f in frontier], counts, strict=True)),
                     pruned=[a.id for a in active if not a.info["children"]], **facts)
                if active and width > 0:
                    kv_nodes.append(facts["kv_nodes"])
                    kv_nodes_rebase.append(facts["kv_nodes_rebase"])
            if stop := width_search_ended(ctx, width, frontier):
                ended_by = stop
                break
        return finish(ctx, tree, ended_by, kv_nodes=kv_nodes, kv_nodes_rebase=kv_nodes_rebase)

    async def prune(self, ctx: Context, tree: Tree, active: list[Node], width: int) -> tuple[list[int], dict]:
        """Children for each active node: ETS's program picks the nodes, REBASE splits the width."""
        if not active or width <= 0:
            return [0] * len(active), {}
        scores = [a.score or 0.0 for a in active]
        rebase = allocate(scores, width, self.balance_temperature)
        paths = [path(tree, a) for a in active]
        labels = None
        if self.lambda_coverage > 0 and len(active) > 1:
            steps = [a.prefix.steps[-1] for a in active]
            labels = cluster(await embed(ctx, steps, embedder(self.embeddings)), self.cluster_distance)
            for node, label in zip(active, labels, strict=True):
                node.info["cluster"] = label
        chosen = select_nodes(paths, rebase, lambda_kv=self.lambda_kv, lambda_coverage=self.lambda_coverage,
                              clusters=labels)
        counts = [0] * len(active)
        for i, count in zip(chosen.keep, allocate([scores[i] for i in chosen.keep], width, self.balance_temperature),
                            strict=True):
            counts[i] = count
        kept = [i for i, count in enumerate(counts) if count]
        return counts, {
            "kv_nodes": retained_nodes(paths, kept),
            "kv_nodes_rebase": retained_nodes(paths, [i for i, count in enumerate(rebase) if count]),
            "candidate_nodes": chosen.candidate_nodes,
            "clusters": len(set(labels)) if labels else None,
            "clusters_kept": len({labels[i] for i in kept}) if labels else None,
        }


def path(tree: Tree, node: Node) -> tuple[int, ...]:
    """Ids of the nodes from the first step down to ``node`` (the root, the prompt, is left out)."""
    ids = []
    current: Node | None = node
    while current is not None and current.parent is not None:
        ids.append(current.id)
        current = tree.nodes[current.parent]
    return tuple(reversed(ids))
