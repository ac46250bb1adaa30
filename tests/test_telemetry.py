"""OpenTelemetry export (reasoning/telemetry.py): the spans of real strategies on the Scripted
backend, caught by the SDK's in-memory exporter and by a real OTLP/HTTP receiver on loopback;
GenAI attributes and token counts against the Result; the CLI's --otel; and no opentelemetry
import at all while telemetry is off."""

import gzip
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from reasoning.benchmarks.cli import main
from reasoning.strategies import BeamSearch, SelfConsistency

import reasoning as rz
from reasoning import telemetry
from reasoning.backends import Scripted
from reasoning.strategy import Outcome, ProcessVerifier, Strategy

OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED",
                  "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", telemetry.CAPTURE_CONTENT_VARIABLE)


@pytest.fixture
def clean(monkeypatch):
    """Telemetry off and no OTEL_* variable set, before and after."""
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    telemetry.disable()
    yield
    telemetry.disable()


@pytest.fixture
def exporter(clean):
    """Telemetry on, into the SDK's in-memory exporter."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry.enable(provider)
    yield memory


def calls(spans):
    return [s for s in spans if s.attributes.get("gen_ai.operation.name") in ("chat", "text_completion")]


def roots(spans):
    return [s for s in spans if s.parent is None]


def check_mirrors_the_trace(result, spans):
    """One span per trace node, named as its kind says, parent and child as in the trace, each
    within its parent's time and as long as its node; the root starts when the trace did."""
    trace = result.trace
    assert len(spans) == len(trace)
    by_id = {s.context.span_id: s for s in spans}
    node_of = {s.context.span_id: trace.nodes[s.attributes["reasoning.node.id"]] for s in spans}
    assert sorted(node.id for node in node_of.values()) == list(range(len(trace)))
    (root,) = roots(spans)
    assert root.name == f"invoke_workflow {result.strategy['strategy']}" and node_of[root.context.span_id].parent is None
    assert abs(root.start_time - trace.started_ns) < 5_000_000
    assert len({s.context.trace_id for s in spans}) == 1
    for span in spans:
        node = node_of[span.context.span_id]
        assert span.attributes["reasoning.node.kind"] == node.kind
        if span.parent is not None:
            parent = by_id[span.parent.span_id]
            assert node_of[parent.context.span_id].id == node.parent
            assert parent.start_time <= span.start_time <= span.end_time <= parent.end_time
        assert abs((span.end_time - span.start_time) / 1e9 - (node.ended - node.started)) < 1e-5
        if node.kind == "generate":
            operation = "chat" if node.request.get("messages") else "text_completion"
            model = span.attributes.get("gen_ai.request.model")  # none on a call the budget refused
            assert span.name == (f"{operation} {model}" if model else operation)
            assert (model is None) == (node.error is not None and "backend" not in node.info)
            assert span.kind == SpanKind.CLIENT and span.attributes["gen_ai.operation.name"] == operation
        elif node.parent is not None:
            assert span.name == node.name and span.kind == SpanKind.INTERNAL


def check_usage(result, spans):
    """The calls' GenAI token counts add up to the Result's usage; the root carries the total."""
    made = [s for s in calls(spans) if "reasoning.refused" not in s.attributes]
    assert sum(s.attributes["gen_ai.usage.input_tokens"] for s in made) == result.usage.prompt_tokens
    assert sum(s.attributes["gen_ai.usage.output_tokens"] for s in made) == result.usage.completion_tokens
    assert sum(s.attributes["gen_ai.usage.cache_read.input_tokens"] for s in made) == result.usage.cached_prompt_tokens
    assert sum(s.attributes["reasoning.usage.calls"] for s in made) == result.usage.calls
    (root,) = roots(spans)
    assert root.attributes["reasoning.usage.tokens"] == result.usage.tokens
    assert root.attributes["reasoning.usage.completion_tokens"] == result.usage.completion_tokens


# -- in-memory exporter ---------------------------------------------------------
def test_self_consistency_is_one_solve_span_over_one_chat_call(exporter):
    result = rz.solve("Find x.", SelfConsistency(n=3), Scripted(["18", "18", "7"]), rz.Budget(tokens=20000))
    spans = exporter.get_finished_spans()
    check_mirrors_the_trace(result, spans)
    check_usage(result, spans)
    (root,) = roots(spans)
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attributes["gen_ai.workflow.name"] == root.attributes["reasoning.strategy.name"] == "self-consistency"
    assert json.loads(root.attributes["reasoning.strategy.options"])["n"] == 3
    assert root.attributes["reasoning.budget.tokens"] == 20000 and root.attributes["reasoning.answer"] == "18"
    assert "reasoning.stopped_by" not in root.attributes
    (call,) = calls(spans)
    assert call.name == "chat scripted" and call.parent.span_id == root.context.span_id
    assert {k: v for k, v in call.attributes.items() if k.startswith("gen_ai.") and "usage" not in k} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "scripted", "gen_ai.system": "scripted",
        "gen_ai.request.model": "scripted", "gen_ai.request.max_tokens": 1024, "gen_ai.request.temperature": 0.7,
        "gen_ai.request.top_p": 1.0, "gen_ai.request.choice.count": 3, "gen_ai.output.type": "text",
        "gen_ai.response.finish_reasons": ("stop", "stop", "stop"),
    }
    assert call.attributes["reasoning.role"] == "generator" and call.attributes["reasoning.backend"] == "scripted"
    assert call.attributes["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens > 0
    assert call.status.status_code == StatusCode.UNSET
    assert "gen_ai.input.messages" not in call.attributes  # content only when asked for


# A small search tree (as in test_tree_search.py): label -> (PRM score, boxed answer or None).
STEPS = {"a": (0.9, None), "b": (0.2, None), "ap": (0.3, None), "aq": (0.95, "7"), "bp": (0.6, "5"), "bq": (0.5, "5")}
TREE = {"": ["a", "b"], "a": ["ap", "aq"], "b": ["bp", "bq"], "ap": ["aq"]}


def label(step):
    return step.split(".")[0]


def tree_backend():
    backend = Scripted(completion_tokens=lambda text: max(1, len(text) // 4))
    drawn = Counter()

    def respond(request, index):
        done = backend.continuation(request)
        parent = label(done.rstrip("\n").split("\n\n")[-1]) if done else ""
        k = drawn[done]
        drawn[done] += 1
        child = TREE[parent][k % len(TREE[parent])]
        answer = STEPS[child][1]
        return f"{child}.\n\n" if answer is None else f"{child}. So \\boxed{{{answer}}}"

    backend.responder = respond
    return backend


class LabelPRM(ProcessVerifier):
    name = "label-prm"

    async def step_scores(self, ctx, prefixes):
        return [[STEPS[label(s)][0] for s in p.steps] for p in prefixes]


def test_beam_search_spans_mirror_the_search_tree_with_prefix_cache_reads(exporter):
    result = rz.solve("Find x.", BeamSearch(n=2, width=2, prm=LabelPRM(), max_steps=4), tree_backend())
    spans = exporter.get_finished_spans()
    check_mirrors_the_trace(result, spans)
    check_usage(result, spans)
    assert result.usage.cached_prompt_tokens > 0  # continuations re-read their prefix from the cache
    made = calls(spans)
    assert len(made) == len(result.trace.calls()) >= 3
    # the root is expanded from the chat prompt; each continuation goes by token ids
    assert Counter(s.attributes["gen_ai.operation.name"] for s in made) == Counter(
        "chat" if n.request.get("messages") else "text_completion" for n in result.trace.calls())
    assert {s.attributes["gen_ai.operation.name"] for s in made} == {"chat", "text_completion"}
    for span in made:
        assert span.attributes["gen_ai.request.stop_sequences"] == ("\n\n",)
        if span.attributes["gen_ai.operation.name"] == "text_completion":
            assert span.attributes["reasoning.prefix.steps"] >= 1 and span.attributes["reasoning.prefix.tokens"] > 0
    assert any(s.attributes["gen_ai.usage.cache_read.input_tokens"] > 0 for s in made)
    # the search's own spans sit between the solve and its calls
    (root,) = roots(spans)
    depths = sorted((s for s in spans if s.parent and s.parent.span_id == root.context.span_id), key=lambda s: s.name)
    assert [s.name for s in depths] == [f"depth-{d}" for d in range(1, len(depths) + 1)] and len(depths) >= 2
    for depth in depths:
        below = [s for s in spans if s.parent and s.parent.span_id == depth.context.span_id]
        call = "chat scripted" if depth is depths[0] else "text_completion scripted"
        assert sorted(s.name for s in below) == sorted(["prm", call])
        node = result.trace.nodes[depth.attributes["reasoning.node.id"]]
        assert list(depth.attributes["reasoning.info.children"]) == node.info["children"]
    assert root.attributes["reasoning.answer"] == result.answer


def test_a_call_the_budget_refused_is_marked_and_the_solve_says_what_stopped_it(exporter):
    result = rz.solve("Find x.", BeamSearch(n=2, width=2, prm=LabelPRM(), max_steps=4), tree_backend(),
                      rz.Budget(calls=2))
    spans = exporter.get_finished_spans()
    check_mirrors_the_trace(result, spans)
    check_usage(result, spans)
    refused = [s for s in calls(spans) if "reasoning.refused" in s.attributes]
    assert len(refused) == 1 and "gen_ai.usage.input_tokens" not in refused[0].attributes
    assert refused[0].status.status_code == StatusCode.UNSET  # a budget stop, not an error
    (root,) = roots(spans)
    assert root.attributes["reasoning.stopped_by"] == "calls" and root.attributes["reasoning.budget.calls"] == 2


class Checked(Strategy):
    """One sample, then a check on the verifier role, inside a span."""

    name = "checked"

    async def run(self, ctx):
        (sample,) = await ctx.generate(n=1, max_tokens=128, temperature=0.2)
        async with ctx.span("check", attempt=1) as sub:
            await sub.generate(f"Is {sample.answer} right?", role="verifier", max_tokens=64, top_p=0.9, seed=3)
        return Outcome(sample.answer)


def test_roles_get_their_own_model_provider_and_usage(exporter):
    generator = Scripted(["4"], name="litellm:anthropic/claude-sonnet")
    verifier = Scripted(["yes"], name="openai:gpt-judge")
    result = rz.solve("2+2?", Checked(), backends={"generator": generator, "verifier": verifier})
    spans = exporter.get_finished_spans()
    check_mirrors_the_trace(result, spans)
    check_usage(result, spans)
    first, second = sorted(calls(spans), key=lambda s: s.start_time)
    assert first.name == "chat claude-sonnet" and second.name == "chat gpt-judge"
    assert (first.attributes["gen_ai.provider.name"], first.attributes["reasoning.role"]) == ("anthropic", "generator")
    assert (second.attributes["gen_ai.provider.name"], second.attributes["reasoning.role"]) == ("openai", "verifier")
    assert first.attributes["gen_ai.request.temperature"] == 0.2 and "gen_ai.request.choice.count" not in first.attributes
    assert second.attributes["gen_ai.request.top_p"] == 0.9 and second.attributes["gen_ai.request.seed"] == 3
    assert second.attributes["gen_ai.request.max_tokens"] == 64
    check = next(s for s in spans if s.name == "check")
    assert second.parent.span_id == check.context.span_id and check.attributes["reasoning.info.attempt"] == 1
    (root,) = roots(spans)
    for role in ("generator", "verifier"):
        assert root.attributes[f"reasoning.usage_by_role.{role}.tokens"] == result.usage_by_role[role].tokens


def test_a_call_cancelled_at_the_deadline_is_an_error_span(exporter):
    result = rz.solve("Find x.", SelfConsistency(n=2), Scripted(["1"], latency=2.0), rz.Budget(seconds=0.2))
    spans = exporter.get_finished_spans()
    check_mirrors_the_trace(result, spans)
    (call,) = calls(spans)
    assert call.status.status_code == StatusCode.ERROR and call.attributes["error.type"] == "cancelled"
    assert roots(spans)[0].attributes["reasoning.stopped_by"] == "seconds"


def test_message_content_only_when_asked_for(exporter, monkeypatch):
    monkeypatch.setenv(telemetry.CAPTURE_CONTENT_VARIABLE, "true")
    rz.solve("What is 6 times 7?", SelfConsistency(n=2), Scripted(["42"]))
    (call,) = calls(exporter.get_finished_spans())
    sent = json.loads(call.attributes["gen_ai.input.messages"])
    assert any("6 times 7" in part["content"] for message in sent for part in message["parts"])
    out = json.loads(call.attributes["gen_ai.output.messages"])
    assert len(out) == 2 and all(m["role"] == "assistant" and "42" in m["parts"][0]["content"] for m in out)


def test_spans_nest_under_the_callers_current_span(exporter):
    tracer = telemetry._state.provider.get_tracer("app")
    with tracer.start_as_current_span("my request") as outer:
        rz.solve("q", SelfConsistency(n=2), Scripted(["3"]))
    (root,) = [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_workflow")]
    assert root.parent.span_id == outer.get_span_context().span_id


def test_an_export_failure_does_not_fail_the_solve(exporter, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("collector exploded")

    monkeypatch.setattr(telemetry, "emit", broken)
    result = rz.solve("q", SelfConsistency(n=2), Scripted(["3"]))
    assert result.answer == "3" and "export of problem" in caplog.text


def test_attribute_values_are_ones_opentelemetry_takes():
    assert telemetry.provider_and_model("litellm:gemini/gemini-2.0-flash") == ("gcp.gemini", "gemini-2.0-flash")
    assert telemetry.provider_and_model("litellm:gpt-4o") == ("litellm", "gpt-4o")
    assert telemetry.provider_and_model("local:qwen2.5-coder-0.5b-instruct") == ("local", "qwen2.5-coder-0.5b-instruct")
    assert telemetry.provider_and_model(None) == (None, None)
    flat = telemetry._flat("x", {"a": None, "b": {"c": 1}, "d": [1, 2.5], "e": [{"f": 1}], "g": ["s"], "h": [True]})
    assert flat == {"x.b.c": 1, "x.d": [1.0, 2.5], "x.e": '[{"f": 1}]', "x.g": ["s"], "x.h": "[true]"}
    # a vote over many answers is one JSON attribute: the SDK would evict the GenAI ones for it
    many = {"votes": {str(i): 1.0 for i in range(200)}}
    assert telemetry._info("i", many) == {"i": json.dumps(many)} and telemetry._info("i", {"a": 1}) == {"i.a": 1}


# -- the CLI --------------------------------------------------------------------
@pytest.fixture
def otel_flag(clean, monkeypatch):
    """--otel's provider, made to export into memory instead of OTLP."""
    memory = InMemorySpanExporter()

    def provider():
        made = TracerProvider()
        made.add_span_processor(SimpleSpanProcessor(memory))
        return made

    monkeypatch.setattr(telemetry, "_otlp_provider", provider)
    return memory


def test_cli_run_and_sweep_export_only_with_otel(otel_flag, tmp_path):
    common = ["--dataset", "gsm8k", "--limit", "2", "--strategy", "self-consistency", "--n", "3",
              "--backend", "scripted:18,18,7"]
    assert main(["run", *common, "--out", str(tmp_path / "plain")]) == 0
    assert otel_flag.get_finished_spans() == () and not telemetry.active()
    out = tmp_path / "traced"
    assert main(["run", *common, "--budget", "tokens=20000", "--otel", "--out", str(out)]) == 0
    spans = otel_flag.get_finished_spans()
    rows = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    solves = {s.attributes["reasoning.problem.id"]: s for s in roots(spans)}
    assert set(solves) == set(rows) == {"0", "1"}
    for problem, root in solves.items():
        assert root.name == "invoke_workflow self-consistency" and root.attributes["reasoning.budget.tokens"] == 20000
        mine = [s for s in calls(spans) if s.context.trace_id == root.context.trace_id]
        assert [s.name for s in mine] == ["chat scripted"]
        assert sum(s.attributes["gen_ai.usage.input_tokens"] for s in mine) == rows[problem]["usage"]["prompt_tokens"]
        assert sum(s.attributes["gen_ai.usage.output_tokens"] for s in mine) == rows[problem]["usage"]["completion_tokens"]
    otel_flag.clear()
    assert main(["sweep", "--dataset", "gsm8k", "--limit", "2", "--strategy", "self-consistency", "--n", "1,2",
                 "--backend", "scripted:18,3", "--otel", "--out", str(tmp_path / "sweep")]) == 0
    spans = otel_flag.get_finished_spans()
    assert {s.attributes["reasoning.problem.id"] for s in roots(spans)} == {"0", "1"}
    assert calls(spans) and all(s.attributes["gen_ai.usage.output_tokens"] > 0 for s in calls(spans))


def test_otel_without_the_extra_is_a_clear_error(clean, monkeypatch, capsys, caplog):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    code = main(["run", "--dataset", "gsm8k", "--limit", "1", "--strategy", "greedy", "--backend", "scripted:1",
                 "--otel", "--out", "unused"])
    assert code == 2 and "reasoning-tts[otel]" in capsys.readouterr().err
    # set in the environment for someone else's collector: solves go on, with a warning
    telemetry._state.off = False
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    assert rz.solve("q", SelfConsistency(n=2), Scripted(["3"])).answer == "3"
    assert "reasoning-tts[otel]" in caplog.text and not telemetry.active()


# -- a real OTLP/HTTP receiver on loopback --------------------------------------
class Receiver(BaseHTTPRequestHandler):
    """POST /v1/traces with an ExportTraceServiceRequest (protobuf), as a collector takes it."""

    received: list = []

    def do_POST(self):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.received.append((self.path, self.headers.get("Content-Type"), request))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(value(v) for v in any_value.array_value.values)
    return getattr(any_value, kind)


def attributes(items):
    return {kv.key: value(kv.value) for kv in items}


@pytest.fixture
def receiver():
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], Receiver.received
    server.shutdown()
    server.server_close()


def test_cli_run_sends_spans_to_an_otlp_http_receiver(receiver, tmp_path):
    port, received = receiver
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"  # no --otel: the variable turns it on
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "reasoning.benchmarks.cli", "run", "--dataset", "gsm8k", "--limit", "2",
         "--strategy", "self-consistency", "--n", "3", "--backend", "scripted:18,18,7", "--budget", "calls=4",
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert received, "the receiver got nothing"
    assert {(path, kind) for path, kind, _ in received} == {("/v1/traces", "application/x-protobuf")}
    spans = []
    for _, _, request in received:
        for resource_spans in request.resource_spans:
            assert attributes(resource_spans.resource.attributes)["service.name"] == "reasoning-tts"
            for scope_spans in resource_spans.scope_spans:
                assert scope_spans.scope.name == "reasoning"
                spans += scope_spans.spans
    rows = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    solves = {attributes(s.attributes)["reasoning.problem.id"]: s for s in spans if not s.parent_span_id}
    assert set(solves) == set(rows) == {"0", "1"}
    for problem, root in solves.items():
        shown = attributes(root.attributes)
        assert root.name == "invoke_workflow self-consistency" and shown["gen_ai.operation.name"] == "invoke_workflow"
        assert shown["reasoning.budget.calls"] == 4 and shown["reasoning.answer"] == "18"
        assert shown["reasoning.usage.tokens"] == rows[problem]["usage"]["tokens"]
        (call,) = [s for s in spans if s.trace_id == root.trace_id and s.parent_span_id]
        assert call.parent_span_id == root.span_id and call.name == "chat scripted"
        assert call.kind == call.SPAN_KIND_CLIENT
        assert root.start_time_unix_nano <= call.start_time_unix_nano <= call.end_time_unix_nano <= root.end_time_unix_nano
        got = attributes(call.attributes)
        assert got["gen_ai.operation.name"] == "chat" and got["gen_ai.request.model"] == "scripted"
        assert got["gen_ai.provider.name"] == "scripted" and got["gen_ai.request.choice.count"] == 3
        assert got["gen_ai.request.max_tokens"] == 1024 and got["gen_ai.request.temperature"] == 0.7
        assert got["gen_ai.usage.input_tokens"] == rows[problem]["usage"]["prompt_tokens"]
        assert got["gen_ai.usage.output_tokens"] == rows[problem]["usage"]["completion_tokens"]
        assert got["gen_ai.response.finish_reasons"] == ("stop", "stop", "stop")
        assert got["reasoning.role"] == "generator"
    assert solves["0"].trace_id != solves["1"].trace_id  # one trace per problem


# -- off ------------------------------------------------------------------------
def test_with_telemetry_off_opentelemetry_is_never_imported(tmp_path):
    script = (
        "import sys\n"
        "import reasoning as rz\n"
        "from reasoning.backends import Scripted\n"
        "from reasoning.benchmarks.cli import main\n"
        f"assert main(['run', '--dataset', 'gsm8k', '--limit', '2', '--strategy', 'self-consistency', '--n', '2',"
        f" '--backend', 'scripted:18', '--out', {str(tmp_path / 'out')!r}]) == 0\n"
        "assert main(['sweep', '--dataset', 'gsm8k', '--limit', '1', '--strategy', 'greedy', '--n', '1',"
        f" '--backend', 'scripted:18', '--out', {str(tmp_path / 'sweep')!r}]) == 0\n"
        "assert rz.solve('q', rz.SelfConsistency(n=2), Scripted(['1'])).answer == '1'\n"
        "print('otel modules:', sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "otel modules: []" in done.stdout, done.stdout[-2000:]


def test_the_readme_example_runs_offline_and_prints_the_spans(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "telemetry.enable" in b]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    spans = [json.loads(text) for text in re.findall(r"^\{.*?^\}", done.stdout, re.DOTALL | re.MULTILINE)]
    assert sorted(s["name"] for s in spans) == ["chat scripted", "invoke_workflow self-consistency"]
    call = next(s for s in spans if s["name"] == "chat scripted")
    assert call["attributes"]["gen_ai.request.choice.count"] == 4 and call["attributes"]["gen_ai.usage.output_tokens"] > 0
