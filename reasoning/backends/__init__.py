"""Backends: where samples come from. Heavy ones (torch, litellm) import lazily.

``from_spec`` turns the CLI's ``--backend`` string into a backend:
  local                    the embedded default model on CPU (transformers)
  local:PATH               a local HF model folder on CPU
  litellm:MODEL            any litellm model string (``--api-base`` for custom servers)
  openai:MODEL             an OpenAI-compatible server through the official client (needs api_base)
  scripted[:A,B,...][?latency=S&misreport=F]  the deterministic test backend answering A, B, ...
                           (misreport: reported usage x F, a broken upstream for tests)
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ConfigError
from .base import Backend, byte_bound_prompt_tokens
from .replay import Replay
from .scripted import Scripted, ScriptedFailure

_LAZY = {
    "LiteLLM": ".litellm_backend",
    "OpenAICompatible": ".openai_compat",
    "Local": ".local",
    "VLLM": ".vllm_backend",
}

__all__ = ["Backend", "Replay", "Scripted", "ScriptedFailure", "byte_bound_prompt_tokens", "from_spec", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name], __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def from_spec(spec: str, *, api_base: str | None = None, api_key: str | None = None, **options: Any) -> Backend:
    """Build a backend from its CLI name ``KIND[:REST]`` (see the module docstring): KIND names
    a backend plugin (entry points, group ``reasoning.backends``), whose ``from_spec`` reads REST."""
    from ..registry import BACKENDS

    kind, _, rest = spec.partition(":")
    if kind not in BACKENDS.names():
        raise ConfigError(f"unknown backend {spec!r}; use local, local:PATH, litellm:MODEL, openai:MODEL, vllm[:PATH], "
                          f"scripted[:A,B] or a plugin's name ({', '.join(BACKENDS.names())})")
    return BACKENDS.get(kind).from_spec(rest, api_base=api_base, api_key=api_key, **options)
