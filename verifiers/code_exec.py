"""Run a candidate program against its tests in a separate, limited process.

This is *best-effort isolation*, not a security boundary like a container or a VM. The
layers, all applied to a fresh child process per call:

1. ``python -I`` (isolated mode: no ``PYTHON*`` variables, no user site) in a new session
   (``start_new_session=True``) whose whole process group is SIGKILLed at the wall timeout
   and again after every run, so stragglers die too.
2. A fresh temporary working directory, removed afterwards; ``HOME`` and ``TMPDIR`` point
   at it and the environment is otherwise minimal (``PATH``, ``LANG``).
3. Resource limits set in the child before the candidate runs (``resource.setrlimit`` in
   the runner itself rather than a ``preexec_fn``, which is unsafe in a threaded parent):
   CPU seconds, address space (memory), file size, open files, process count, no core dumps.
4. No network: when the child may (root, or otherwise permitted), it moves into a new,
   empty network namespace with ``unshare(CLONE_NEWNET)`` via libc, where even 127.0.0.1 is
   down; failing that silently, only layer 5 applies.
5. A guard in the runner, after the above and before the candidate (like human-eval's
   ``reliability_guard``): socket creation, ``os.system``/``fork``/``exec*``/``kill``,
   ``subprocess``, file deletion and the like are replaced by functions that raise.
   Python code can undo this (``ctypes``, ``gc`` tricks); it stops accidents and naive
   code, not a determined adversary.
6. When run as root and the interpreter is readable by ``nobody``, the child drops to
   uid/gid 65534 so the process limit applies and files outside the temp dir cannot be
   changed. When the interpreter lives somewhere ``nobody`` cannot read (for example
   under ``/root``), the child stays root and ``RLIMIT_NPROC`` does not bind (the kernel
   exempts root); then fork bombs are stopped by the guard and the group kill only.

A verdict is ``passed`` only when the runner, after the tests returned, prints a random
per-run token that the candidate never sees; ``sys.exit(0)`` or ``os._exit(0)`` inside the
tests therefore gives ``failed``, not ``passed``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["CodeVerdict", "arun_code_tests", "build_program", "run_code_tests", "set_max_concurrency"]

MEMORY_BYTES = 1 << 30  # 1 GiB address space
FILE_BYTES = 10 << 20  # 10 MB per file, which also caps captured stdout/stderr
MAX_PROCS = 16
MAX_FILES = 64
DETAIL_CHARS = 500
_NOBODY = 65534

STATUSES = ("passed", "failed", "timeout", "crashed", "killed", "error")


@dataclass(slots=True)
class CodeVerdict:
    """``passed`` iff ``status == "passed"``.

    status: passed | failed (an assertion failed, or the tests exited before finishing) |
    timeout (wall clock or CPU limit) | crashed (any other exception, a syntax error, a
    fatal signal) | killed (a resource limit: memory, file size, process count) | error
    (the harness itself could not run the program).
    """

    passed: bool
    status: str
    detail: str = ""
    seconds: float = 0.0
    returncode: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# The runner executes in the child. argv[1] is a JSON config; stdin's first line is the token.
_RUNNER = r'''
import sys, os, json, resource
token = sys.stdin.readline().strip()
cfg = json.loads(sys.argv[1])
_write, _exit, _stdout, _stderr = os.write, os._exit, sys.stdout, sys.stderr

def report(status, detail=""):
    try:
        _stdout.flush(); _stderr.flush()
    except BaseException:
        pass
    _write(1, ("\n" + token + " " + status + " " + detail.replace("\n", " ")[:200] + "\n").encode())
    _exit(0)

def limit(name, value):
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError):
        pass

if cfg["netns"]:
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).unshare(0x40000000)  # CLONE_NEWNET; silently optional
    except Exception:
        pass
if cfg["drop_to"] is not None and os.geteuid() == 0:
    os.setgroups([]); os.setgid(cfg["drop_to"]); os.setuid(cfg["drop_to"])
limit("RLIMIT_CORE", 0)
limit("RLIMIT_AS", cfg["memory"])
limit("RLIMIT_FSIZE", cfg["fsize"])
limit("RLIMIT_NOFILE", cfg["nofile"])
limit("RLIMIT_NPROC", cfg["nproc"])
try:
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu"], cfg["cpu"] + 1))
except (ValueError, OSError):
    pass
with open(cfg["path"], encoding="utf-8") as handle:
    source = handle.read()

def _guard():
    import builtins, shutil, subprocess, socket, _socket
    def blocked(*args, **kwargs):
        raise PermissionError("blocked in the code sandbox")
    for name in ("socket", "socketpair", "create_connection", "create_server", "fromfd", "getaddrinfo"):
        for mod in (socket, _socket):
            if hasattr(mod, name):
                setattr(mod, name, blocked)
    for name in ("system", "popen", "fork", "forkpty", "vfork", "kill", "killpg", "setsid", "setpgid",
                 "putenv", "unsetenv", "remove", "unlink", "rmdir", "removedirs", "rename", "renames",
                 "replace", "truncate", "ftruncate", "chmod", "fchmod", "chown", "fchown", "lchown",
                 "chroot", "fchdir", "setuid", "setgid", "posix_spawn",
                 "posix_spawnp", "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle",
                 "spawnlp", "spawnlpe", "execv", "execve", "execvp", "execvpe", "execl", "execle",
                 "execlp", "execlpe", "_exit"):
        if hasattr(os, name):
            setattr(os, name, blocked)
    for name in ("rmtree", "move", "chown"):
        setattr(shutil, name, blocked)
    for name in ("Popen", "call", "run", "check_call", "check_output", "getoutput", "getstatusoutput"):
        setattr(subprocess, name, blocked)
    builtins.exit = builtins.quit = sys.exit
    for name in ("_posixsubprocess", "multiprocessing", "resource", "psutil", "pty"):
        sys.modules[name] = None

try:
    code = compile(source, "<candidate>", "exec")
except BaseException as bad:
    report("crashed", type(bad).__name__ + ": " + str(bad))
_guard()
del source
try:
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
except SystemExit as stop:
    report("failed", "SystemExit(" + repr(stop.code) + ") before the tests finished")
except AssertionError as bad:
    report("failed", "AssertionError: " + str(bad))
except MemoryError:
    report("killed", "MemoryError (memory limit)")
except RecursionError as bad:
    report("crashed", "RecursionError: " + str(bad))
except OSError as bad:
    if bad.errno in (11, 27):  # EAGAIN (process limit), EFBIG (file size limit)
        report("killed", type(bad).__name__ + ": " + str(bad) + " (resource limit)")
    report("crashed", type(bad).__name__ + ": " + str(bad))
except BaseException as bad:
    report("crashed", type(bad).__name__ + ": " + str(bad))
report("passed")
'''


def build_program(program: str, tests: str, entry_point: str | None = None) -> str:
    """The script that is run: ``program``, then ``tests``, then ``check(entry_point)``.

    That is the HumanEval harness when ``program = prompt + completion`` and ``tests`` is
    its ``test``; for MBPP pass ``test_imports`` + code as ``program`` and the asserts as
    ``tests`` with no entry point.
    """
    parts = [program, tests]
    if entry_point:
        parts.append(f"check({entry_point})")
    return "\n".join(parts) + "\n"


def _readable_by_others(path: str) -> bool:
    """Can uid nobody traverse to and read ``path`` (checked through every parent)?"""
    current = Path(path).resolve()
    for part in [current, *current.parents]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return False
        if not mode & 0o001 if part != current else not mode & 0o005:
            return False
    return True


_DROP_TO: int | None = None
if hasattr(os, "geteuid") and os.geteuid() == 0:
    if all(_readable_by_others(p) for p in {sys.executable, sysconfig.get_paths()["stdlib"]}):
        _DROP_TO = _NOBODY

_SLOTS_LOCK = threading.Lock()
_MAX = max(1, os.cpu_count() or 1)
_THREAD_SLOTS = threading.BoundedSemaphore(_MAX)
_LOOP_SLOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def set_max_concurrency(n: int) -> None:
    """How many sandboxes may run at once (default: the number of CPUs)."""
    global _MAX, _THREAD_SLOTS
    if n < 1:
        raise ValueError("max concurrency must be >= 1")
    with _SLOTS_LOCK:
        _MAX = n
        _THREAD_SLOTS = threading.BoundedSemaphore(n)
        _LOOP_SLOTS.clear()


def _tail(path: Path, limit: int = DETAIL_CHARS) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").strip()
    return text[-limit:]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _interpret(returncode: int | None, token: str, stdout_tail: str, stderr_tail: str) -> tuple[str, str]:
    marker = None
    for line in stdout_tail.splitlines()[::-1]:
        if line.startswith(token + " "):
            marker = line[len(token) + 1 :]
            break
    if marker is not None and returncode == 0:
        status, _, detail = marker.partition(" ")
        return (status if status in STATUSES else "error"), detail or (stderr_tail[-DETAIL_CHARS:] if status != "passed" else "")
    if returncode is not None and returncode < 0:
        sig = -returncode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU or sig == signal.SIGKILL and "CPU" in stderr_tail:
            return "timeout", f"{name} (CPU time limit)"
        if sig in (signal.SIGXFSZ, signal.SIGKILL):
            return "killed", f"{name} (file size or resource limit)"
        return "crashed", f"killed by {name}; {stderr_tail}"[-DETAIL_CHARS:]
    if marker is None:
        # os._exit or a fatal error before the runner could report: the tests did not finish.
        return "failed", f"exited with code {returncode} before the tests finished; {stderr_tail}"[-DETAIL_CHARS:]
    return "error", f"runner exited with code {returncode}; {stderr_tail}"[-DETAIL_CHARS:]


def run_code_tests(program: str, tests: str, entry_point: str | None = None, timeout: float = 10) -> CodeVerdict:
    """Run ``program`` + ``tests`` (+ ``check(entry_point)``) in a sandboxed child process.

    Never raises for anything the candidate does; a harness failure is ``status="error"``.
    At most ``set_max_concurrency`` runs proceed at once across threads.
    """
    with _THREAD_SLOTS:
        return _run(build_program(program, tests, entry_point), timeout)


def _run(source: str, timeout: float) -> CodeVerdict:
    started = time.monotonic()
    token = os.urandom(16).hex()
    workdir = Path(tempfile.mkdtemp(prefix="code-sandbox-"))
    outdir = Path(tempfile.mkdtemp(prefix="code-sandbox-out-"))  # outside the candidate's cwd
    proc = None
    try:
        path = workdir / "candidate.py"
        path.write_text(source, encoding="utf-8")
        if _DROP_TO is not None:
            os.chown(workdir, _DROP_TO, _DROP_TO)
            os.chown(path, _DROP_TO, _DROP_TO)
        config = {
            "path": str(path), "memory": MEMORY_BYTES, "fsize": FILE_BYTES, "nofile": MAX_FILES,
            "nproc": MAX_PROCS, "cpu": max(1, int(timeout) + 1), "netns": True, "drop_to": _DROP_TO,
        }
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
        out_path, err_path = outdir / "stdout", outdir / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _RUNNER, json.dumps(config)],
                stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=workdir, env=env,
                start_new_session=True, close_fds=True,
            )
            try:
                proc.stdin.write((token + "\n").encode())  # type: ignore[union-attr]
                proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc)
            proc.wait()
        stdout_tail = _tail(out_path, 4096)
        stderr_tail = _tail(err_path)
        if timed_out:
            status, detail = "timeout", f"no result within {timeout:g} s (wall clock)"
        else:
            status, detail = _interpret(proc.returncode, token, stdout_tail, stderr_tail)
        return CodeVerdict(status == "passed", status, detail[-DETAIL_CHARS:], time.monotonic() - started, proc.returncode)
    except Exception as failed:  # the harness itself; never the candidate
        if proc is not None:
            _kill_group(proc)
        return CodeVerdict(False, "error", f"{type(failed).__name__}: {failed}", time.monotonic() - started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(outdir, ignore_errors=True)


async def arun_code_tests(program: str, tests: str, entry_point: str | None = None, timeout: float = 10) -> CodeVerdict:
    """Async ``run_code_tests``: waits for a free slot on the loop, then runs in a thread."""
    loop = asyncio.get_running_loop()
    with _SLOTS_LOCK:
        gate = _LOOP_SLOTS.get(loop)
        if gate is None:
            gate = _LOOP_SLOTS[loop] = asyncio.Semaphore(_MAX)
    async with gate:
        return await asyncio.to_thread(run_code_tests, program, tests, entry_point, timeout)
