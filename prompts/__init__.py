"""Prompts are files in this folder, named for what they ask.

A prompt file has sections headed ``### system`` / ``### user`` / ``### assistant``; its
variables are written ``{{name}}`` (double braces, so LaTeX braces need no escaping) and
listed on a first line ``# variables: a, b``. ``render`` refuses missing or unknown
variables instead of sending a half-filled prompt.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from reasoning.types import Message

_VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_SECTION = re.compile(r"^### (system|user|assistant)\s*$", re.MULTILINE)


class Prompt:
    def __init__(self, name: str, sections: list[tuple[str, str]], variables: list[str]) -> None:
        self.name = name
        self.sections = sections
        self.variables = variables

    def render(self, **values: str) -> tuple[Message, ...]:
        missing = set(self.variables) - values.keys()
        unknown = values.keys() - set(self.variables)
        if missing or unknown:
            raise KeyError(f"prompt {self.name!r}: missing {sorted(missing)}, unknown {sorted(unknown)}")
        fill = lambda text: _VARIABLE.sub(lambda m: str(values[m.group(1)]), text)  # noqa: E731
        return tuple(Message(role, fill(text)) for role, text in self.sections)  # type: ignore[arg-type]


@lru_cache(maxsize=None)
def load_prompt(name: str) -> Prompt:
    """Load ``prompts/<name>.md``."""
    try:
        raw = resources.files(__name__).joinpath(f"{name}.md").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyError(f"no prompt named {name!r}; available: {', '.join(available_prompts())}") from None
    header, _, body = raw.partition("\n")
    if not header.startswith("# variables:"):
        raise ValueError(f"prompt {name!r} must start with '# variables: ...'")
    variables = [v.strip() for v in header.removeprefix("# variables:").split(",") if v.strip()]
    parts = _SECTION.split(body)
    sections = [(parts[i], parts[i + 1].strip("\n")) for i in range(1, len(parts), 2)]
    used = {m.group(1) for _, text in sections for m in _VARIABLE.finditer(text)}
    if used != set(variables):
        raise ValueError(f"prompt {name!r} declares {sorted(variables)} but uses {sorted(used)}")
    return Prompt(name, sections, variables)


def available_prompts() -> list[str]:
    return sorted(p.name[:-3] for p in resources.files(__name__).iterdir() if p.name.endswith(".md"))
