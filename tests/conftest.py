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
