"""Name -> strategy class, discovered from the modules of this package."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from pydantic import ValidationError

from reasoning.errors import ConfigError
from reasoning.strategy import OptionInfo, Strategy

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


def options_of(cls: type[Strategy]) -> dict[str, OptionInfo]:
    """The strategy's declared options (typed fields), in declaration order."""
    return cls.options()


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
    missing = [k for k, p in accepted.items() if p.required and k not in kwargs]
    if missing:
        raise ConfigError(f"strategy {name!r} needs: {', '.join('--' + m.replace('_', '-') for m in missing)}")
    try:
        return cls(**kwargs)
    except ValidationError as bad:
        raise ConfigError(f"strategy {name!r}: {explain(bad)}") from None
    except (TypeError, ValueError) as bad:
        raise ConfigError(f"strategy {name!r}: {bad}") from None


_MUST = {
    "greater_than_equal": ">= {ge}", "greater_than": "> {gt}", "less_than": "< {lt}", "less_than_equal": "<= {le}",
    "int_type": "an integer", "float_type": "a number", "bool_type": "true or false", "string_type": "a string",
    "literal_error": "one of {expected}",
}


def explain(error: ValidationError) -> str:
    """A pydantic error in the project's words, one clause per option: ``n must be >= 1 (got 0)``."""
    parts = []
    for issue in error.errors():
        where = ".".join(str(p) for p in issue["loc"] if not isinstance(p, int))
        if issue["type"] in _MUST and where:
            parts.append(f"{where} must be {_MUST[issue['type']].format(**issue.get('ctx', {}))} (got {issue['input']!r})")
        elif issue["type"] == "extra_forbidden":
            parts.append(f"no option {where!r}")
        else:
            parts.append(issue["msg"].removeprefix("Value error, ") + (f" ({where})" if where else ""))
    return "; ".join(parts)


def available() -> dict[str, type[Strategy]]:
    _discover()
    return dict(sorted(_REGISTRY.items()))
