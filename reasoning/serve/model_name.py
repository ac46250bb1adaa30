"""The model-name grammar: which strategy, how many samples, and which upstream model.

    MODEL NAME := STRATEGY [ "-" N ] [ "/" UPSTREAM ]

    greedy                                   greedy on the server's configured backend
    self-consistency-8                       self-consistency, n=8, configured backend
    best-of-n-4/openai/gpt-4o-mini           best-of-n, n=4, upstream model "openai/gpt-4o-mini"
    self-consistency/my-vllm-model           self-consistency with its default n

* STRATEGY is a registered strategy name (``reasoning-bench strategies``); names contain
  hyphens, so a trailing ``-N`` counts as the sample count only when what precedes it is
  a registered strategy (``best-of-n-4`` is best-of-n with n=4).
* UPSTREAM is everything after the first ``/``, passed on verbatim. With an API backend
  (``--backend litellm:...`` or ``openai:...``) it selects the upstream model for that
  request; with a local/in-process backend (local, vllm, scripted) it must be omitted or
  name the configured model, since that backend can serve only the model it loaded.
* Clients that prefix a provider (litellm's ``openai/self-consistency-8``) strip it before
  sending, so the server sees ``self-consistency-8``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reasoning.errors import ConfigError

_TRAILING_N = re.compile(r"^(?P<name>.+)-(?P<n>\d+)$")


@dataclass(frozen=True, slots=True)
class ModelName:
    strategy: str
    n: int | None = None
    upstream: str | None = None

    def __str__(self) -> str:
        text = self.strategy + (f"-{self.n}" if self.n is not None else "")
        return text + (f"/{self.upstream}" if self.upstream else "")


def parse_model_name(model: str, known_strategies: set[str] | frozenset[str]) -> ModelName:
    """Split ``model`` by the grammar above; a ConfigError names what is wrong."""
    head, _, upstream = model.strip().partition("/")
    if not head:
        raise ConfigError(f"model {model!r} does not start with a strategy name")
    if head in known_strategies:
        return ModelName(head, None, upstream or None)
    match = _TRAILING_N.match(head)
    if match and match["name"] in known_strategies:
        n = int(match["n"])
        if n < 1:
            raise ConfigError(f"model {model!r}: the sample count must be >= 1")
        return ModelName(match["name"], n, upstream or None)
    raise ConfigError(
        f"model {model!r}: unknown strategy {head!r}; the model name is STRATEGY[-N][/UPSTREAM_MODEL] "
        f"with STRATEGY one of: {', '.join(sorted(known_strategies))}"
    )
