"""OpenTelemetry export of solves, with the GenAI semantic conventions (optional extra:
``pip install 'reasoning-tts[otel]'``).

Each finished solve becomes one OpenTelemetry trace built from its ``Result.trace``, one span
per trace node, parent and child as in the trace, each with the node's own start and end:

- the solve (the trace's root): ``invoke_workflow {strategy}``, with the strategy, its options,
  the budget's limits, what stopped it and its total usage as ``reasoning.*`` attributes;
- strategy spans (``ctx.span``, slices, verify steps): the node's name, its info as
  ``reasoning.info.*``;
- model calls (each backend call ``ctx.generate`` made): ``chat {model}`` (``text_completion
  {model}`` for a raw prompt or token ids), kind CLIENT, with ``gen_ai.operation.name``,
  ``gen_ai.provider.name`` / ``gen_ai.system``, ``gen_ai.request.*`` (model, max_tokens,
  temperature, top_p, choice.count, seed, stop_sequences), ``gen_ai.usage.input_tokens`` /
  ``output_tokens`` / ``cache_read.input_tokens`` (what the ledger charged: they add up to the
  Result's usage), ``gen_ai.response.finish_reasons``, and ``reasoning.role``,
  ``reasoning.usage.*``. A call the budget refused is a span with ``reasoning.refused``. Prompts
  and completions are attached (``gen_ai.input.messages`` / ``gen_ai.output.messages``) only when
  ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.

Spans are made after the solve, from its trace: nothing runs in the hot path, and this module
imports ``opentelemetry`` only once telemetry is enabled, by ``enable()`` (the CLI's ``--otel``)
or by ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) being set when a solve
finishes. Exporting never fails a solve: an error is logged and the result returned.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .budget import Budget
    from .solve import Result
    from .trace import TraceNode

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
CAPTURE_CONTENT_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
INSTALL_HINT = "pip install 'reasoning-tts[otel]'"
SERVICE_NAME = "reasoning-tts"
# Backend kinds (the part of a backend's name before ':') as gen_ai.provider.name; litellm's
# provider prefix (``anthropic/...``) is mapped to the convention's names.
_LITELLM_PROVIDERS = {
    "openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini", "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock", "azure": "azure.ai.openai", "azure_ai": "azure.ai.inference", "cohere": "cohere",
    "mistral": "mistral_ai", "groq": "groq", "deepseek": "deepseek", "xai": "x_ai", "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
}
_MAX_TEXT = 4096  # longest JSON-encoded attribute value kept (options, info); longer is cut
# At most this many attributes from one info dict; more (a vote over many answers) go as one JSON
# string: the SDK keeps 128 attributes per span and evicts the oldest, the GenAI ones, first.
_MAX_INFO_ATTRIBUTES = 48

log = logging.getLogger(__name__)


class _State:
    def __init__(self) -> None:
        self.tracer: Any = None  # an opentelemetry Tracer while telemetry is on
        self.provider: Any = None  # the TracerProvider spans go to (flushed by flush())
        self.own = False  # the provider was made here (shut down by disable())
        self.off = False  # disable() was called: the environment no longer turns it on
        self.lock = threading.Lock()


_state = _State()


def enable(tracer_provider: Any = None) -> None:
    """Export every solve from now on. ``tracer_provider``: an OpenTelemetry SDK TracerProvider
    of yours (your application's, or one with an ``InMemorySpanExporter`` in tests); by default
    the global one where an application has set one, else a new one that sends OTLP over HTTP to
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (default ``http://localhost:4318``) in batches, with
    ``service.name`` ``reasoning-tts`` unless ``OTEL_SERVICE_NAME`` says otherwise."""
    try:
        from opentelemetry import trace as otel_trace
    except ImportError as missing:
        raise ImportError(f"OpenTelemetry export needs the otel extra: {INSTALL_HINT}") from missing
    with _state.lock:
        own = False
        if tracer_provider is None:
            current = otel_trace.get_tracer_provider()
            if isinstance(current, (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider)):
                tracer_provider, own = _otlp_provider(), True
            else:
                tracer_provider = current
        if _state.own and _state.provider is not tracer_provider:
            _state.provider.shutdown()
        _state.tracer = tracer_provider.get_tracer("reasoning", _version())
        _state.provider, _state.own, _state.off = tracer_provider, own, False


def disable() -> None:
    """Stop exporting (also when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set); a provider made by
    ``enable()`` is flushed and shut down."""
    with _state.lock:
        if _state.own and _state.provider is not None:
            _state.provider.shutdown()
        _state.tracer, _state.provider, _state.own, _state.off = None, None, False, True


def flush(timeout_s: float = 10.0) -> None:
    """Send the spans still batched (the CLI calls it before it exits). No-op when off."""
    provider = _state.provider
    if provider is not None and hasattr(provider, "force_flush"):
        provider.force_flush(int(timeout_s * 1000))


def active() -> bool:
    """Whether solves are exported: ``enable()`` was called, or an OTLP endpoint is set in the
    environment (and ``OTEL_SDK_DISABLED`` is not true), which enables it here on first use."""
    if _state.tracer is not None:
        return True
    if _state.off or not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return False
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    try:
        enable()
    except ImportError as missing:
        _state.off = True
        log.warning("%s is set, but %s; solves are not exported", ENDPOINT_VARIABLES[0], missing)
        return False
    return True


def record(result: Result, *, budget: Budget | None = None, run_budget: Budget | None = None) -> None:
    """Export one finished solve (``asolve`` calls this when ``active()``)."""
    tracer = _state.tracer
    if tracer is None:
        return
    try:
        emit(tracer, result, budget=budget, run_budget=run_budget)
    except Exception:  # telemetry must never fail a solve
        log.warning("OpenTelemetry export of problem %s failed", result.problem_id, exc_info=True)


def emit(tracer: Any, result: Result, *, budget: Budget | None = None, run_budget: Budget | None = None) -> None:
    """The spans of one solve, sent to ``tracer``: one per trace node, parent and child as in
    the trace. The root span is a child of the caller's current span, if any."""
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    nodes = result.trace.nodes
    if not nodes:
        return
    origin = getattr(result.trace, "started_ns", None) or time.time_ns()
    last = max((node.ended if node.ended is not None else node.started) for node in nodes)
    capture = os.environ.get(CAPTURE_CONTENT_VARIABLE, "").strip().lower() == "true"

    def at(seconds: float | None) -> int:
        return origin + round((last if seconds is None else seconds) * 1e9)

    spans: dict[int, Any] = {}
    for node in nodes:
        parent = spans.get(node.parent) if node.parent is not None else None
        context = otel_trace.set_span_in_context(parent) if parent is not None else None
        if node.parent is None:
            name, kind, attributes = _solve_span(node, result, budget, run_budget)
        elif node.kind == "generate":
            name, kind, attributes = _call_span(node, capture)
        else:
            name, kind, attributes = node.name, SpanKind.INTERNAL, _group_span(node)
        kind = {"client": SpanKind.CLIENT, "internal": SpanKind.INTERNAL}.get(kind, kind)
        span = tracer.start_span(name, context=context, kind=kind, attributes=attributes, start_time=at(node.started))
        if node.error and not attributes.get("reasoning.refused"):
            span.set_status(Status(StatusCode.ERROR, node.error))
        spans[node.id] = span
    for node in nodes:
        spans[node.id].end(end_time=max(at(node.ended), at(node.started)))


# -- attributes ------------------------------------------------------------------
def _solve_span(node: TraceNode, result: Result, budget: Budget | None, run_budget: Budget | None):
    strategy = node.name  # the trace root is the strategy's own span
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_workflow",
        "gen_ai.workflow.name": strategy,
        "reasoning.node.id": node.id,
        "reasoning.node.kind": node.kind,
        "reasoning.strategy.name": strategy,
        "reasoning.strategy.options": _json(result.strategy),
    }
    if result.problem_id is not None:
        attributes["reasoning.problem.id"] = str(result.problem_id)
    if result.answer is not None:
        attributes["reasoning.answer"] = result.answer
    if result.stopped_by:
        attributes["reasoning.stopped_by"] = result.stopped_by
    for limit, value in (budget.limits() if budget is not None else {}).items():
        attributes[f"reasoning.budget.{limit}"] = value
    for limit, value in (run_budget.limits() if run_budget is not None else {}).items():
        attributes[f"reasoning.run_budget.{limit}"] = value
    for key, value in result.usage.to_dict().items():
        attributes[f"reasoning.usage.{key}"] = value
    for role, usage in result.usage_by_role.items():
        attributes[f"reasoning.usage_by_role.{role}.tokens"] = usage.tokens
    if result.info:
        attributes.update(_info("reasoning.info", result.info))
    return f"invoke_workflow {strategy}", "internal", attributes


def _group_span(node: TraceNode) -> dict[str, Any]:
    attributes: dict[str, Any] = {"reasoning.node.id": node.id, "reasoning.node.kind": node.kind}
    info = dict(node.info)
    for limit, value in (info.pop("budget", None) or {}).items():  # a slice's own limits
        attributes[f"reasoning.budget.{limit}"] = value
    attributes.update(_info("reasoning.info", info))
    if node.usage:
        attributes.update({f"reasoning.usage.{k}": v for k, v in node.usage.items()})
    return attributes


def _call_span(node: TraceNode, capture: bool):
    request = node.request or {}
    info = node.info
    operation = "chat" if request.get("messages") else "text_completion"
    backend = info.get("backend")
    refused = backend is None and node.error is not None  # the budget refused it: no call was made
    provider, model = provider_and_model(backend)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.output.type": "text",
        "reasoning.node.id": node.id,
        "reasoning.node.kind": node.kind,
        "reasoning.node.name": node.name,
    }
    if provider is not None:
        attributes["gen_ai.provider.name"] = attributes["gen_ai.system"] = provider
    if model is not None:
        attributes["gen_ai.request.model"] = model
    if backend is not None:
        attributes["reasoning.backend"] = backend
    if info.get("role"):
        attributes["reasoning.role"] = info["role"]
    for field, name in (("max_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                        ("seed", "seed")):
        if request.get(field) is not None:
            attributes[f"gen_ai.request.{name}"] = request[field]
    if request.get("n", 1) != 1:
        attributes["gen_ai.request.choice.count"] = request["n"]
    if request.get("stop"):
        attributes["gen_ai.request.stop_sequences"] = [str(s) for s in request["stop"]]
    if request.get("top_logprobs"):
        attributes["reasoning.request.top_logprobs"] = request["top_logprobs"]
    if request.get("confidence_stop"):
        attributes.update(_flat("reasoning.request.confidence_stop", request["confidence_stop"]))
    if request.get("prefix"):
        attributes.update(_flat("reasoning.prefix", request["prefix"]))
    usage = node.usage
    if usage:
        attributes["gen_ai.usage.input_tokens"] = int(usage.get("prompt_tokens", 0))
        attributes["gen_ai.usage.output_tokens"] = int(usage.get("completion_tokens", 0))
        attributes["gen_ai.usage.cache_read.input_tokens"] = int(usage.get("cached_prompt_tokens", 0))
        # what gen_ai.usage leaves out (tokens are there already: the SDK's checks cost per attribute)
        attributes["reasoning.usage.calls"] = usage.get("calls", 0)
        attributes.update({f"reasoning.usage.{k}": usage[k] for k in ("usd", "flops") if usage.get(k)})
    if node.completions:
        attributes["gen_ai.response.finish_reasons"] = [str(c.get("finish_reason")) for c in node.completions]
    if refused:
        attributes["reasoning.refused"] = node.error
    elif node.error:
        attributes["error.type"] = "cancelled" if "deadline" in node.error else node.error.partition(":")[0]
    rest = {k: v for k, v in info.items() if k not in ("backend", "role")}
    attributes.update(_info("reasoning.info", rest))
    if capture:
        if request.get("messages"):
            attributes["gen_ai.input.messages"] = json.dumps(
                [{"role": m["role"], "parts": [{"type": "text", "content": m["content"]}]} for m in request["messages"]],
                ensure_ascii=False)
        elif request.get("prompt") is not None:
            attributes["gen_ai.input.messages"] = json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": request["prompt"]}]}], ensure_ascii=False)
        if node.completions:
            attributes["gen_ai.output.messages"] = json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": c.get("text", "")}],
                  "finish_reason": c.get("finish_reason")} for c in node.completions], ensure_ascii=False)
    name = f"{operation} {model}" if model else operation
    return name, "client", attributes


def provider_and_model(backend: str | None) -> tuple[str | None, str | None]:
    """``gen_ai.provider.name`` and ``gen_ai.request.model`` from a backend's name
    (``KIND:MODEL``): ``openai:gpt-4o-mini`` -> (openai, gpt-4o-mini), ``litellm:anthropic/claude``
    -> (anthropic, claude), ``local:qwen2.5-coder-0.5b-instruct`` -> (local, qwen2.5-coder-0.5b-instruct)."""
    if not backend:
        return None, None
    kind, sep, model = backend.partition(":")
    if not sep:
        return kind, kind
    if kind == "litellm":
        prefix, slash, bare = model.partition("/")
        if slash:
            return _LITELLM_PROVIDERS.get(prefix, prefix), bare
        return "litellm", model
    return kind, model or kind


def _flat(prefix: str, data: dict[str, Any]) -> dict[str, Any]:
    """Attributes from a dict: scalars as they are, lists of scalars as lists, nested dicts one
    key deeper, anything else as JSON; None is left out (OpenTelemetry has no null)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}"
        if value is None:
            continue
        if isinstance(value, (str, bool, int, float)):
            out[name] = value
        elif isinstance(value, dict) and name.count(".") < 5:
            out.update(_flat(name, value))
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            out[name] = list(value)
        elif (isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value)
              and not any(isinstance(v, bool) for v in value)):
            out[name] = [float(v) for v in value] if any(isinstance(v, float) for v in value) else list(value)
        else:
            out[name] = _json(value)
    return out


def _info(prefix: str, data: dict[str, Any]) -> dict[str, Any]:
    flat = _flat(prefix, data)
    return flat if len(flat) <= _MAX_INFO_ATTRIBUTES else {prefix: _json(data)}


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


def _otlp_provider() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as missing:
        raise ImportError(f"OpenTelemetry export needs the otel extra: {INSTALL_HINT}") from missing
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": SERVICE_NAME}))
    # A search's trace can hold thousands of nodes, all ended at once: queue them all (the SDK's
    # default queue, 2048, drops the rest) unless OTEL_BSP_MAX_QUEUE_SIZE says otherwise.
    queue = None if os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") else 65536
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), max_queue_size=queue))
    return provider


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reasoning-tts")
    except PackageNotFoundError:
        return "0"
