"""The candidate's process in the code sandbox (its source is run with ``python -I -c``).

It holds the candidate program and nothing else: no test, no expected value, no verdict.
``argv[1]`` is the descriptor of a socket to the test host. The first message is ``{"program", "limits", "guard"}``;
the worker applies the limits, runs the program as ``__main__`` and answers with the names it
defined. Then it serves calls: ``(name, args, kwargs)`` in, ``("ok", pickled value, type name, truth value)`` or
``("raise", exception type name, message)`` out. Whatever the candidate does to this process
(patching, printing, writing to fd 3, exiting) can only change the values its functions
return; the tests and their comparisons run in the host, which it cannot reach.
"""

import builtins
import os
import pickle
import resource
import socket
import struct
import sys

_HEADER = struct.Struct("!I")


def _recv(sock):
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            raise EOFError
        head += chunk
    (size,) = _HEADER.unpack(head)
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(1 << 20, size - len(data)))
        if not chunk:
            raise EOFError
        data += chunk
    return pickle.loads(bytes(data))


def _send(sock, message):
    data = pickle.dumps(message, protocol=4)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _limit(name, value):
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError):
        pass


def _no_network():
    """Fallback only: a new, empty network namespace when permitted (root); else nothing."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).unshare(0x40000000)  # CLONE_NEWNET
    except Exception:
        pass


def _guard():
    """Fallback only (no kernel isolation): stop accidents such as ``rm -rf ~``."""
    import shutil
    import subprocess

    def blocked(*args, **kwargs):
        raise PermissionError("blocked in the code sandbox")

    for name in ("system", "popen", "fork", "forkpty", "kill", "killpg", "setsid", "remove", "unlink", "rmdir",
                 "removedirs", "rename", "renames", "replace", "truncate", "chmod", "chown", "posix_spawn",
                 "posix_spawnp", "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe"):
        if hasattr(os, name):
            setattr(os, name, blocked)
    for name in ("rmtree", "move"):
        setattr(shutil, name, blocked)
    for name in ("Popen", "call", "run", "check_call", "check_output", "getoutput", "getstatusoutput"):
        setattr(subprocess, name, blocked)
    for name in ("_posixsubprocess", "multiprocessing", "pty"):
        sys.modules[name] = None


def _describe(error):
    return (type(error).__name__, str(error)[:300], getattr(error, "errno", None))


def _exported(namespace):
    """What the host may use of the program's globals: stubs for callables, plain values."""
    names = {}
    for name, value in list(namespace.items()):
        if name.startswith("__"):
            continue
        if type(value).__name__ == "module":
            names[name] = ("module", getattr(value, "__name__", ""))
        elif callable(value):
            names[name] = ("callable", None)
        else:
            try:
                names[name] = ("value", pickle.dumps(value, protocol=4))
            except BaseException:
                names[name] = ("opaque", type(value).__name__)
    return names


def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    setup = _recv(sock)
    limits = setup["limits"]
    if setup["guard"]:
        _no_network()
    _limit("RLIMIT_CORE", 0)
    _limit("RLIMIT_AS", limits["memory"])
    _limit("RLIMIT_FSIZE", limits["fsize"])
    _limit("RLIMIT_NOFILE", limits["nofile"])
    _limit("RLIMIT_NPROC", limits["nproc"])
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu"], limits["cpu"] + 1))
    except (ValueError, OSError):
        pass
    if setup["guard"]:
        _guard()
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        code = compile(setup["program"], "<candidate>", "exec")
        del setup
        exec(code, namespace)
    except BaseException as error:  # the candidate's own failure, reported as such
        _send(sock, ("load_error",) + _describe(error))
        sys.stdout.flush()
        return
    _send(sock, ("loaded", _exported(namespace)))

    def resolve(value):
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "__rz_ref__":
            return namespace[value[1]]
        return value

    while True:
        try:
            name, args, kwargs = _recv(sock)
        except EOFError:
            return
        try:
            result = namespace[name](*[resolve(a) for a in args], **{k: resolve(v) for k, v in kwargs.items()})
        except BaseException as error:
            _send(sock, ("raise",) + _describe(error))
            continue
        try:
            truth = bool(result)
        except BaseException:
            truth = False
        try:
            payload = pickle.dumps(result, protocol=4)
        except BaseException:
            payload = b""
        _send(sock, ("ok", payload, type(result).__name__, truth))


if __name__ == "__main__":
    main()
