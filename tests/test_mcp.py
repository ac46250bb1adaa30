"""`reasoning-bench mcp` driven by the official MCP client library over stdio."""

import asyncio
import json
import sys
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parent.parent
SERVER = StdioServerParameters(
    command=sys.executable,
    args=["-m", "reasoning.benchmarks.cli", "mcp", "--backend", "scripted:7,7,3", "--budget-cap", "tokens=50000,seconds=60"],
    cwd=str(ROOT),
)


def tool_json(result):
    """The tool's JSON result, from the text content every MCP version sends."""
    return json.loads(result.content[0].text)


def is_error(result):
    return getattr(result, "is_error", None) or getattr(result, "isError", False)


async def with_session(body):
    async with asyncio.timeout(60):
        async with stdio_client(SERVER) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await body(session)


@pytest.fixture(scope="module")
def session_results():
    """One server process for all checks (starting one costs seconds)."""

    async def body(session):
        tools = await session.list_tools()
        return {
            "tools": {tool.name: tool for tool in tools.tools},
            "solve": await session.call_tool(
                "solve", {"problem": "What is 3+4?", "strategy": "self-consistency", "n": 3, "budget": {"tokens": 5000}}),
            "default": await session.call_tool("solve", {"problem": "What is 3+4?"}),
            "tight": await session.call_tool("solve", {"problem": "What is 3+4?", "n": 8, "budget": "tokens=100"}),
            "over_cap": await session.call_tool("solve", {"problem": "x", "budget": {"tokens": 10**9}}),
            "unknown": await session.call_tool("solve", {"problem": "x", "strategy": "telepathy"}),
            "strategies": await session.call_tool("strategies", {}),
        }

    return asyncio.run(with_session(body))


def test_tools_are_listed_with_schemas(session_results):
    tools = session_results["tools"]
    assert {"solve", "strategies"} <= set(tools)
    schema = tools["solve"].input_schema if hasattr(tools["solve"], "input_schema") else tools["solve"].inputSchema
    assert {"problem", "strategy", "n", "budget"} <= set(schema["properties"])
    assert schema["required"] == ["problem"]


def test_solve_returns_answer_usage_and_trace_summary(session_results):
    result = session_results["solve"]
    assert not is_error(result)
    data = tool_json(result)
    assert data["answer"] == "7" and data["stopped_by"] is None
    assert data["usage"]["calls"] == 1 and data["usage"]["completion_tokens"] == 60
    assert data["trace_summary"]["calls"] == 1
    assert data["trace_summary"]["per_call"][0]["n"] == 3
    assert data["trace_summary"]["per_call"][0]["tokens"] == data["usage"]["tokens"]


def test_solve_defaults_and_budget_limits(session_results):
    assert tool_json(session_results["default"])["answer"] == "7"  # self-consistency, n=8: 7,7,3 cycling
    tight = tool_json(session_results["tight"])
    assert tight["stopped_by"] == "tokens" and tight["usage"]["tokens"] <= 100


def test_rejected_requests_are_tool_errors_with_clear_messages(session_results):
    over = session_results["over_cap"]
    assert is_error(over) and "cap" in over.content[0].text
    unknown = session_results["unknown"]
    assert is_error(unknown) and "telepathy" in unknown.content[0].text


def test_strategies_tool(session_results):
    listed = tool_json(session_results["strategies"])
    assert {"greedy", "self-consistency", "best-of-n"} <= set(listed)


def test_a_failed_backend_is_a_tool_error_that_says_what_failed_without_its_own_text():
    """The backend's own error text (here the upstream's message; elsewhere a URL, provider
    messages or a key's prefix) stays in the server's log, as the HTTP server keeps it; the agent
    is told what kind of failure it was."""
    from reasoning.benchmarks.stub_server import StubServer

    async def body(server):
        params = StdioServerParameters(
            command=sys.executable, cwd=str(ROOT),
            args=["-m", "reasoning.benchmarks.cli", "mcp", "--backend", "openai:stub-model",
                  "--api-base", server.base_url, "--request-timeout", "30"])
        async with asyncio.timeout(120):
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                return await session.call_tool("solve", {"problem": "What is 3+4?", "n": 1})

    with StubServer(failures=[400] * 4) as server:
        result = asyncio.run(body(server))
        assert any(r.status == 400 for r in server.requests)  # the failure came from the upstream
    assert is_error(result)
    text = result.content[0].text
    assert "the upstream model failed" in text and "server's log" in text
    assert "injected failure" not in text  # the upstream's own message
