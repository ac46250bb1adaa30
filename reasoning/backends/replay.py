"""Replay a recorded trace without a model: the same requests get the same completions.

Useful to re-run a strategy's logic (voting, selection, a new verifier threshold) over a
costly run for free, and to turn a real run into a regression test.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict, deque

from ..budget import CallShape
from ..errors import BackendError
from ..trace import Trace
from ..types import Capabilities, Completion, GenerationRequest, GenerationResponse
from .base import Backend


def _key(request: dict) -> str:
    return json.dumps(request, sort_keys=True, ensure_ascii=False)


class Replay(Backend):
    """Serves each recorded call's completions and usage, in recorded order per request."""

    capabilities = Capabilities(native_n=True, logprobs=True, token_ids=True, exact_prompt_tokens=True, score=True)

    def __init__(self, *traces: Trace, name: str = "replay") -> None:
        self.name = name
        self._calls: dict[str, deque] = defaultdict(deque)
        self._prompt_tokens: dict[str, int] = {}
        for trace in traces:
            for node in trace.calls():
                if node.error or node.request is None:
                    continue
                key = _key(node.request)
                self._calls[key].append(node)
                self._prompt_tokens[key] = int(node.usage.get("prompt_tokens", 0))

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return self._prompt_tokens.get(_key(request.to_dict()), 0)

    def call_shape(self, request: GenerationRequest) -> CallShape:
        """Bounds that cover the recorded call's usage (its calls and USD too), so that the
        ledger charges a replayed call as recorded rather than flagging it out of bounds."""
        shape = super().call_shape(request)
        queue = self._calls.get(_key(request.to_dict()))
        if not queue:
            return shape
        usage = queue[0].usage
        fan_out = usage.get("calls", 1) > 1
        usd_per_token = usage.get("usd", 0.0) / max(1, usage.get("tokens", 0))
        return dataclasses.replace(shape, prompt_copies_per_sample=False, calls_per_sample=fan_out,
                                   usd_per_prompt_token=usd_per_token, usd_per_completion_token=usd_per_token)

    async def generate(self, request: GenerationRequest) -> GenerationResponse:
        queue = self._calls.get(_key(request.to_dict()))
        if not queue:
            raise BackendError(f"replay: no recorded call left for this request (n={request.n})")
        node = queue.popleft()
        completions = [Completion.from_dict(c) for c in node.completions]  # as recorded, stop string included
        usage = node.usage
        return GenerationResponse(
            completions,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            calls=int(usage.get("calls", 1)),
            usd=float(usage.get("usd", 0.0)),
            info={"replayed_node": node.id},
        )
