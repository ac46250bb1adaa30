"""The test host of the code sandbox (its source is run with ``python -I -c``).

It reads ``{"program", "tests", "entry_point", "subjects", "limits", "uids", ...}`` as JSON on stdin,
starts the candidate's worker process (``_sandbox_worker.py``) with the program, and runs the
tests *here*, where the candidate's code never executes: every name the program defines is a
stub that calls into the worker and gets back plain data (a restricted unpickler admits only
builtin containers, numbers, strings and a few standard value types, so an object whose
``__eq__`` always says yes arrives as an ``Opaque`` that equals nothing but itself). Comparisons, assertions and the verdict happen in
this process, which the worker cannot signal, trace or read (another uid when started as
root; never dumpable). The verdict is one JSON line on the stdout this process had at start;
the worker never holds that descriptor.
"""

import builtins
import io
import json
import os
import pickle
import socket
import struct
import subprocess
import sys

_HEADER = struct.Struct("!I")
MAX_MESSAGE = 64 << 20  # a larger return value is a failure, not a memory blow-up here

_SAFE = {
    "builtins": {"set", "frozenset", "complex", "bytearray", "bytes", "slice", "range", "int", "float", "str", "list",
                 "tuple", "dict", "bool"},
    "collections": {"OrderedDict", "Counter", "deque", "defaultdict"},
    "fractions": {"Fraction"},
    "decimal": {"Decimal"},
    "datetime": {"date", "time", "datetime", "timedelta", "timezone"},
    "copyreg": {"_reconstructor"},
}


class CandidateError(Exception):
    """The worker answered something other than a plain value."""


class WorkerGone(Exception):
    """The worker process ended (exit, signal, resource limit) before answering."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name in _SAFE.get(module, ()):
            return super().find_class(module, name)
        raise CandidateError(f"returned a {module}.{name}, not plain data")


def _plain(data):
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except CandidateError:
        raise
    except BaseException as bad:
        raise CandidateError(f"unreadable return value ({type(bad).__name__})") from None


class Channel:
    def __init__(self, sock):
        self.sock = sock

    def send(self, message):
        data = pickle.dumps(message, protocol=4)
        try:
            self.sock.sendall(_HEADER.pack(len(data)) + data)
        except OSError:
            raise WorkerGone from None

    def recv(self):
        head = self._exact(4)
        (size,) = _HEADER.unpack(head)
        if size > MAX_MESSAGE:
            raise CandidateError(f"returned {size} bytes (over {MAX_MESSAGE})")
        message = _PlainUnpickler(io.BytesIO(self._exact(size))).load()
        if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
            raise CandidateError("malformed answer")
        return message

    def _exact(self, size):
        data = bytearray()
        while len(data) < size:
            try:
                chunk = self.sock.recv(min(1 << 20, size - len(data)))
            except OSError:
                chunk = b""
            if not chunk:
                raise WorkerGone
            data += chunk
        return bytes(data)


def _exception(name, message):
    """The builtin exception type the worker named (tests may catch it), else RuntimeError."""
    kind = getattr(builtins, name, None) if isinstance(name, str) else None
    if isinstance(kind, type) and issubclass(kind, BaseException):
        return kind(message)
    return RuntimeError(f"{name}: {message}")


class Opaque:
    """A return value that is not plain data (a regex match, a custom object): only its truth
    value crosses over, as the program computed it; it equals nothing but itself."""

    __slots__ = ("_kind", "_truth", "_source")

    def __init__(self, kind, truth, source):
        self._kind, self._truth, self._source = kind, truth, source

    def __bool__(self):
        return self._truth

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    __hash__ = object.__hash__

    def __repr__(self):
        return f"<{self._kind} returned by {self._source}: not plain data>"


class Stub:
    """A program-defined callable, called in the worker."""

    def __init__(self, channel, name):
        self._channel, self._name = channel, name

    def __call__(self, *args, **kwargs):
        self._channel.send((self._name, args, kwargs))
        answer = self._channel.recv()
        if answer[0] == "ok" and len(answer) == 4 and isinstance(answer[1], bytes):
            try:
                return _plain(answer[1])
            except CandidateError:
                return Opaque(str(answer[2])[:60], answer[3] is True, self._name)
        if answer[0] == "raise" and len(answer) >= 3:
            raise _exception(answer[1], answer[2])
        raise CandidateError("malformed answer")

    def __reduce__(self):  # passed as an argument: the worker resolves it to its own object
        return (tuple, (("__rz_ref__", self._name),))

    def __repr__(self):
        return f"<candidate function {self._name}>"


def _classify(name, message, errno):
    """Status for an exception raised by the candidate or the tests."""
    if name in ("SystemExit", "KeyboardInterrupt"):
        return "failed", f"{name} before the tests finished"
    if name == "AssertionError":
        return "failed", f"AssertionError: {message}"
    if name == "MemoryError":
        return "killed", "MemoryError (memory limit)"
    if name in ("OSError", "BlockingIOError", "PermissionError") and errno in (11, 27):
        return "killed", f"{name}: {message} (resource limit)"
    return "crashed", f"{name}: {message}"


def _dead_worker(worker):
    """Status for a worker that vanished: how it ended."""
    try:
        code = worker.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return "error", "the worker stopped answering"
    if code < 0:
        sig = -code
        if sig == 24:  # SIGXCPU
            return "timeout", "SIGXCPU (CPU time limit)"
        if sig in (9, 25):
            return "killed", f"signal {sig} (resource limit)"
        return "crashed", f"killed by signal {sig}"
    return "failed", f"exited with code {code} before the tests finished"


def _drop_privileges(uid):
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _not_dumpable():
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
    except Exception:
        pass


def main():
    config = json.loads(sys.stdin.read())
    verdict_fd = os.dup(1)
    os.dup2(2, 1)  # what the tests print goes to stderr, never into the verdict
    sys.stdout = sys.stderr
    host_uid, worker_uid = config["uids"]
    here, there = socket.socketpair()
    output_fd = config["output_fd"]
    worker = subprocess.Popen(
        [sys.executable, "-I", "-c", config["worker_source"], str(there.fileno())],
        stdin=subprocess.DEVNULL, stdout=output_fd, stderr=output_fd, pass_fds=(there.fileno(),),
        cwd=config["workdir"], env=config["env"], close_fds=True,
        user=worker_uid, group=worker_uid, extra_groups=[] if worker_uid is not None else None,
    )
    there.close()
    os.close(output_fd)
    if host_uid is not None:
        _drop_privileges(host_uid)
    _not_dumpable()

    def finish(status, detail=""):
        os.write(verdict_fd, (json.dumps({"status": status, "detail": str(detail)[:500]}) + "\n").encode())
        os._exit(0)

    channel = Channel(here)
    try:
        channel.send({"program": config["program"], "limits": config["limits"], "guard": config["guard"]})
        answer = channel.recv()
    except WorkerGone:
        finish(*_dead_worker(worker))
    except CandidateError as bad:
        finish("failed", str(bad))
    if answer[0] == "load_error" and len(answer) >= 4:
        if answer[1] == "SyntaxError":
            finish("crashed", f"SyntaxError: {answer[2]}")
        finish(*_classify(*answer[1:4]))
    if answer[0] != "loaded" or len(answer) != 2 or not isinstance(answer[1], dict):
        finish("failed", "malformed answer from the candidate")

    namespace = {"__name__": "__main__", "__builtins__": builtins}
    subjects = set(config["subjects"]) | {config["entry_point"]}
    for name, described in answer[1].items():
        # Program names never shadow builtins the tests rely on (a program-defined ``len``
        # or ``abs`` would otherwise decide the tests' own comparisons).
        if not isinstance(name, str) or name.startswith("__") or (hasattr(builtins, name) and name not in subjects):
            continue
        if not isinstance(described, tuple) or len(described) != 2:
            continue
        kind, payload = described
        if kind == "callable":
            namespace[name] = Stub(channel, name)
        elif kind == "module" and isinstance(payload, str) and payload.partition(".")[0] in sys.stdlib_module_names:
            try:
                namespace[name] = __import__(payload, fromlist=["_"]) if "." in payload else __import__(payload)
            except ImportError:
                pass
        elif kind == "value" and isinstance(payload, bytes):
            try:
                namespace[name] = _plain(payload)
            except CandidateError:
                pass
    tests = config["tests"]
    if config["entry_point"]:
        tests += f"\ncheck({config['entry_point']})\n"
    try:
        exec(compile(tests, "<tests>", "exec"), namespace)
    except WorkerGone:
        finish(*_dead_worker(worker))
    except CandidateError as bad:
        finish("failed", str(bad))
    except BaseException as bad:
        finish(*_classify(type(bad).__name__, str(bad), getattr(bad, "errno", None)))
    finish("passed")


if __name__ == "__main__":
    main()
