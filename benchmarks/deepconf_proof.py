"""DeepConf online against self-consistency, on one engine: tokens, accuracy, wall time, and
whether the model's confidence separates right traces from wrong ones (issue 21).

For each dataset, alternating rounds of two runs over the same problems (prefix cache reset
between runs):

- **pool**: ``deepconf`` offline with ``n`` traces: ``n`` complete samples with their token
  confidences (top-20 logprobs). Self-consistency at k is the majority vote of its first k
  traces; its tokens are theirs. From the same traces: DeepConf offline at k, and DeepConf
  online *replayed* (the threshold from the first ``warmup`` traces, each later trace cut at
  the token where ``ConfidenceStop.stops_at`` fires): what the engine should do.
- **online**: ``deepconf`` online with ``n`` traces: ``warmup`` full traces, then ``n - warmup``
  stopped in the engine when their group confidence drops. DeepConf online at k uses the
  warm-up and the first ``k - warmup`` online traces (they are exchangeable).

Both runs ask for top-20 logprobs, so their wall times differ only by the stopping. Tokens are
generated (completion) tokens, as the paper counts them. Per trace the JSON keeps the vote
key, correctness, tokens and lowest group confidence, so every figure is recomputed from it
(``--table``). Histograms: lowest group confidence of right vs wrong pool traces, and the
AUROC of that confidence as a right-vs-wrong score (0.5: no signal).

    python -m reasoning.benchmarks.deepconf_proof --backend vllm:/root/model \\
        --dataset gsm8k:200 --dataset math500:100 --n 256 --window 128 --out deepconf.json

Shards. With top-20 logprobs one engine is bound by its frontend's CPU (on an H200 ~11k generated
tokens/s against ~34k without logprobs), not by the GPU, so K engines on one GPU (each with a
share of its memory, ``--engine '{"gpu_memory_utilization": 0.2}'``) run K processes'
frontends side by side. ``--shard I/K`` solves problems I, I+K, I+2K, ... of each dataset (the
same rounds, the same phase order); ``--merge OUT A.json B.json ...`` joins the shards' reports:
a phase's problems are the union, its generated tokens the sum, its wall time the slowest
shard's (the shards run their phases at the same time), and the summary is recomputed. The
merged figures are those of one unsharded run on the union of the problems, except wall time.
vLLM profiles free GPU memory while an engine starts, so give each engine a fixed KV cache and
start them some seconds apart. As run on two H200s (2026-11-29, RESULTS.md: eight engines, ~80k
generated tokens/s; ``--pool-only`` runs only the pool):

    for i in 0 1 2 3 4 5 6 7; do CUDA_VISIBLE_DEVICES=$((i%2)) python -m reasoning.benchmarks.deepconf_proof \\
        --shard $i/8 --engine '{"gpu_memory_utilization": 0.2, "kv_cache_memory_bytes": 12000000000,
        "max_num_seqs": 1024}' ... --out s$i.json & if [ $((i%2)) = 1 ]; then sleep 8; fi; done; wait
    python -m reasoning.benchmarks.deepconf_proof --merge deepconf.json s0.json s1.json ... s7.json

Wall time with shards: an engine with fewer traces than its ``max_num_seqs`` (12-13 problems of
64 traces each above) runs them all in one batch, so a run lasts about its longest trace, and
DeepConf online (the warm-up, then the stopped traces) is two such stages: there online generated
~37 % fewer tokens yet took 0.92-1.32 times the pool's time (``paired_rounds``; RESULTS.md). Fewer
tokens turn into less time on a saturated engine (one engine, 100 problems: 110.5 s against 168.0 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from reasoning import Budget, Problem, asolve_many
from reasoning.answers import normalize_answer
from reasoning.backends import from_spec
from reasoning.context import Sampling
from reasoning.strategies.deepconf import DeepConf, lowest_group_confidence, percentile
from reasoning.strategies.voting import weighted_tally
from reasoning.types import ConfidenceStop

from .datasets import load_items
from .provenance import command
from .run import grade_item, solve_options


def _traces(result) -> list[dict[str, Any]]:
    """Every completion of a result, in sample order, from its trace."""
    out = []
    for node in result.trace.nodes:
        if node.kind == "generate":
            out.extend(node.completions)
    return out


async def run_phase(backend, items, strategy: DeepConf, args, label: str) -> dict[str, Any]:
    if hasattr(backend, "reset_prefix_cache"):
        await backend.reset_prefix_cache()
    problems: list[dict[str, Any] | None] = [None] * len(items)
    graded: dict[tuple[int, str], bool] = {}

    async def on_result(index: int, result) -> None:
        item = items[index]
        info = result.info
        keys, correct = [], []
        for answer in info["answers"]:
            key = normalize_answer(answer) if answer is not None else None
            if key and (index, key) not in graded:
                ok, _ = await grade_item(item, answer, [])
                graded[(index, key)] = bool(ok)
            keys.append(key or None)
            correct.append(graded.get((index, key), False) if key else False)
        row = {"id": item.id, "keys": keys, "correct": correct, "tokens": info["tokens"],
               "min_conf": [None if c is None else round(c, 4) for c in info["min_conf"]],
               "stopped": info["stopped"], "threshold": info.get("threshold"),
               "prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens}
        if label == "pool":  # replay the online rule on the complete traces, per keep percent
            confidences = [c.get("token_confidences") or [] for c in _traces(result)]
            warm = [lowest_group_confidence(c, args.window) for c in confidences[: args.warmup]]
            warm = [c for c in warm if c is not None]
            row["replay"] = {}
            for keep in args.keep_percent:
                if not warm:
                    continue
                threshold = percentile(warm, 100 - keep)
                rule = ConfidenceStop(threshold, args.window, 20)
                stops = []
                for i, c in enumerate(confidences):
                    at = rule.stops_at(c) if i >= args.warmup else None
                    stops.append(None if at is None else at + 1)
                row["replay"][f"{keep:g}"] = {"threshold": threshold, "stop_tokens": stops}
        problems[index] = row

    sampling = Sampling(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p)
    started = time.perf_counter()
    await asolve_many([Problem(i.problem, i.id, i.metadata) for i in items], strategy, backend, Budget(),
                      concurrency=args.concurrency, on_result=on_result, sampling=sampling,
                      **solve_options(items[0].kind))
    wall = time.perf_counter() - started
    generated = sum(p["completion_tokens"] for p in problems if p)
    return {"label": label, "describe": strategy.describe(), "wall_s": round(wall, 2),
            "generated_tokens": generated, "problems": problems}


# -- analysis (pure: from the JSON) -------------------------------------------------------


def _vote(keys: Sequence[str | None], correct: Sequence[bool], weights: Sequence[float] | None = None) -> bool:
    """Whether the (weighted) majority over stored vote keys is a right answer, as
    ``voting.majority`` votes (ties to the first seen)."""
    tally, first = weighted_tally(keys, weights)
    if not tally:
        return False
    return correct[first[max(tally, key=tally.__getitem__)]]


def sc_at(problem: dict[str, Any], k: int) -> tuple[bool, int]:
    return _vote(problem["keys"][:k], problem["correct"][:k]), sum(problem["tokens"][:k])


def offline_at(problem: dict[str, Any], k: int, keep_percent: float) -> tuple[bool, int]:
    conf = problem["min_conf"][:k]
    scored = [c for c in conf if c is not None]
    if not scored:
        return False, sum(problem["tokens"][:k])
    bar = percentile(scored, 100 - keep_percent)
    keys = [key if c is not None and c >= bar else None for key, c in zip(problem["keys"][:k], conf, strict=True)]
    return _vote(keys, problem["correct"][:k], [c or 0.0 for c in conf]), sum(problem["tokens"][:k])


def online_at(problem: dict[str, Any], k: int, warmup: int) -> tuple[bool, int]:
    """The online run's vote and tokens with its first k traces (warm-up first)."""
    bar = problem["threshold"]
    keys, weights = [], []
    for i in range(min(k, len(problem["keys"]))):
        conf = problem["min_conf"][i]
        keep = conf is not None and bar is not None and not problem["stopped"][i] and conf >= bar
        keys.append(problem["keys"][i] if keep else None)
        weights.append(conf or 0.0)
    return _vote(keys, problem["correct"][:k], weights), sum(problem["tokens"][:k])


def replay_at(problem: dict[str, Any], k: int, warmup: int, keep_percent: float) -> tuple[bool, int]:
    """DeepConf online replayed on the pool's complete traces."""
    replay = problem.get("replay", {}).get(f"{keep_percent:g}", {})
    bar = replay.get("threshold")
    stops = replay.get("stop_tokens") or [None] * len(problem["keys"])
    keys, weights, tokens = [], [], 0
    for i in range(min(k, len(problem["keys"]))):
        conf = problem["min_conf"][i]
        stopped = stops[i] is not None
        tokens += stops[i] if stopped else problem["tokens"][i]
        keep = conf is not None and bar is not None and not stopped and conf >= bar
        keys.append(problem["keys"][i] if keep else None)
        weights.append(conf or 0.0)
    return _vote(keys, problem["correct"][:k], weights), tokens


def auroc(right: Sequence[float], wrong: Sequence[float]) -> float | None:
    """P(a right trace's confidence > a wrong one's), ties half: the Mann-Whitney AUROC."""
    if not right or not wrong:
        return None
    ranked = sorted([(c, 1) for c in right] + [(c, 0) for c in wrong])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mean_rank = (i + j + 1) / 2  # 1-based ranks i+1 .. j
        rank_sum += mean_rank * sum(flag for _, flag in ranked[i:j])
        i = j
    n_right, n_wrong = len(right), len(wrong)
    return (rank_sum - n_right * (n_right + 1) / 2) / (n_right * n_wrong)


def histogram(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    counts = [0] * (len(edges) - 1)
    for v in values:
        for b in range(len(edges) - 1):
            if edges[b] <= v < edges[b + 1] or (b == len(edges) - 2 and v == edges[-1]):
                counts[b] += 1
                break
    return counts


def online_label(keep_percent: float) -> str:
    return f"online-{keep_percent:g}"


def summarize(dataset: dict[str, Any], ks: Sequence[int], warmup: int, keep_percents: Sequence[float]) -> dict[str, Any]:
    """Per k: accuracy and generated tokens per problem of SC, and per keep percent of DeepConf
    offline, the replay and the online run; wall times per round; confidence histograms, AUROC."""
    pools = [r for r in dataset["rounds"] if r["label"] == "pool"]
    pool = pools[0]["problems"]
    count = len(pool)

    def mean(results: list[tuple[bool, int]]) -> dict[str, float]:
        return {"accuracy": sum(ok for ok, _ in results) / count, "tokens": sum(t for _, t in results) / count}

    rows = []
    for k in ks:
        row: dict[str, Any] = {"k": k, "sc": mean([sc_at(p, k) for p in pool])}
        for keep in keep_percents:
            row[f"offline-{keep:g}"] = mean([offline_at(p, k, keep) for p in pool])
            row[f"replay-{keep:g}"] = mean([replay_at(p, k, warmup, keep) for p in pool])
            onlines = [r for r in dataset["rounds"] if r["label"] == online_label(keep)]
            if onlines:
                row[online_label(keep)] = mean([online_at(p, k, warmup) for p in onlines[0]["problems"]])
        rows.append(row)
    stopped = {}
    for keep in keep_percents:
        onlines = [r for r in dataset["rounds"] if r["label"] == online_label(keep)]
        if onlines:
            flags = [s for p in onlines[0]["problems"] for s in p["stopped"]]
            stopped[f"{keep:g}"] = sum(flags) / max(1, len(flags) - warmup * count)
    right = [c for p in pool for c, ok in zip(p["min_conf"], p["correct"], strict=True) if c is not None and ok]
    wrong = [c for p in pool for c, ok in zip(p["min_conf"], p["correct"], strict=True) if c is not None and not ok]
    every = right + wrong
    low, high = (min(every), max(every)) if every else (0.0, 1.0)
    edges = [low + (high - low) * b / 12 for b in range(13)]
    labels = sorted({r["label"] for r in dataset["rounds"]})
    return {
        "rows": rows,
        "wall_s": {label: [r["wall_s"] for r in dataset["rounds"] if r["label"] == label] for label in labels},
        "generated_tokens": {label: [r["generated_tokens"] for r in dataset["rounds"] if r["label"] == label]
                             for label in labels},
        "stopped_share": stopped,
        "confidence": {"edges": [round(e, 3) for e in edges], "right": histogram(right, edges),
                       "wrong": histogram(wrong, edges), "auroc": auroc(right, wrong),
                       "right_traces": len(right), "wrong_traces": len(wrong)},
    }


def paired_rounds(dataset: dict[str, Any], k: int, warmup: int, keep_percent: float = 10.0,
                  shards: Sequence[Sequence[dict[str, Any]]] = ()) -> dict[str, Any]:
    """A ``--rounds R`` run's pool and online runs paired by round (the wall-time comparison).

    Per round: which ran first, each run's wall seconds (a merged report's: the slowest shard's)
    and generated tokens, the online / pool wall ratio, and at ``k`` the accuracy and generated
    tokens per problem of self-consistency and the replayed rule (that round's pool) and of the
    online run (that round's online run), so each round is an independent draw of both, and the
    share of the online run's traces after the warm-up that the engine stopped. A round
    that lacks either run (cut by ``--deadline-s``) is left out. ``shards``: each shard's phase
    lines (label, round, wall_s), as it printed them; then also the mean over the shards of each
    run's wall seconds per round and their ratio. ``pairing``: ``pairing.paired_ratio`` of the
    online / pool ratios (mean, median, bootstrap interval; too narrow under ~8 rounds), and
    with ``shards`` ``shard_pairing``, the same of the shard-mean ratios."""
    from .pairing import paired_ratio

    label = online_label(keep_percent)
    by_round: dict[int, dict[str, tuple[int, dict[str, Any]]]] = {}
    for position, phase in enumerate(dataset["rounds"]):
        by_round.setdefault(phase["round"], {})[phase["label"]] = (position, phase)
    shard_walls: dict[tuple[str, int], list[float]] = {}
    for phases in shards:
        for phase in phases:
            shard_walls.setdefault((phase["label"], phase["round"]), []).append(phase["wall_s"])

    def mean(results: list[tuple[bool, int]]) -> dict[str, float]:
        return {"accuracy": sum(ok for ok, _ in results) / len(results),
                "tokens": sum(t for _, t in results) / len(results)}

    rounds = []
    for index in sorted(by_round):
        sides = by_round[index]
        if "pool" not in sides or label not in sides:
            continue
        (pool_at, pool), (online_at_, online) = sides["pool"], sides[label]
        row: dict[str, Any] = {
            "round": index, "first": "pool" if pool_at < online_at_ else label,
            "pool_wall_s": pool["wall_s"], "online_wall_s": online["wall_s"],
            "ratio": online["wall_s"] / pool["wall_s"],
            "pool_tokens": pool["generated_tokens"], "online_tokens": online["generated_tokens"],
            "sc": mean([sc_at(p, k) for p in pool["problems"]]),
            "replay": mean([replay_at(p, k, warmup, keep_percent) for p in pool["problems"]]),
            "online": mean([online_at(p, k, warmup) for p in online["problems"]]),
            "stopped_share": sum(sum(p["stopped"][warmup:]) for p in online["problems"])
            / max(1, sum(len(p["stopped"][warmup:]) for p in online["problems"])),
        }
        if shards:
            pool_walls, online_walls = shard_walls[("pool", index)], shard_walls[(label, index)]
            row["pool_shard_mean_s"] = sum(pool_walls) / len(pool_walls)
            row["online_shard_mean_s"] = sum(online_walls) / len(online_walls)
            row["shard_mean_ratio"] = row["online_shard_mean_s"] / row["pool_shard_mean_s"]
        rounds.append(row)
    if not rounds:
        raise ValueError(f"no round has both a pool and an {label} run")

    def pairing(online: list[float], pool: list[float]) -> dict[str, Any]:  # without issue 19's target and naming
        return {key: value for key, value in paired_ratio(online, pool).items()
                if key not in ("order", "target", "target_met")}

    report = {"k": k, "label": label, "rounds": rounds,
              "pairing": pairing([r["online_wall_s"] for r in rounds], [r["pool_wall_s"] for r in rounds])}
    if shards:
        report["shard_pairing"] = pairing([r["online_shard_mean_s"] for r in rounds],
                                          [r["pool_shard_mean_s"] for r in rounds])
    return report


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    options = dict(window=args.window, warmup=args.warmup, n=args.n)
    started = time.monotonic()
    # The online runs stop traces in the engine: a vLLM engine is built with its confidence stop.
    vllm = {"confidence_stop": True} if args.backend.partition(":")[0] == "vllm" else {}
    backend = from_spec(args.backend, **({"engine_kwargs": json.loads(args.engine)} if args.engine else {}), **vllm)
    await backend.load()
    report: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "command": command("deepconf_proof", args.argv),
                              "machine": platform.platform(), "backend": backend.describe(),
                              "options": {**options, "max_tokens": args.max_tokens, "temperature": args.temperature,
                                          "top_p": args.top_p, "ks": list(args.ks),
                                          "keep_percent": list(args.keep_percent)}, "datasets": {}}
    if args.shard:
        report["shard"] = args.shard
    try:
        for spec in args.dataset:
            name, _, limit = spec.partition(":")
            items = load_items(name, int(limit) if limit else None)
            if args.shard:
                index, count = parse_shard(args.shard)
                items = items[index::count]
            labels = ["pool", *([] if args.pool_only else [online_label(keep) for keep in args.keep_percent])]
            report["datasets"][spec] = data = {"rounds": []}
            for round_index in range(args.rounds):
                order = labels if round_index % 2 == 0 else labels[::-1]
                for label in order:
                    if args.deadline_s and time.monotonic() - started > args.deadline_s:
                        print(f"deadline: {spec} {label} round {round_index} not started", flush=True)
                        continue
                    keep = float(label.removeprefix("online-")) if label != "pool" else args.keep_percent[0]
                    strategy = DeepConf(mode="offline" if label == "pool" else "online", keep_percent=keep, **options)
                    phase = await run_phase(backend, items, strategy, args, label)
                    phase["round"] = round_index
                    data["rounds"].append(phase)
                    print(json.dumps({k: v for k, v in phase.items() if k != "problems"}), flush=True)
                    if any(r["label"] == "pool" for r in data["rounds"]):
                        data["summary"] = summarize(data, args.ks, args.warmup, args.keep_percent)
                    if args.out:  # after each phase: nothing lost if a later one runs out of time
                        with open(args.out, "w") as handle:
                            json.dump(report, handle)
    finally:
        await backend.aclose()
    return report


def parse_shard(text: str) -> tuple[int, int]:
    """``I/K`` -> (I, K), 0 <= I < K."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes I/K (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= I < K")
    return index, count


def merge(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report from the shards' reports of one sharded run (``--shard I/K`` for every I)."""
    if not reports:
        raise ValueError("nothing to merge")
    shards = sorted(parse_shard(r.get("shard", "")) if r.get("shard") else (-1, -1) for r in reports)
    count = shards[0][1]
    if shards != [(i, count) for i in range(count)]:
        raise ValueError(f"merge needs shards 0/K..K-1/K of one run, got {[r.get('shard') for r in reports]}")
    options = reports[0]["options"]
    if any(r["options"] != options for r in reports):
        raise ValueError("the shards ran with different options")
    merged: dict[str, Any] = {key: reports[0][key] for key in ("date", "machine", "backend", "options")}
    merged["command"] = [r["command"] for r in reports]
    merged["shards"] = count
    merged["datasets"] = {}
    for spec in reports[0]["datasets"]:
        phases: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for report in reports:
            for phase in report["datasets"].get(spec, {}).get("rounds", []):
                phases.setdefault((phase["label"], phase["round"]), []).append(phase)
        rounds = []
        for (label, round_index), parts in phases.items():  # in the first shard's order
            if len(parts) != count:  # a shard ran out of time before this phase: no fair union
                continue
            rounds.append({"label": label, "describe": parts[0]["describe"], "round": round_index,
                           "wall_s": max(p["wall_s"] for p in parts),
                           "generated_tokens": sum(p["generated_tokens"] for p in parts),
                           "problems": [problem for p in parts for problem in p["problems"]]})
        data: dict[str, Any] = {"rounds": rounds}
        if any(r["label"] == "pool" for r in rounds):
            data["summary"] = summarize(data, options["ks"], options["warmup"], options["keep_percent"])
        merged["datasets"][spec] = data
    return merged


def markdown(report: dict[str, Any]) -> str:
    lines = []
    for spec, data in report["datasets"].items():
        if "summary" not in data:  # no pool run finished
            continue
        summary = data["summary"]
        lines += [f"{spec}:", "", "| k | method | accuracy | generated tokens / problem | saved vs SC |",
                  "|---|---|---|---|---|"]
        for row in summary["rows"]:
            sc = row["sc"]
            for name, cell in row.items():
                if name == "k":
                    continue
                saved = f"{1 - cell['tokens'] / sc['tokens']:.1%}" if sc["tokens"] else "–"
                lines.append(f"| {row['k']} | {name} | {cell['accuracy']:.3f} | {cell['tokens']:,.0f} | {saved} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="vllm")
    parser.add_argument("--engine", help="JSON of extra engine arguments, e.g. '{\"max_num_seqs\": 1024}'")
    parser.add_argument("--dataset", action="append", default=[], help="NAME[:LIMIT], repeatable")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--ks", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--keep-percent", type=float, nargs="+", default=[10.0, 90.0],
                        help="eta of each online run: 10 = DeepConf-low, 90 = DeepConf-high")
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--rounds", type=int, default=1, help="alternating pool/online rounds (wall-time spread)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--deadline-s", type=float, default=0, help="start no run after this many seconds (0: none)")
    parser.add_argument("--out", help="JSON file")
    parser.add_argument("--table", metavar="REPORT.json", help="print the markdown table of a saved report and exit")
    parser.add_argument("--pool-only", action="store_true",
                        help="only the pool run: SC, DeepConf offline and online replayed, AUROC (no online runs)")
    parser.add_argument("--shard", metavar="I/K", help="solve problems I, I+K, ... of each dataset (one of K engines)")
    parser.add_argument("--merge", nargs="+", metavar=("OUT", "SHARD"),
                        help="write OUT from the shards' reports (--shard 0/K ... K-1/K) and exit")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.merge:
        if len(args.merge) < 2:
            parser.error("--merge OUT SHARD.json [SHARD.json ...]")
        reports = []
        for name in args.merge[1:]:
            with open(name) as handle:
                reports.append(json.load(handle))
        try:
            merged = merge(reports)
        except ValueError as bad:
            parser.error(str(bad))
        with open(args.merge[0], "w") as handle:
            json.dump(merged, handle)
        print(markdown(merged))
        return 0
    if args.shard:
        try:
            parse_shard(args.shard)
        except ValueError as bad:
            parser.error(str(bad))
    if args.table:
        with open(args.table) as handle:
            print(markdown(json.load(handle)))
        return 0
    if not args.dataset:
        parser.error("give at least one --dataset")
    args.ks = [k for k in args.ks if k <= args.n]
    report = asyncio.run(main_async(args))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
