import os
import sys
from pathlib import Path

# Tests never reach for the network: local cost map, offline hub.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


import asyncio

import pytest


@pytest.fixture(scope="module")
def local_backend():
    """The embedded model on CPU, loaded once per test module (slow tests only)."""
    from reasoning.backends.local import Local

    local = Local()
    asyncio.run(local.load())
    yield local
    asyncio.run(local.aclose())


@pytest.fixture
def loopback_listener():
    """A TCP listener on 127.0.0.1 that records every connection that arrives for 4 s:
    yields (port, arrived); the test asserts what arrived."""
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    arrived: list = []

    def accept():
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                arrived.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        yield server.getsockname()[1], arrived
    finally:
        thread.join()
        server.close()

