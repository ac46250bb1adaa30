"""Strategies by name: the core registry (entry points, group ``reasoning.strategies``), plus
building one from loose options (CLI flags, model names, sweep specs)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from reasoning.errors import ConfigError
from reasoning.registry import STRATEGIES
from reasoning.strategy import OptionInfo, Strategy


def register(name: str):
    """Class decorator: make a strategy available under ``name`` in this process (installed
    packages declare an entry point in the group ``reasoning.strategies`` instead)."""
    return STRATEGIES.register(name)


def get(name: str) -> type[Strategy]:
    return STRATEGIES.get(name)


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
    return STRATEGIES.available()
