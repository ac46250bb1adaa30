"""Errors a user sees from `reasoning-bench`: quick, clear, exit code 2, nothing left behind."""

import contextlib
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reasoning.benchmarks.cli import main
from reasoning.benchmarks.stub_server import StubServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--dataset", "gsm8k", "--backend", "scripted", "--budget", "tokens=inf"],
        ["run", "--dataset", "gsm8k", "--backend", "scripted", "--budget", "seconds=nan"],
        ["run", "--dataset", "gsm8k", "--backend", "scripted", "--run-budget", "usd=inf"],
        ["run", "--dataset", "gsm8k", "--backend", "scripted", "--run-budget", "calls=nan"],
        ["serve", "--backend", "scripted", "--budget-cap", "seconds=inf"],
        ["serve", "--backend", "scripted", "--default-budget", "tokens=nan"],
        ["mcp", "--backend", "scripted", "--budget-cap", "flops=1e999"],
    ],
)
def test_nan_and_inf_budgets_exit_2_with_a_clear_message(tmp_path, capsys, args):
    assert main([*args, *(["--out", str(tmp_path / "o")] if args[0] == "run" else [])]) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps lines
    assert "must be a finite number" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_bad_request_and_queue_timeouts_exit_2(tmp_path, capsys, value):
    assert main(["run", "--dataset", "gsm8k", "--backend", "openai:m", "--api-base", "http://127.0.0.1:9/v1",
                 "--request-timeout", value, "--out", str(tmp_path / "o")]) == 2
    assert "--request-timeout must be a positive number" in capsys.readouterr().err
    assert main(["serve", "--backend", "scripted", "--queue-timeout", value, "--port", "1"]) == 2
    assert "--queue-timeout must be a positive number" in capsys.readouterr().err


def test_request_timeout_is_for_api_backends(tmp_path, capsys):
    assert main(["run", "--dataset", "gsm8k", "--backend", "scripted", "--request-timeout", "5",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--request-timeout is for API backends" in capsys.readouterr().err


def test_a_hung_upstream_without_a_seconds_budget_fails_within_the_request_timeout(tmp_path, capsys):
    out = tmp_path / "o"
    with StubServer(latency=120) as stub:
        code = main(["run", "--dataset", "gsm8k", "--limit", "1", "--strategy", "greedy", "--backend",
                     "openai:stub-model", "--api-base", stub.base_url, "--request-timeout", "1", "--out", str(out)])
        assert code == 2 and stub.count == 1  # one attempt; no retry starts after the timeout
    err = " ".join(capsys.readouterr().err.split())
    assert "within the request timeout (1 s, --request-timeout)" in err and "Traceback" not in err


def test_a_missing_api_key_exits_2_at_once_naming_the_variable(tmp_path):
    """In a fresh process (as a user runs it): refused before litellm is even imported (it
    takes seconds), with no request made, no retries and no run folder."""
    out = tmp_path / "o"
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    script = (
        "import sys\n"
        "from reasoning.benchmarks.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('litellm imported' if 'litellm' in sys.modules else 'litellm not imported')\n"
        "sys.exit(code)\n"
    )
    with StubServer() as stub:
        done = subprocess.run(
            [sys.executable, "-c", script, "run", "--dataset", "gsm8k", "--limit", "1", "--backend",
             "litellm:openai/gpt-4o-mini", "--api-base", stub.base_url, "--out", str(out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert stub.count == 0  # no request, so none of the 5 attempts of HTTP 500 it once made
    assert done.returncode == 2, done.stderr
    assert "set OPENAI_API_KEY" in " ".join(done.stderr.split()) and "Traceback" not in done.stderr
    assert "litellm not imported" in done.stdout
    assert not out.exists()


# -- dataset names ------------------------------------------------------------------------------
@contextlib.contextmanager
def fake_hub():
    """A loopback HTTP server standing in for the hub (HF_ENDPOINT): it records every request."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            seen.append(self.path)
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_POST = answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def run_dataset(name, tmp_path, **env):
    """``reasoning-bench run --dataset NAME`` in a fresh process (the hub client reads its
    settings at import), online unless ``env`` says otherwise."""
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    done = subprocess.run(
        [sys.executable, "-m", "reasoning.benchmarks.cli", "run", "--dataset", name, "--backend", "scripted",
         "--out", str(tmp_path / "o")],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120, check=False,
    )
    return done.returncode, " ".join(done.stderr.split())


def test_a_name_that_cannot_be_a_hub_name_is_not_sent_to_the_hub(tmp_path):
    with fake_hub() as (endpoint, seen):
        code, err = run_dataset("math 500", tmp_path, HF_ENDPOINT=endpoint)
    assert code == 2 and "unknown dataset 'math 500' (did you mean 'math500'?)" in err and "not a hub name" in err
    assert seen == [] and not (tmp_path / "o").exists()


def test_offline_a_hub_name_is_not_sent_to_the_hub(tmp_path):
    with fake_hub() as (endpoint, seen):
        code, err = run_dataset("someone/nope", tmp_path, HF_ENDPOINT=endpoint, HF_HUB_OFFLINE="1")
    assert code == 2 and "unknown dataset 'someone/nope'" in err and seen == []


def test_a_hub_that_cannot_be_reached_fails_at_once_without_retry_noise(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there
    code, err = run_dataset("someone/nope", tmp_path, HF_ENDPOINT=closed)
    # One connection probe, refused, decides it: the hub client (24 s of retries before) never runs.
    assert code == 2 and "unknown dataset 'someone/nope'" in err
    assert f"the hub ({closed}) cannot be reached from here (Connection refused)" in err
    assert "thrown while requesting" not in err and "Retrying" not in err  # the hub client's retry noise
