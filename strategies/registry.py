"""Name -> strategy class, discovered from the modules of this package."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from reasoning.errors import ConfigError
from reasoning.strategy import Strategy

_REGISTRY: dict[str, type[Strategy]] = {}
_HELPERS = {"registry", "voting", "candidates"}


def register(name: str):
    """Class decorator: make a strategy available under ``name``."""

    def wrap(cls: type[Strategy]) -> type[Strategy]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"strategy name {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _discover() -> None:
    for module in pkgutil.iter_modules(importlib.import_module(__package__).__path__):
        if module.name not in _HELPERS:
            importlib.import_module(f"{__package__}.{module.name}")


def get(name: str) -> type[Strategy]:
    if name not in _REGISTRY:
        _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown strategy {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def options_of(cls: type[Strategy]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls.__init__).parameters
    return {k: p for k, p in params.items() if k != "self" and p.kind is not p.VAR_KEYWORD}


def create(name: str, **options: Any) -> Strategy:
    """Instantiate a strategy from loose options (CLI flags): unknown ones are ignored,
    a missing required one is a ConfigError naming it."""
    cls = get(name)
    accepted = options_of(cls)
    if "n" in options and cls.size_option not in (None, "n"):
        options = dict(options)  # n means this strategy's own size option (paths, max_n, ...)
        size = options.pop("n")
        options.setdefault(cls.size_option, size)
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    missing = [k for k, p in accepted.items() if p.default is p.empty and k not in kwargs]
    if missing:
        raise ConfigError(f"strategy {name!r} needs: {', '.join('--' + m.replace('_', '-') for m in missing)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as bad:
        raise ConfigError(f"strategy {name!r}: {bad}") from None


def available() -> dict[str, type[Strategy]]:
    _discover()
    return dict(sorted(_REGISTRY.items()))
