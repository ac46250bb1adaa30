"""Every backend call of a run as a node of a tree, JSON serialisable and replayable.

Node kinds: "span" (a strategy step that groups calls, e.g. one self-consistency group),
"generate" (one backend call: request, completions, usage) and "verify" (a scoring step).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class TraceNode:
    id: int
    parent: int | None
    kind: str
    name: str
    started: float
    ended: float | None = None
    request: dict[str, Any] | None = None
    completions: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Trace:
    """Append-only list of nodes; parents link them into a tree."""

    def __init__(self) -> None:
        self.nodes: list[TraceNode] = []
        self._t0 = time.monotonic()
        # Wall clock (ns since the epoch) at relative time 0: nodes' times as absolute instants
        # (OpenTelemetry export, reasoning/telemetry.py).
        self.started_ns = time.time_ns()

    def add(self, kind: str, name: str, parent: int | None, **fields: Any) -> TraceNode:
        node = TraceNode(len(self.nodes), parent, kind, name, time.monotonic() - self._t0, **fields)
        self.nodes.append(node)
        return node

    def close(self, node: TraceNode) -> None:
        node.ended = time.monotonic() - self._t0

    def calls(self) -> list[TraceNode]:
        return [node for node in self.nodes if node.kind == "generate"]

    def children(self, node_id: int | None) -> list[TraceNode]:
        return [node for node in self.nodes if node.parent == node_id]

    def to_list(self) -> list[dict[str, Any]]:
        return [asdict(node) for node in self.nodes]

    def to_json(self) -> str:
        return json.dumps(self.to_list(), ensure_ascii=False)

    @classmethod
    def from_list(cls, items: list[dict[str, Any]]) -> Trace:
        trace = cls()
        trace.nodes = [TraceNode(**item) for item in items]
        return trace

    def __len__(self) -> int:
        return len(self.nodes)
