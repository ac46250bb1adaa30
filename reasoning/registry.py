"""Name -> plugin class, for strategies, verifiers and backends, filled from entry points.

The core never imports a plugin by name. The project declares its own strategies, verifiers
and backends in ``pyproject.toml`` exactly as a third party would::

    [project.entry-points."reasoning.strategies"]
    my-vote = "my_pkg:MyVote"

and they are loaded the first time a name is asked for. Classes may also register
themselves in-process with ``@STRATEGIES.register("name")`` (tests, notebooks). Run from a
source checkout that was never installed there is no entry-point metadata for the project;
then its own entry points are read from the checkout's ``pyproject.toml``.
"""

from __future__ import annotations

import tomllib
import warnings
from collections.abc import Callable
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution, entry_points
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")

__all__ = ["BACKENDS", "STRATEGIES", "VERIFIERS", "Registry"]


class Registry(Generic[T]):
    def __init__(self, group: str, kind: str) -> None:
        self.group, self.kind = group, kind
        self._classes: dict[str, T] = {}
        self._entry_points: dict[str, EntryPoint] | None = None

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make ``cls`` available under ``name`` (sets ``cls.name``)."""

        def wrap(cls: T) -> T:
            known = self._classes.get(name)
            if known is not None and known is not cls and _qualname(known) != _qualname(cls):
                raise ValueError(f"{self.kind} name {name!r} registered twice ({_qualname(known)}, {_qualname(cls)})")
            if self.kind == "strategy":
                cls.name = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return wrap

    def unregister(self, name: str) -> None:
        """Forget a class registered in this process under ``name`` (tests, notebooks that
        redefine one); installed entry points stay listed."""
        self._classes.pop(name, None)

    def _points(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            points = {ep.name: ep for ep in _checkout_entry_points(self.group)}
            points.update({ep.name: ep for ep in entry_points(group=self.group)})
            self._entry_points = points
        return self._entry_points

    def _load(self, name: str) -> T | None:
        if name in self._classes:
            return self._classes[name]
        point = self._points().get(name)
        if point is not None:
            try:
                cls = point.load()
            except Exception as failed:
                raise ConfigError(f"{self.kind} {name!r} (entry point {point.value}) failed to load: "
                                  f"{type(failed).__name__}: {failed}") from None
            if self.kind == "strategy" and getattr(cls, "name", None) == "strategy":
                cls.name = name  # a plugin strategy that did not name itself takes its entry point's name
            self._classes.setdefault(name, cls)
            return self._classes[name]
        return None

    def get(self, name: str) -> T:
        cls = self._load(name)
        if cls is None:
            raise ConfigError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return cls

    def names(self) -> list[str]:
        """Every name, sorted, without loading anything."""
        return sorted({*self._points(), *self._classes})

    def available(self) -> dict[str, T]:
        """Every name and its class, sorted; a plugin that fails to load is left out with a warning."""
        for name in self._points():
            try:
                self._load(name)
            except ConfigError as broken:
                warnings.warn(str(broken), stacklevel=2)
        return dict(sorted(self._classes.items()))

    def refresh(self) -> None:
        """Read the entry points again (after installing a plugin in a running process)."""
        self._entry_points = None

    def __iter__(self):
        return iter(self.names())

    def __contains__(self, name: str) -> bool:
        try:
            return self._load(name) is not None
        except ConfigError:
            return True


_DISTRIBUTION = "reasoning-tts"
_CHECKOUT_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _checkout_entry_points(group: str) -> list[EntryPoint]:
    """The project's own entry points from its pyproject.toml, when it is not installed."""
    try:
        distribution(_DISTRIBUTION)
        return []  # installed (editable or not): its metadata has them
    except PackageNotFoundError:
        pass
    try:
        declared = tomllib.loads(_CHECKOUT_PYPROJECT.read_text(encoding="utf-8"))["project"]["entry-points"][group]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return []
    return [EntryPoint(name, value, group) for name, value in declared.items()]


def _qualname(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)}"


STRATEGIES: Registry[Any] = Registry("reasoning.strategies", "strategy")
VERIFIERS: Registry[Any] = Registry("reasoning.verifiers", "verifier")
BACKENDS: Registry[Any] = Registry("reasoning.backends", "backend")
