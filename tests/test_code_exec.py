"""The code sandbox: passing/failing programs and adversarial ones, all contained."""

import asyncio
import os

import pytest

from reasoning.verifiers import arun_code_tests, extract_code, run_code_tests
from reasoning.verifiers.code_extract import assemble_humaneval

CHECK = "def check(candidate):\n    assert candidate(2) == 3\n"


def test_passing_and_failing_programs():
    good = run_code_tests("def inc(x):\n    return x + 1\n", CHECK, "inc", timeout=3)
    # Passed within its 3 s (else "timeout"), the host exiting cleanly with nothing to report.
    assert (good.passed, good.status, good.detail, good.returncode) == (True, "passed", "", 0)
    bad = run_code_tests("def inc(x):\n    return x\n", CHECK, "inc", timeout=3)
    assert not bad.passed and bad.status == "failed" and "AssertionError" in bad.detail
    crash = run_code_tests("def inc(x):\n    return undefined_name\n", CHECK, "inc", timeout=3)
    assert crash.status == "crashed" and "NameError" in crash.detail
    syntax = run_code_tests("def inc(x:\n", CHECK, "inc", timeout=3)
    assert syntax.status == "crashed" and "SyntaxError" in syntax.detail


@pytest.mark.parametrize("exit_code", ["import sys\nsys.exit(0)", "exit()", "raise SystemExit", "import os\nos._exit(0)"])
def test_exiting_before_the_tests_finish_is_not_a_pass(exit_code):
    verdict = run_code_tests(f"def inc(x):\n    return x + 1\n{exit_code}\n", CHECK, "inc", timeout=3)
    assert not verdict.passed and verdict.status in ("failed", "crashed")


def test_printing_looks_like_no_marker():
    verdict = run_code_tests("print('passed')\ndef inc(x):\n    return 0\n", CHECK, "inc", timeout=3)
    assert verdict.status == "failed"


def test_infinite_loop_times_out():
    verdict = run_code_tests("while True:\n    pass\n", "", timeout=1.5)
    assert verdict.status == "timeout" and not verdict.passed
    # The wall clock's 1.5 s ended it, before the CPU limit (int(1.5) + 1 = 2 CPU seconds) could.
    assert verdict.detail == "no result within 1.5 s (wall clock)"


def test_sleeping_past_the_wall_clock_times_out():
    verdict = run_code_tests("import time\ntime.sleep(30)\n", "", timeout=1)
    assert verdict.status == "timeout"


def test_huge_allocation_is_killed():
    verdict = run_code_tests("x = bytearray(8 * 1024 ** 3)\n", "", timeout=3)
    assert verdict.status == "killed" and "Memory" in verdict.detail


def test_giant_file_is_stopped(tmp_path):
    verdict = run_code_tests("with open('big', 'wb') as f:\n    f.write(b'x' * (64 << 20))\n", "", timeout=3)
    assert verdict.status == "killed"


def test_huge_output_is_capped():
    verdict = run_code_tests("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", "", timeout=3)
    assert not verdict.passed and len(verdict.detail) <= 500


@pytest.mark.parametrize("bomb", [
    "import os\nwhile True:\n    os.fork()\n",
    "import subprocess\nwhile True:\n    subprocess.Popen(['python3', '-c', 'pass'])\n",
    "import multiprocessing\nwhile True:\n    multiprocessing.Process(target=print).start()\n",
])
def test_fork_bomb_is_contained(bomb):
    verdict = run_code_tests(bomb, "", timeout=2)
    assert not verdict.passed and verdict.status in ("crashed", "killed", "timeout")


def test_rm_rf_home_deletes_nothing_outside(tmp_path, monkeypatch):
    fake_home = tmp_path / "home"
    fake_home.mkdir()
    canary = fake_home / "canary.txt"
    canary.write_text("alive")
    monkeypatch.setenv("HOME", str(fake_home))
    program = (
        "import os, shutil\n"
        f"os.system('rm -rf ~ {fake_home}')\n"
    )
    run_code_tests(program, "", timeout=3)  # its own HOME is a private tmpfs; rm may "succeed" there
    run_code_tests("import os, shutil\nshutil.rmtree(os.path.expanduser('~'))\n", "", timeout=3)
    for attempt in (f"import shutil\nshutil.rmtree({str(fake_home)!r})\n", f"import os\nos.remove({str(canary)!r})\n"):
        assert not run_code_tests(attempt, "", timeout=3).passed
    assert canary.read_text() == "alive"


def test_home_is_a_private_temporary_directory():
    verdict = run_code_tests(
        "import os\nhome = os.environ['HOME']\nassert os.getcwd() == home, (os.getcwd(), home)\n"
        "open('scratch.txt', 'w').write('x')\nassert open(os.path.join(home, 'scratch.txt')).read() == 'x'\n",
        "", timeout=3,
    )
    assert verdict.passed, verdict
    leftovers = [p for p in os.listdir(os.environ.get("TMPDIR", "/tmp")) if p.startswith("code-sandbox-")]
    # Other tests may run sandboxes concurrently; none of ours may be left behind.
    assert len(leftovers) <= 2 * os.cpu_count()


def test_socket_connect_to_localhost_never_arrives(loopback_listener):
    port, arrived = loopback_listener
    attempts = [
        f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n",
        f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\n",
        f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\n",
        f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=1)\n",
    ]
    for program in attempts:
        verdict = run_code_tests(program, "", timeout=3)
        assert not verdict.passed, program
    assert arrived == []


def test_async_wrapper_runs_many_without_blocking_the_loop():
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        tick = asyncio.create_task(ticker())
        programs = [f"def inc(x):\n    return x + {1 if i % 2 == 0 else 2}\n" for i in range(6)]
        verdicts = await asyncio.gather(*(arun_code_tests(p, CHECK, "inc", timeout=3) for p in programs))
        tick.cancel()
        return verdicts, ticks

    verdicts, ticks = asyncio.run(main())
    assert [v.passed for v in verdicts] == [True, False] * 3
    assert ticks >= 1


def test_extract_code_prefers_last_python_block_defining_the_entry_point():
    text = "Here:\n```python\ndef f(x):\n    return 1\n```\nBetter:\n```python\ndef f(x):\n    return 2\n```\nUsage:\n```python\nprint(f(3))\n```"
    assert extract_code(text, "f") == "def f(x):\n    return 2\n"
    assert extract_code("```\ndef g():\n    pass\n```") == "def g():\n    pass\n"
    assert extract_code("def g():\n    return 1\n") == "def g():\n    return 1\n"
    assert extract_code("The answer is \\boxed{3}.") is None
    assert extract_code("") is None


def test_assemble_humaneval_body_only_vs_full_function():
    prompt = "import math\n\n\ndef f(x: int) -> int:\n    \"\"\"Return x squared.\"\"\"\n"
    test = "def check(candidate):\n    assert candidate(3) == 9\n"
    body = "    return x * x\n"
    assert run_code_tests(assemble_humaneval(prompt, body, "f"), test, "f", timeout=3).passed
    unindented = "return x * x\n"
    assert run_code_tests(assemble_humaneval(prompt, unindented, "f"), test, "f", timeout=3).passed
    full = "def f(x):\n    return int(math.pow(x, 2))\n"
    program = assemble_humaneval(prompt, full, "f")
    assert program.startswith("import math") and program.count("def f(") == 1
    assert run_code_tests(program, test, "f", timeout=3).passed


def test_a_strategys_run_does_not_wait_behind_grading_in_the_other_lane():
    """One slot per lane: while grading holds its slot with a slow program, a solve-lane run
    (a strategy's own test, e.g. PlanSearch's public tests) starts at once and finishes first;
    a second grading run waits for the grading slot."""
    from reasoning.verifiers.code_exec import _MAX, set_max_concurrency

    before = _MAX
    set_max_concurrency(1)
    slow = "import time\ntime.sleep(3)\ndef inc(x):\n    return x + 1\n"
    fast = "def inc(x):\n    return x + 1\n"
    finished: list[str] = []

    async def one(name: str, program: str, lane: str):
        verdict = await arun_code_tests(program, CHECK, "inc", timeout=10, lane=lane)
        finished.append(name)
        return verdict

    async def main():
        grading = asyncio.ensure_future(one("slow grade", slow, "grade"))
        await asyncio.sleep(0.3)  # the slow program holds the grading slot
        return await asyncio.gather(grading, one("grade after", fast, "grade"), one("solve", fast, "solve"))

    try:
        verdicts = asyncio.run(main())
    finally:
        set_max_concurrency(before)
    assert all(v.passed for v in verdicts)
    assert finished[0] == "solve" and finished[1:] == ["slow grade", "grade after"]
    with pytest.raises(ValueError, match="lane"):
        run_code_tests(fast, CHECK, "inc", lane="other")
