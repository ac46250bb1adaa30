"""`reasoning-bench run --ray` / `sweep --ray` on a local two-worker Ray cluster, against the
loopback stub server: the run budget holds globally, a killed worker loses no finished problem
and counts none twice, results equal a local run's, an interrupted run resumes.

The first tests need no Ray: a worker's root ledger over the ledger service in this process.
Ray is the optional `ray` extra; the dev extra brings it, so CI runs these (under CI=true a
missing Ray fails them instead of skipping)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from reasoning import Budget, BudgetExhausted, CallShape, Ledger, Usage
from reasoning.benchmarks.cli import main
from reasoning.benchmarks.distributed import LedgerService, ServiceUpstream, worker_root
from reasoning.benchmarks.run import RunJournal, read_rows
from reasoning.benchmarks.stub_server import StubServer

SHAPE = CallShape(100, False, False)


# -- the upstream ledger, in one process ----------------------------------------------------
def test_a_call_is_shrunk_to_what_the_run_ledger_has_left_and_named_after_it():
    service = LedgerService("tokens=1500")
    problem = worker_root("tokens=1500", ServiceUpstream(service, "w1"), float("inf")).child(Budget(tokens=5000))
    other = worker_root("tokens=1500", ServiceUpstream(service, "w2"), float("inf")).child(Budget(tokens=5000))
    first = other.reserve(SHAPE, n=1, max_tokens=1000)  # the other worker holds 1100 of 1500
    reservation = problem.reserve(SHAPE, n=4, max_tokens=1000, min_tokens=16)
    # Locally 4 x 1000 fit; the run ledger had 400 left: one sample of 300 tokens.
    assert (reservation.n, reservation.max_tokens, reservation.shrunk_by) == (1, 300, "run:tokens")
    assert problem.stopped_by == "run:tokens" and problem.reserved.tokens == 400
    assert service.ledger.reserved.tokens == 1500
    problem.commit(reservation, Usage(prompt_tokens=100, completion_tokens=50, calls=1))
    other.release(first)
    assert service.ledger.used.tokens == 150 and service.ledger.reserved.tokens == 0
    assert service.owners() == []


def test_a_call_the_run_ledger_refuses_holds_nothing_anywhere():
    service = LedgerService("calls=1")
    problem = worker_root("calls=1", ServiceUpstream(service, "w1"), float("inf")).child(Budget())
    other = worker_root("", ServiceUpstream(service, "w2"), float("inf")).child(Budget())
    other.reserve(SHAPE, n=1, max_tokens=10)  # the run's only call, held by another worker
    with pytest.raises(BudgetExhausted, match="run:calls"):
        problem.reserve(SHAPE, n=1, max_tokens=10)
    assert problem.exhausted and problem.stopped_by == "run:calls"
    assert problem.reserved.calls == 0 and service.ledger.reserved.calls == 1


def test_a_problem_limit_shrinks_the_call_before_the_run_ledger_is_asked():
    service = LedgerService("tokens=100000")
    problem = worker_root("", ServiceUpstream(service, "w1"), float("inf")).child(Budget(tokens=600))
    reservation = problem.reserve(SHAPE, n=8, max_tokens=100)
    assert (reservation.n, reservation.shrunk_by) == (5, "tokens")
    assert service.ledger.reserved.tokens == 600  # the run ledger holds exactly what was granted here


def test_reservations_of_a_worker_that_never_commits_stay_held():
    service = LedgerService("calls=10")
    dead = worker_root("", ServiceUpstream(service, "dead"), float("inf")).child(Budget())
    for _ in range(3):
        dead.reserve(SHAPE, n=1, max_tokens=10)  # then its process dies
    alive = worker_root("", ServiceUpstream(service, "alive"), float("inf")).child(Budget())
    granted = 0
    for _ in range(20):
        try:
            alive.commit(alive.reserve(SHAPE, n=1, max_tokens=10), Usage(calls=1))
        except BudgetExhausted:
            break
        granted += 1
    assert granted == 7 and service.owners() == ["dead"] * 3
    totals = service.totals()
    assert totals["used"]["calls"] == 7 and totals["reserved"]["calls"] == 3


def test_only_a_root_ledger_answers_to_an_upstream():
    with pytest.raises(ValueError, match="root"):
        Ledger(Budget(), parent=Ledger(), upstream=ServiceUpstream(LedgerService()))


# -- on a local Ray cluster ------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed; CI installs it (the dev extra brings the ray extra)")
        pytest.skip("Ray is not installed: pip install 'reasoning-tts[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def run(*args: str) -> int:
    return main(["run", "--dataset", "gsm8k", "--backend", "openai:stub-model", "--max-tokens", "64", *args])


def rows_of(out: Path) -> dict[str, dict]:
    rows = read_rows(out / "results.jsonl")
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), "a problem was written twice"
    return {row["id"]: row for row in rows}


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


# What depends on when a request reached the server, not on what was asked: wall time, and the
# stub's prefix cache (a prompt's cached tokens are its longest common prefix with any prompt
# the server saw before, so they follow the arrival order, which load and worker count change;
# FLOPs count only the uncached prompt tokens).
ORDER_DEPENDENT = {"seconds", "cached_prompt_tokens", "uncached_tokens", "flops"}


def comparable(row: dict) -> dict:
    """A result row less what depends on arrival order at the server (ORDER_DEPENDENT)."""
    row = dict(row)
    row["usage"] = {k: v for k, v in row["usage"].items() if k not in ORDER_DEPENDENT}
    row["usage_by_role"] = {role: {k: v for k, v in u.items() if k not in ORDER_DEPENDENT}
                            for role, u in row["usage_by_role"].items()}
    return row


def test_results_on_two_workers_equal_a_local_runs(ray_cluster, tmp_path):
    common = ["--limit", "8", "--strategy", "self-consistency", "--n", "3", "--budget", "tokens=2000"]
    served = []
    for where in ([], ["--ray", "--concurrency", "2"]):  # a fresh server each: its prefix cache starts empty
        with StubServer(latency=0.02) as server:
            assert run(*common, "--api-base", server.base_url, "--out", str(tmp_path / ("ray" if where else "local")),
                       *where) == 0
            served.append(sorted(json.dumps(r.body, sort_keys=True) for r in server.generation_requests()))
    assert served[0] == served[1]
    local, distributed = rows_of(tmp_path / "local"), rows_of(tmp_path / "ray")
    assert sorted(local) == sorted(distributed) == [str(i) for i in range(8)]
    assert {k: comparable(v) for k, v in distributed.items()} == {k: comparable(v) for k, v in local.items()}
    summary = summary_of(tmp_path / "ray")
    local_usage = summary_of(tmp_path / "local")["usage"]
    assert {k: v for k, v in summary["usage"].items() if k not in ORDER_DEPENDENT} == \
        {k: v for k, v in local_usage.items() if k not in ORDER_DEPENDENT}
    assert summary["ray"] == {"workers": 2, "in_flight_at_end": 0}
    # The trace each worker sent back is the one a local run writes.
    local_traces = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "local" / "traces.jsonl").open()}
    for line in (tmp_path / "ray" / "traces.jsonl").open():
        trace = json.loads(line)
        mine = [(n["kind"], n["request"], n["completions"]) for n in trace["trace"]]
        theirs = [(n["kind"], n["request"], n["completions"]) for n in local_traces[trace["id"]]["trace"]]
        assert mine == theirs


@pytest.mark.parametrize("run_budget, served", [("calls=9", lambda r: 1), ("tokens=700", lambda r: r.usage["total_tokens"])])
def test_the_global_run_budget_is_never_exceeded(ray_cluster, tmp_path, run_budget, served):
    """Two workers, four problems in flight on each, every call asking the run ledger actor."""
    with StubServer(latency=0.05) as server:
        assert run("--limit", "30", "--strategy", "greedy", "--api-base", server.base_url, "--run-budget", run_budget,
                   "--out", str(tmp_path / "o"), "--ray", "--ray-workers", "2", "--concurrency", "4") == 0
        spent = sum(served(r) for r in server.generation_requests() if r.usage)
    name, cap = run_budget.split("=")
    summary = summary_of(tmp_path / "o")
    assert 0 < spent <= int(cap)
    assert summary["run_charged"][name] <= int(cap)
    assert summary["usage"][name] == spent  # what the rows say is what the server served
    assert summary["n_problems"] == 30 and sum(summary["stopped_by"].values()) > 0
    assert set(summary["stopped_by"]) == {f"run:{name}"}


def _ledger_actor(ray):
    names = [entry["name"] for entry in ray.util.list_named_actors(all_namespaces=True)
             if entry["name"].startswith("reasoning-ledger-")]
    return ray.get_actor(names[-1]) if names else None


def test_killing_a_worker_mid_run_loses_no_finished_problem_and_counts_none_twice(ray_cluster, tmp_path):
    ray = ray_cluster
    out = tmp_path / "o"
    killed: list[str] = []

    def kill_one_worker_with_a_call_in_flight() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            time.sleep(0.05)
            actor = _ledger_actor(ray)
            written = out / "results.jsonl"  # read only: read_rows would cut a line being written
            if actor is None or not written.exists() or written.read_bytes().count(b"\n") < 4:
                continue
            owners = ray.get(actor.owners.remote())
            if owners:
                killed.append(owners[0])
                os.kill(int(owners[0].rsplit(":", 1)[1]), signal.SIGKILL)

    # Each answer takes 1 s, so a call seen in flight is still in flight when the kill lands, and
    # the run lasts long enough after the 4th row for the watcher to act on a loaded machine.
    with StubServer(latency=1.0) as server:
        killer = threading.Thread(target=kill_one_worker_with_a_call_in_flight)
        killer.start()
        try:
            assert run("--limit", "16", "--strategy", "greedy", "--api-base", server.base_url, "--run-budget", "calls=100",
                       "--out", str(out), "--ray", "--concurrency", "2") == 0
        finally:
            killer.join()
        served = server.count
    assert killed, "no worker was killed"
    rows = rows_of(out)
    assert sorted(rows, key=int) == [str(i) for i in range(16)]
    summary = summary_of(out)
    assert summary["n_problems"] == 16 and summary["usage"]["calls"] == 16  # each problem's row once
    assert summary["stopped_by"] == {}
    # The dead worker's calls in flight stay charged at their worst case (one call each): the
    # run charged every call the server saw, and the ones that died with the worker.
    held = summary["ray"]["in_flight_at_end"]
    assert held >= 1
    assert summary["run_charged"]["calls"] >= max(served, 16 + held)
    # The journal carries them to a resumed run, as a kill -9 of a local run does.
    assert RunJournal(out / "journal.jsonl").charged_before().calls == summary["run_charged"]["calls"]


def test_an_interrupted_distributed_run_resumes_locally_or_on_ray(ray_cluster, tmp_path):
    out = tmp_path / "o"
    with StubServer(latency=0.01) as server:
        common = ["--strategy", "greedy", "--api-base", server.base_url, "--run-budget", "calls=9", "--out", str(out)]
        assert run("--limit", "4", *common, "--ray") == 0
        assert server.count == 4
        assert run("--limit", "7", *common, "--ray") == 0  # the first 4 are not redone
        assert server.count == 7
        assert run("--limit", "12", *common) == 0  # locally: the run budget spans both
        assert server.count == 9
    summary = summary_of(out)
    assert sorted(rows_of(out), key=int) == [str(i) for i in range(12)]
    assert summary["run_charged"]["calls"] == 9 and summary["stopped_by"] == {"run:calls": 3}


def test_a_sweep_on_two_workers_writes_the_rows_a_local_sweep_writes(ray_cluster, tmp_path):
    common = ["sweep", "--dataset", "gsm8k", "--limit", "4", "--strategy", "self-consistency", "--strategy", "greedy",
              "--n", "1,2", "--backend", "openai:stub-model", "--max-tokens", "32", "--no-coverage"]
    for where in ([], ["--ray", "--concurrency", "2"]):  # a fresh server each: its prefix cache starts empty
        with StubServer(latency=0.01) as server:
            out = tmp_path / ("ray" if where else "local")
            assert main([*common, "--api-base", server.base_url, "--out", str(out), *where]) == 0

    def rows(out):
        found = sorted(read_rows(out / "problems.jsonl"), key=lambda r: (r["strategy"], r["point"], r["id"]))
        for row in found:  # the stub's prefix cache hits depend on the order requests arrive in
            for cost in ("cost", "pool_cost", "fixed_cost"):
                row.get(cost, {}).pop("uncached_tokens", None)
        return found

    local, distributed = rows(tmp_path / "local"), rows(tmp_path / "ray")
    assert len(local) == 4 * 2 + 4  # self-consistency pooled at n=1,2; greedy once
    assert distributed == local


def test_ray_options_are_checked_before_anything_starts(tmp_path, capsys):
    assert run("--limit", "1", "--strategy", "greedy", "--api-base", "http://127.0.0.1:9", "--ray-workers", "2",
               "--out", str(tmp_path / "o")) == 2
    assert "--ray-workers is for --ray" in capsys.readouterr().err
    assert run("--limit", "1", "--strategy", "greedy", "--ray", "--ray-workers", "0",
               "--out", str(tmp_path / "o")) == 2
    assert "--ray-workers must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_ctrl_c_while_the_workers_load_ends_the_run_without_waiting_for_the_load(tmp_path):
    """The driver used to wait for the workers' model load in a blocking ``ray.get`` on the
    event loop, so Ctrl-C took effect only once every engine had started (a minute or more with
    vLLM; here the scripted load lasts an hour)."""
    import subprocess
    import sys

    pytest.importorskip("ray")
    out = tmp_path / "o"
    process = subprocess.Popen(
        # SIGINT handled as in a terminal even when this runs as a shell's background job (CI started
        # with `&`), whose children inherit SIGINT ignored.
        [sys.executable, "-c", ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                                "from reasoning.benchmarks.cli import main; sys.exit(main(sys.argv[1:]))"), "run", "--dataset", "gsm8k", "--limit", "4",
         "--backend", "scripted:18,3?load=3600", "--out", str(out), "--ray", "--ray-workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if "on Ray:" in line:  # the workers exist and are loading
                break
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=300)  # a hang detector: the old code waited the whole hour
        except subprocess.TimeoutExpired:
            pytest.fail("the run did not end on SIGINT while its workers loaded:\n" + "".join(seen))
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    assert code == 130
    summary = summary_of(out)
    assert summary["n_problems"] == 0 and summary["solve_seconds"] is None  # nothing solved, nothing lost
