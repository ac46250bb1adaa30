"""A few long-lived helper processes that run jobs under a hard time limit.

A job that overruns its limit gets its worker killed (the only reliable way to
stop sympy mid-computation); a fresh worker is started on the next call.
Thread-safe: each call borrows one idle worker, at most ``size`` at a time.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import Connection
from pathlib import Path

logger = logging.getLogger(__name__)

_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
_LIVE_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


class WorkerFailed(Exception):
    """The job did not produce a result: timed out, worker crashed, or the job raised."""


class _Worker:
    def __init__(self) -> None:
        to_child_read, to_child_write = os.pipe()
        from_child_read, from_child_write = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT_ROOT, env.get("PYTHONPATH")]))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reasoning.verifiers._worker_main", str(to_child_read), str(from_child_write)],
                pass_fds=(to_child_read, from_child_write),
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=_PROJECT_ROOT,
            )
        except OSError as error:
            os.close(to_child_write)
            os.close(from_child_read)
            raise WorkerFailed(f"cannot start worker: {error}") from error
        finally:
            os.close(to_child_read)
            os.close(from_child_write)
        self.inbox = Connection(from_child_read, writable=False)
        self.outbox = Connection(to_child_write, readable=False)

    def wait_ready(self, timeout: float) -> None:
        self._receive(timeout)

    def run(self, job_name: str, args: tuple, timeout: float) -> object:
        try:
            self.outbox.send((job_name, args))
        except OSError as error:
            raise WorkerFailed(f"worker gone: {error}") from error
        return self._receive(timeout)

    def _receive(self, timeout: float) -> object:
        try:
            if not self.inbox.poll(timeout):
                raise WorkerFailed(f"no answer within {timeout:.1f}s")
            status, value = self.inbox.recv()
        except (EOFError, OSError) as error:
            raise WorkerFailed(f"worker gone: {error}") from error
        if status == "error":
            raise WorkerFailed(f"job raised {value}")
        return value

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.inbox.close()
        self.outbox.close()


class WorkerPool:
    """Runs named jobs of ``verifiers._worker_main.JOBS`` in at most ``size`` processes."""

    def __init__(self, size: int, startup_timeout: float = 120.0) -> None:
        self.size = size
        self.startup_timeout = startup_timeout
        self._reset()
        _LIVE_POOLS.add(self)

    def _reset(self) -> None:
        self._owner_pid = os.getpid()
        self._slots = threading.BoundedSemaphore(self.size)
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()

    def run(self, job_name: str, args: tuple, timeout: float) -> object:
        """The job's result; raises WorkerFailed if it fails or runs past ``timeout`` seconds.

        The time limit covers the job only, not waiting for a free worker or
        starting one.
        """
        self._forget_workers_after_fork()
        with self._slots:
            worker = self._borrow()
            try:
                result = worker.run(job_name, args, timeout)
            except BaseException:  # overran, crashed, or we were interrupted mid-job: never reuse it
                worker.kill()
                raise
            self._idle.put(worker)
            return result

    def close(self) -> None:
        """Stop the idle workers. A busy one exits by itself once this process is gone."""
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                return

    def _borrow(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        worker = _Worker()
        try:
            worker.wait_ready(self.startup_timeout)
        except WorkerFailed as error:
            worker.kill()
            raise WorkerFailed(f"worker did not start: {error}") from error
        return worker

    def _forget_workers_after_fork(self) -> None:
        # A forked child shares the parent's pipes; it must start its own workers.
        # No lock here: one inherited from the parent may be held forever.
        if os.getpid() != self._owner_pid:
            self._reset()


@atexit.register
def _close_all_pools() -> None:
    for pool in list(_LIVE_POOLS):
        if pool._owner_pid == os.getpid():
            pool.close()
