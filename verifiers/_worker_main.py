"""Entry point of a verifier worker process: `python -m reasoning.verifiers._worker_main READ_FD WRITE_FD`.

Runs math_verify with its own (signal-based) timeouts disabled; the parent
enforces the time limit by killing this process. Started with a fresh
interpreter, not multiprocessing, so the caller's `__main__` is never re-imported
and no threads or GPU state are forked.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from multiprocessing.connection import Connection


def compare(gold: str, pred: str) -> bool | None:
    """math_verify's verdict on two bare answers; None when either does not parse."""
    from math_verify import verify

    gold_parsed = _parse(gold)
    pred_parsed = _parse(pred)
    if not _has_expression(gold_parsed) or not _has_expression(pred_parsed):
        return None
    return bool(verify(gold_parsed, pred_parsed, allow_set_relation_comp=True, timeout_seconds=None))


def sleep_then(seconds: float, result: object) -> object:
    """Test hook: a job that takes ``seconds``."""
    time.sleep(seconds)
    return result


JOBS = {"compare": compare, "sleep_then": sleep_then}


def _parse(answer: str) -> list:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return parse(
        f"${answer}$",
        extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
        parsing_timeout=None,
    )


def _has_expression(parsed: list) -> bool:
    # parse() falls back to the raw string when sympy conversion fails.
    return any(not isinstance(item, str) for item in parsed)


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(0)


def main(read_fd: int, write_fd: int) -> None:
    # math_verify warns once per process that its timeout is off; that is on purpose here.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    inbox = Connection(read_fd, writable=False)
    outbox = Connection(write_fd, readable=False)
    compare("1", "1")  # import and warm up sympy / the latex parser before saying ready
    outbox.send(("ready", None))
    while True:
        try:
            job_name, args = inbox.recv()
        except EOFError:
            return
        try:
            outbox.send(("ok", JOBS[job_name](*args)))
        except Exception as error:  # noqa: BLE001 - reported to the parent; one bad input must not kill the worker
            outbox.send(("error", f"{type(error).__name__}: {error}"[:500]))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
