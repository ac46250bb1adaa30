"""Serve strategies to agents: an OpenAI-compatible HTTP proxy and an MCP tool server.

    reasoning-bench serve --backend litellm:openai/gpt-4o-mini --port 8000
    reasoning-bench mcp --backend local

The model name picks the strategy (grammar in ``model_name``); see README, "Use it from an agent".
"""

from .model_name import ModelName, parse_model_name
from .service import BackendPool, ReasoningService, RequestRejected, SolveRequest

__all__ = ["BackendPool", "ModelName", "ReasoningService", "RequestRejected", "SolveRequest", "parse_model_name"]
