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
    """Build a backend from its CLI name (see the module docstring)."""
    kind, _, rest = spec.partition(":")
    if kind == "local":
        return __getattr__("Local")(rest or None, **options)
    if kind == "litellm":
        if not rest:
            raise ConfigError("litellm backend needs a model: --backend litellm:openai/gpt-4o-mini")
        return __getattr__("LiteLLM")(rest, api_base=api_base, api_key=api_key, **options)
    if kind == "openai":
        if not rest or not api_base:
            raise ConfigError("openai backend needs a model and --api-base: --backend openai:MODEL --api-base URL")
        return __getattr__("OpenAICompatible")(rest, base_url=api_base, api_key=api_key, **options)
    if kind == "vllm":
        return __getattr__("VLLM")(rest or None, **options)
    if kind == "scripted":
        answers, _, query = rest.partition("?")
        for item in filter(None, query.split("&")):
            key, _, value = item.partition("=")
            if key not in ("latency", "misreport"):
                raise ConfigError(f"scripted backend option {key!r} unknown; only latency=SECONDS, misreport=FACTOR")
            options[key] = float(value)
        return Scripted(answers.split(",") if answers else ("42",), **options)
    raise ConfigError(f"unknown backend {spec!r}; use local, local:PATH, litellm:MODEL, openai:MODEL, vllm[:PATH] or scripted")
