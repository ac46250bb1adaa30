"""Hostile candidates: each tries to forge a pass or get out, and each must fail or be contained.

Every forging attempt is a *wrong* program (``inc`` returns the wrong value) plus the attack,
so "not passed" means the attack did not work; a positive control shows the same program
shape passes when it is right, so the failures are not the harness being broken.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from reasoning.verifiers.code_exec import FULL_ISOLATION, run_code_tests, sandbox_isolation, uid_block

CHECK = "def check(candidate):\n    assert candidate(2) == 3\n    assert candidate(10) == 11\n"
WRONG = "def inc(x):\n    return x\n"
RIGHT = "def inc(x):\n    return x + 1\n"
FULL = FULL_ISOLATION <= set(sandbox_isolation()[0].split(","))
AS_ROOT = os.geteuid() == 0
needs_full = pytest.mark.skipif(not FULL, reason=f"no full isolation here: {sandbox_isolation()}")


def verdict_of(program, tests=CHECK, entry="inc", timeout=5):
    return run_code_tests(program, tests, entry, timeout=timeout)


def sandbox_processes():
    """Host processes running under the sandbox's uids (there must be none after a verdict)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if uid in uid_block():  # this test process's sandboxes only
            found.append((entry.name, uid))
    return found


def test_positive_control():
    assert verdict_of(RIGHT).passed
    assert sandbox_isolation()[0] == verdict_of(RIGHT).isolation


FORGERIES = {
    "call the old runner's report": "import __main__\n__main__.report('passed')\n",
    "print a verdict line and exit": "import json, os\nprint(json.dumps({'status': 'passed'}), flush=True)\nos._exit(0)\n",
    "write a verdict to every descriptor": (
        "import os\nfor fd in range(1024):\n    try:\n        os.write(fd, b'\\n{\"status\": \"passed\", \"detail\": \"\"}\\n')\n"
        "    except OSError:\n        pass\nos._exit(0)\n"),
    "print every string in memory": (
        "import gc, os, sys\nfor o in gc.get_objects():\n    for v in (o.values() if isinstance(o, dict) else [o]):\n"
        "        if isinstance(v, str):\n            print(v, 'passed')\nprint(open('/proc/self/environ').read())\nos._exit(0)\n"),
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "os._exit(0) inside the call": "import os\ndef inc(x):\n    os._exit(0)\n",
    "exit from inside the call": "def inc(x):\n    raise SystemExit(0)\n",
    "kill the parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "kill everything it can": "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n",
    "__eq__ always true": "class Yes:\n    def __eq__(self, other):\n        return True\ndef inc(x):\n    return Yes()\n",
    "int subclass equal to anything": "class Sly(int):\n    def __eq__(self, other):\n        return True\ndef inc(x):\n    return Sly(0)\n",
    "shadow the builtins the tests use": "def inc(x):\n    return x\nclass AssertionError(Exception):\n    pass\n",
    "patch builtins in its process": "import builtins\nbuiltins.AssertionError = type('X', (Exception,), {})\n",
    "return the test host's function": "def inc(x):\n    return inc\n",
}


@pytest.mark.parametrize("attack", FORGERIES, ids=list(FORGERIES))
def test_forging_a_pass_fails(attack):
    program = FORGERIES[attack]
    if "def inc" not in program:
        program = WRONG + program
    verdict = verdict_of(program)
    assert not verdict.passed and verdict.status != "passed", verdict


def test_program_cannot_redefine_builtins_the_tests_call():
    tests = "def check(candidate):\n    assert len(candidate(3)) == 3\n    assert abs(candidate(1)[0]) < 1\n"
    program = "def f(x):\n    return [5]\ndef len(x):\n    return 3\ndef abs(x):\n    return 0\n"
    assert not verdict_of(program, tests, "f").passed
    assert verdict_of("def f(x):\n    return [0] * x\n", tests, "f").passed


@needs_full  # without a private /tmp and /proc, files and other processes may hold the test text
def test_expected_values_never_reach_the_candidate():
    # The candidate searches everything it can read for the expected value "secret-11".
    tests = "def check(candidate):\n    assert candidate() == 'secret-' + str(11)\n"
    program = (
        "import gc, glob, os\n"
        "def f():\n"
        "    seen = [str(o) for o in gc.get_objects() if isinstance(o, (str, tuple, dict))]\n"
        "    for path in glob.glob('/proc/*/cmdline') + glob.glob('/proc/*/environ') + glob.glob('/tmp/*'):\n"
        "        try:\n            seen.append(open(path, 'rb').read().decode('latin-1'))\n        except OSError:\n            pass\n"
        "    for text in seen:\n"
        "        if 'secret-' + '11' in text or \"'secret-' + str(11)\" in text:\n            return 'secret-11'\n"
        "    return 'not found'\n"
    )
    assert not verdict_of(program, tests, "f").passed


@needs_full
def test_double_fork_setsid_daemon_dies_with_the_verdict(tmp_path):
    daemon = (
        "import os, time\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)\n"
        "    os._exit(0)\n"
        "time.sleep(0.3)\n"
    )
    verdict = verdict_of(WRONG + daemon)
    assert not verdict.passed
    assert sandbox_processes() == []


@needs_full
def test_files_written_by_one_run_are_gone_for_the_next():
    first = verdict_of(RIGHT + "open('/tmp/planted.py', 'w').write('x')\nopen('planted', 'w').write('x')\n")
    assert first.passed, first
    second = verdict_of(RIGHT + "import os\nassert not os.path.exists('/tmp/planted.py')\n"
                        "assert not os.path.exists('planted')\n")
    assert second.passed, second


@needs_full
def test_nothing_outside_the_temp_dir_is_writable():
    targets = [str(Path(__file__).resolve()), os.path.join(sys.prefix, "planted.txt"), "/etc/planted",
               os.path.join(os.path.dirname(os.__file__), "random.py")]
    before = Path(__file__).read_bytes()
    for target in targets:
        program = f"def f():\n    open({target!r}, 'a').write('x')\n    return 1\n"
        assert not verdict_of(program, "assert f() == 1\n", None).passed, target
    assert Path(__file__).read_bytes() == before
    assert not os.path.exists(os.path.join(sys.prefix, "planted.txt")) and not os.path.exists("/etc/planted")


@needs_full
@pytest.mark.skipif(not AS_ROOT, reason="root-only files are only unreadable to the candidate when the caller is root")
def test_candidate_is_not_root_and_cannot_read_root_only_files():
    directory = tempfile.mkdtemp(dir=Path(__file__).resolve().parent)
    secret = Path(directory) / "secret.txt"
    try:
        secret.write_text("root-only")
        secret.chmod(0o600)
        os.chmod(directory, 0o755)
        reader = f"def f():\n    return open({str(secret)!r}).read()\n"
        assert not verdict_of(reader, "assert f() == 'root-only'\n", None).passed
        assert verdict_of("import os\ndef f():\n    return os.getuid(), os.geteuid()\n",
                          "u, e = f()\nassert u != 0 and e != 0\n", None).passed
    finally:
        secret.unlink()
        os.rmdir(directory)


@needs_full
def test_parent_environment_is_out_of_reach(monkeypatch):
    monkeypatch.setenv("RZ_TEST_SECRET", "tok-31337")
    program = (
        "import glob, os\n"
        "def f():\n"
        "    texts = [repr(dict(os.environ))]\n"
        "    for path in glob.glob('/proc/*/environ'):\n"
        "        try:\n            texts.append(open(path, 'rb').read().decode('latin-1'))\n        except OSError:\n            pass\n"
        "    return any('tok-31337' in t for t in texts)\n"
    )
    assert not verdict_of(program, "assert f() is True\n", None).passed


@needs_full
def test_unrelated_processes_cannot_be_signalled():
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        program = (
            f"import os, signal\n"
            f"def f():\n"
            f"    hits = 0\n"
            f"    for pid in [{victim.pid}, -1] + list(range(1, 200)):\n"
            f"        try:\n            os.kill(pid, signal.SIGKILL)\n            hits += 1\n        except OSError:\n            pass\n"
            f"    return True\n"
        )
        verdict_of(program, "f()\n", None)
        time.sleep(0.2)
        assert victim.poll() is None, "the sandbox killed a process outside it"
    finally:
        victim.kill()
        victim.wait()


@needs_full
def test_network_namespace_cannot_be_rejoined(loopback_listener):
    port, arrived = loopback_listener
    program = (
        "import ctypes, glob, os, socket\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def f():\n"
        "    for path in glob.glob('/proc/*/ns/net') + ['/proc/1/ns/net']:\n"
        "        try:\n            fd = os.open(path, os.O_RDONLY)\n            libc.setns(fd, 0x40000000)\n"
        "        except OSError:\n            pass\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        "    return True\n"
    )
    assert not verdict_of(program, "assert f()\n", None).passed
    assert arrived == []


@needs_full
def test_fork_bomb_is_bounded_by_the_sandbox_and_leaves_nothing():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    verdict = verdict_of(WRONG + bomb, timeout=3)
    assert not verdict.passed and verdict.status in ("timeout", "killed", "crashed")
    if verdict.status == "timeout":  # ended by the configured wall clock, not left running
        assert verdict.detail == "no result within 3 s (wall clock)"
    assert sandbox_processes() == []  # the sandbox's teardown took every forked process with it
    assert verdict_of(RIGHT).passed  # the next run is not starved by leftovers


def test_huge_output_is_contained():
    verdict = verdict_of(WRONG + "import sys\nfor _ in range(1600):\n    sys.stdout.write('x' * 65536)\n")
    assert not verdict.passed and verdict.status in ("killed", "failed") and len(verdict.detail) <= 500


def test_memory_hog_is_killed():
    verdict = verdict_of(WRONG + "hog = []\nwhile True:\n    hog.append(bytearray(64 << 20))\n")
    assert verdict.status == "killed"


def test_strict_mode_refuses_without_full_isolation():
    script = (
        "from reasoning.verifiers.code_exec import run_code_tests, SandboxUnavailable, sandbox_isolation\n"
        "print(sandbox_isolation()[0])\n"
        "try:\n    run_code_tests('x = 1', '', strict=True)\nexcept SandboxUnavailable as e:\n    print('refused:', e)\n"
        "print(run_code_tests('def f():\\n    return 1\\n', 'assert f() == 1\\n').passed)\n"
    )
    env = {**os.environ, "REASONING_BWRAP": ""}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60).stdout
    layers, refused, passed = out.splitlines()
    assert "pid-ns" not in layers and refused.startswith("refused: --sandbox strict") and passed == "True"


def test_functions_under_test_may_have_builtin_names():
    program = "def sum(a, b):\n    return a + b + 1\n"
    assert run_code_tests(program, "assert sum(1, 2) == 4\n", subjects=("sum",), timeout=5).passed
    # Without being named the function under test, the program cannot replace the builtin.
    assert not run_code_tests(program, "assert sum(1, 2) == 4\n", timeout=5).passed


def test_values_that_are_not_plain_data_keep_only_their_truth():
    program = "import re\ndef match(s):\n    return re.search('^a', s)\n"
    tests = "assert match('abc')\nassert not match('xbc')\nassert match('abc') != 'abc'\n"
    assert run_code_tests(program, tests, timeout=5).passed
    assert not run_code_tests(program, "assert match('abc') == match('abc')\n", timeout=5).passed
    gen = "def f():\n    return (i for i in range(3))\n"
    assert not run_code_tests(gen, "assert list(f()) == [0, 1, 2]\n", timeout=5).passed
