"""benchmarks.serve_throughput against the real loopback stub server (no vLLM here): both
sides send the same requests, rounds alternate, figures come from the server's usage and the
paired ratio from the rounds; the server launcher waits for the server and stops it."""

import json
import pstats
import sys
import urllib.request

import pytest
from reasoning.benchmarks import serve_throughput
from reasoning.benchmarks.pairing import paired_ratio
from reasoning.benchmarks.stub_server import StubServer

LIMIT, N, ROUNDS, WARMUP = 3, 4, 4, 1


def test_both_sides_send_the_same_requests_in_abba_rounds_and_the_ratio_comes_from_them(tmp_path):
    out = tmp_path / "serve.json"
    with StubServer() as server:
        report = serve_throughput.main(["--api-base", server.base_url, "--limit", str(LIMIT), "--n", str(N),
                                        "--max-tokens", "24", "--rounds", str(ROUNDS),
                                        "--warmup-rounds", str(WARMUP), "--out", str(out),
                                        "--profile", str(tmp_path / "framework.prof")])
        calls = [r for r in server.requests if r.path.endswith("/chat/completions")]
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    # Rounds alternate: raw first in even rounds, framework first in odd ones.
    assert report["order"] == [["raw", "framework"], ["framework", "raw"]] * (ROUNDS // 2)
    # One request per problem per phase, phases in the order run (the warm-up round: framework
    # first; the profiled framework round last).
    phases = ["framework", "raw"] + [side for names in report["order"] for side in names] + ["framework"]
    assert len(calls) == len(phases) * LIMIT
    by_phase = [calls[i * LIMIT:(i + 1) * LIMIT] for i in range(len(phases))]
    bodies = {side: [sorted(json.dumps(r.body, sort_keys=True) for r in chunk)
                     for name, chunk in zip(phases, by_phase) if name == side]
              for side in ("raw", "framework")}
    assert bodies["raw"][0] == bodies["framework"][0]  # same prompts, n and sampling, byte for byte
    assert all(json.loads(b)["n"] == N for b in bodies["raw"][0])
    # Each timed phase's figures are the server's usage for that phase.
    timed = {"raw": [], "framework": []}
    for name, chunk in list(zip(phases, by_phase))[2:-1]:
        timed[name].append(sum(r.usage["completion_tokens"] for r in chunk))
    for side in ("raw", "framework"):
        rounds = report["rounds"][side]
        assert len(rounds) == ROUNDS
        assert [r["completion_tokens"] for r in rounds] == timed[side]
        assert all(r["samples"] == LIMIT * N and r["loop_cpu_s"] >= 0 for r in rounds)
    # The pairing is computed from those rounds.
    expected = paired_ratio([r["tokens_per_s"] for r in report["rounds"]["framework"]],
                            [r["tokens_per_s"] for r in report["rounds"]["raw"]])
    assert report["pairing"] == expected
    assert report["pairing"]["ratios"] == [round(f["tokens_per_s"] / r["tokens_per_s"], 4) for f, r in
                                           zip(report["rounds"]["framework"], report["rounds"]["raw"])]
    assert set(report["loop_cpu_ms_per_sample"]) == {"raw", "framework", "framework_minus_raw"}
    assert report["server"]["started_here"] is False and report["prefix_cache_reset"] is False
    assert report["profile"] == str(tmp_path / "framework.prof")
    profiled = {name for _, _, name in pstats.Stats(str(tmp_path / "framework.prof")).stats}
    assert {"asolve_many", "choose"} <= profiled  # the framework's round, voting included
    assert "cumulative" in (tmp_path / "framework.prof.txt").read_text()


def _stub_command(port: int) -> list[str]:
    return [sys.executable, "-m", "reasoning.benchmarks.stub_server", "--port", str(port)]


def test_the_started_server_is_waited_for_and_stopped_at_exit(tmp_path):
    port = serve_throughput.free_port()
    base = f"http://127.0.0.1:{port}/v1"
    log = tmp_path / "server.log"
    with serve_throughput.started_server(_stub_command(port), base, timeout=60, log=log) as proc:
        with urllib.request.urlopen(f"{base}/models", timeout=5) as answer:
            assert json.loads(answer.read())["data"][0]["id"] == serve_throughput.served_model(base)
    assert proc.returncode is not None  # stopped, its process group with it
    assert not serve_throughput.ready(base)
    assert "listening on" in log.read_text()


def test_a_server_that_exits_before_it_is_ready_is_an_error_naming_its_log(tmp_path):
    port = serve_throughput.free_port()
    log = tmp_path / "server.log"
    command = [sys.executable, "-c", "import sys; print('no GPU'); sys.exit(3)"]
    with (pytest.raises(RuntimeError, match=rf"exited with status 3 before it was ready; see {log}"),
          serve_throughput.started_server(command, f"http://127.0.0.1:{port}/v1", timeout=60, log=log)):
        pass
    assert "no GPU" in log.read_text()


def test_arguments_after_the_separator_go_to_vllm_serve():
    args = serve_throughput.parse_args(["--model", "/root/model", "--rounds", "8", "--",
                                        "--gpu-memory-utilization", "0.9", "--max-model-len", "4096"])
    assert args.serve_args == ["--gpu-memory-utilization", "0.9", "--max-model-len", "4096"]
    assert args.concurrency == args.limit == 50 and args.rounds == 8
    command = serve_throughput.serve_command(args.model, "127.0.0.1", 8123, args.serve_args)
    assert command[:4] == [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
    assert command[4:] == ["/root/model", "--host", "127.0.0.1", "--port", "8123",
                           "--gpu-memory-utilization", "0.9", "--max-model-len", "4096"]
    cpu = serve_throughput.serve_command("/m", "127.0.0.1", 8123, ["--enforce-eager"], "api_server")
    assert cpu[1:] == ["-m", "vllm.entrypoints.openai.api_server", "--model", "/m", "--host", "127.0.0.1",
                       "--port", "8123", "--enforce-eager"]


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        serve_throughput.parse_args(["--api-base", "http://127.0.0.1:1/v1", "--", "--max-model-len", "9"])
    assert "not with --api-base" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        serve_throughput.parse_args(["--api-base", "http://127.0.0.1:1/v1", "--rounds", "0"])
    assert "--rounds must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        serve_throughput.parse_args(["--limit", "3"])  # neither --model nor --api-base
    with pytest.raises(SystemExit, match="no server answers"):
        serve_throughput.main(["--api-base", f"http://127.0.0.1:{serve_throughput.free_port()}/v1"])
