"""An MCP tool server (stdio): agents call ``solve`` to get test-time compute.

    reasoning-bench mcp --backend litellm:openai/gpt-4o-mini --budget-cap tokens=100000

Tools:
  solve(problem, strategy="self-consistency", n=None, budget=None)
      -> {answer, text, usage, stopped_by, trace_summary}
  strategies() -> {name: first line of its description}

Budgets follow the HTTP server's rules: a dict such as {"tokens": 20000, "usd": 0.05}
(or "tokens=20000,usd=0.05"), merged over the default budget and refused above the cap.
A rejected request comes back as a tool error saying what to fix; a failed backend as one saying
what failed (unreachable, timed out, credentials refused...), its own text only in the server's log.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from reasoning.errors import BackendError, ConfigError

from .errors import upstream_message
from .service import ReasoningService, SolveRequest, trace_summary


def _mcp_api():
    """(server class, ToolError): mcp 2.x renamed FastMCP to MCPServer."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError

        return MCPServer, ToolError
    except ImportError:
        from mcp.server.fastmcp import FastMCP
        from mcp.server.fastmcp.exceptions import ToolError

        return FastMCP, ToolError


def build_mcp_server(service: ReasoningService):
    # ToolError's message reaches the agent; other exceptions are hidden from it by mcp.
    server_class, ToolError = _mcp_api()
    server = server_class("reasoning", instructions=(
        "Solve a reasoning or math problem with a test-time-compute strategy (e.g. self-consistency voting over "
        "several samples) under an enforced compute budget. Returns the answer, the tokens used, and what stopped it."
    ))

    @server.tool()
    async def solve(problem: str, strategy: str = "self-consistency", n: int | None = None,
                    budget: dict[str, float] | str | None = None) -> dict[str, Any]:
        """Solve `problem` with `strategy` (see the `strategies` tool) using `n` samples, within `budget`
        (limits: tokens, completion_tokens, calls, usd, flops, seconds; e.g. {"tokens": 20000})."""
        try:
            result = await service.solve(SolveRequest(problem=problem, strategy=strategy, n=n, budget=budget))
        except ConfigError as bad:  # RequestRejected included: the caller can fix it
            raise ToolError(str(bad)) from None
        except BackendError as failed:  # as the HTTP server: the error's own text only in the log
            raise ToolError(upstream_message(failed)[2]) from None
        return {
            "answer": result.answer,
            "text": result.text,
            "usage": result.usage.to_dict(),
            "stopped_by": result.stopped_by,
            "trace_summary": trace_summary(result),
        }

    @server.tool()
    def strategies() -> dict[str, str]:
        """The strategies `solve` accepts, with a one-line description each."""
        from reasoning.strategies import available

        return {name: (inspect.getdoc(sys.modules[cls.__module__]) or "").split("\n")[0]
                for name, cls in available().items()}

    return server
