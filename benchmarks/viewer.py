"""``reasoning-bench view``: one self-contained HTML page that shows what a run did.

``write_view(run_dir, out_path=None, problem_id=None)`` reads a ``reasoning-bench run`` folder
(``config.json``, ``results.jsonl``, ``traces.jsonl``, ``summary.json``; it never writes to the
folder unless ``out_path`` points there, the default ``RUN_DIR/view.html``) and writes one
HTML file: no network at view time (the page's own small script and style are inline, no
framework, no CDN). It shows

- the problems: id, correct or not, answer, gold, cost (tokens, calls, USD where any), the
  limit that stopped it; a click (or ``#problem=ID`` in the address) opens one;
- for one problem: the call tree of its trace (span / generate / verify nodes; usage, timing,
  errors; a node's request, prefix and completions on a click), drawn collapsed and rendered
  lazily (a subtree's children are built when it is first opened, 200 at a time), so a trace of
  10,000 nodes opens at once;
- for searches (``Outcome.info["tree"]``: beam search, DVTS, REBASE, ETS) the search tree: each
  node's status (kept, pruned, complete, final, open), PRM score, answer, step, whether it was
  expanded, and the prefix (KV) its call shared with its parent (steps, tokens; the prompt
  tokens the backend served from its prefix cache);
- for votes (``Outcome.info["votes"]``) the answer groups with their weight and how many
  samples gave each answer;
- the ledger over time (``Result.ledger_events``, kept in ``traces.jsonl`` as ``ledger``):
  reserved, committed and released amounts of each limit, the budget's cap, and the moment a
  limit shrank or refused a call (``stopped_by``).

Data goes into the page as one JSON blob in a ``<script type="application/json">`` tag, every
``<`` written as ``\\u003c`` so that no text from a model ("</script>", "<!--") can end the tag;
the script builds the page with ``textContent`` only. Completion texts are clipped to
``text_chars`` (head and tail kept); token ids and logprobs are left out. A run whose traces
would make the page larger than ``max_detail_bytes`` keeps every problem in the list but the
details only of the first ones (the ``problem_id`` asked for always), and says so.

``serve_view(path, port=0)`` serves the page on 127.0.0.1 only (``--serve``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from reasoning import Budget
from reasoning.budget import EVENT_FIELDS
from reasoning.errors import ConfigError

VIEW_FORMAT = 1  # bumped when the page's JSON changes shape
TEXT_CHARS = 2000  # a completion's text in the page, at most (head and tail)
MAX_DETAIL_BYTES = 40_000_000  # problems' details in one page, at most (the list is always whole)
_LIST_ITEMS = 64  # lists in info dicts beyond this are cut in the page
_STRING_CHARS = 600  # strings in info dicts and messages beyond this are cut
_USAGE_KEYS = ("tokens", "prompt_tokens", "completion_tokens", "cached_prompt_tokens", "calls", "usd", "flops")


# -- reading a run folder -----------------------------------------------------------------
def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The complete JSON lines of ``path`` (a half-written last line is skipped, not cut:
    the viewer never changes the run folder)."""
    if not path.is_file():
        return
    with path.open("rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            try:
                yield json.loads(raw)
            except json.JSONDecodeError:
                break


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


# -- making data small and safe -----------------------------------------------------------
def clip_text(text: str | None, limit: int) -> str | None:
    """``text`` within about ``limit`` characters: its head and tail, the cut marked."""
    if text is None or len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - limit:,} characters not shown ...]\n{text[len(text) - tail:]}"


def _clip(value: Any, depth: int = 0) -> Any:
    """A JSON value with long strings and lists cut (info dicts can hold hundreds of numbers)."""
    if isinstance(value, str):
        return clip_text(value, _STRING_CHARS)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        if depth > 6:
            return "{...}"
        return {str(k): _clip(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if depth > 6:
            return "[...]"
        items = [_clip(v, depth + 1) for v in value[:_LIST_ITEMS]]
        if len(value) > _LIST_ITEMS:
            items.append(f"... {len(value) - _LIST_ITEMS} more")
        return items
    return value


def _usage(usage: dict[str, Any] | None) -> dict[str, float]:
    """The non-zero usage fields the page shows."""
    usage = usage or {}
    out = {}
    for key in _USAGE_KEYS:
        value = usage.get(key)
        if key == "tokens" and value is None and ("prompt_tokens" in usage or "completion_tokens" in usage):
            value = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        if isinstance(value, int | float) and not isinstance(value, bool) and value and math.isfinite(value):
            out[key] = value
    return out


def _answer(completion: dict[str, Any]) -> str | None:
    if completion.get("finish_reason") in ("cancelled", "confidence"):
        return None  # a cut trace's last number is not its answer (as ``Context`` does)
    from reasoning.answers import extract_answer

    try:
        return extract_answer(completion.get("text") or "")
    except Exception:  # an odd text must not stop the page
        return None


def _vote_key(answer: str | None) -> str | None:
    if answer is None:
        return None
    from reasoning.answers import normalize_answer

    try:
        return normalize_answer(answer) or None
    except Exception:
        return None


# -- one problem's details ----------------------------------------------------------------
_REQUEST_KEYS = ("n", "max_tokens", "temperature", "top_p", "stop", "seed", "prefix", "top_logprobs",
                 "continue_final_message")


def _seconds(value: Any) -> float | None:
    return round(value, 6) if isinstance(value, int | float) and math.isfinite(value) else None


def _prompt_key(prompt: Any) -> Any:
    """A hashable key of a request's messages (or prompt text), to keep each distinct prompt once."""
    if isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
        return tuple((m.get("role"), str(m.get("content"))) for m in prompt)
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def trace_nodes(trace: list[dict[str, Any]], text_chars: int = TEXT_CHARS) -> tuple[list[dict[str, Any]], list[Any]]:
    """The trace as the page draws it, and the table of distinct prompts its calls sent.

    Each node keeps id, parent, kind, name, start and end (seconds), its non-zero usage, for a
    span the usage of everything under it (``total``), info (long values cut), error, the
    request's sampling and prefix (``req``; messages by index into the prompt table) and the
    completions (text clipped, tokens, finish reason, extracted answer)."""
    prompts: list[Any] = []
    prompt_index: dict[Any, int] = {}
    nodes: list[dict[str, Any]] = []
    position: dict[int, int] = {}
    for raw in trace:
        node: dict[str, Any] = {"id": raw["id"], "parent": raw.get("parent"), "kind": raw.get("kind", "span"),
                                "name": raw.get("name", ""), "t0": _seconds(raw.get("started")),
                                "t1": _seconds(raw.get("ended"))}
        usage = _usage(raw.get("usage"))
        if usage:
            node["usage"] = usage
        if raw.get("info"):
            node["info"] = _clip(raw["info"])
        if raw.get("error"):
            node["error"] = clip_text(str(raw["error"]), _STRING_CHARS)
        request = raw.get("request")
        if request:
            req = {}
            for k in _REQUEST_KEYS:
                v = request.get(k)
                if v is not None and v is not False and v != []:  # a temperature of 0 is kept
                    req[k] = v
            prompt = request.get("messages") or request.get("prompt")
            if prompt is not None:
                key = _prompt_key(prompt)
                if key not in prompt_index:
                    prompt_index[key] = len(prompts)
                    prompts.append(_clip(prompt))
                req["prompt"] = prompt_index[key]
            elif request.get("prompt_token_ids") is not None:
                req["prompt_token_ids"] = len(request["prompt_token_ids"])
            node["req"] = req
        completions = raw.get("completions") or []
        if completions:
            node["out"] = [{"text": clip_text(c.get("text"), text_chars), "tokens": c.get("completion_tokens"),
                            "finish": c.get("finish_reason"), "answer": _answer(c)} for c in completions]
        position[node["id"]] = len(nodes)
        nodes.append(node)
    # Span totals: a trace is append-only, so a parent comes before its children; walking
    # backwards adds every node's usage into its parent's total once.
    totals: dict[int, dict[str, float]] = {}
    for node in reversed(nodes):
        total = totals.get(node["id"], {})
        for key, value in node.get("usage", {}).items():
            total[key] = total.get(key, 0) + value
        if node["kind"] != "generate" and total:
            node["total"] = total
        parent = node["parent"]
        if parent is not None and parent in position:
            into = totals.setdefault(parent, {})
            for key, value in total.items():
                into[key] = into.get(key, 0) + value
    return nodes, prompts


def search_tree(info: dict[str, Any], nodes: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """``info["tree"]`` with what each search node's call shared with its parent: the prefix it
    continued (``kv``: steps, tokens, characters; None for the first steps, which share the
    prompt only) and the prompt tokens that call read from the backend's prefix cache."""
    tree = info.get("tree")
    if not isinstance(tree, list) or not tree:
        return None
    by_id = {node["id"]: node for node in nodes}
    has_children = {record.get("parent") for record in tree}
    out = []
    for record in tree:
        row = {k: v for k, v in record.items() if k != "step"}
        row["step"] = clip_text(record.get("step"), _STRING_CHARS)
        row["expanded"] = record.get("id") in has_children
        call = by_id.get(record.get("trace"))
        if call is not None:
            prefix = (call.get("req") or {}).get("prefix")
            row["kv"] = {"steps": prefix.get("steps"), "tokens": prefix.get("tokens"), "chars": prefix.get("chars"),
                         "node": prefix.get("node")} if prefix else None
            row["cached"] = call.get("usage", {}).get("cached_prompt_tokens", 0)
            row["call_prompt_tokens"] = call.get("usage", {}).get("prompt_tokens", 0)
        out.append(row)
    return out


def vote_groups(info: dict[str, Any], nodes: list[dict[str, Any]], tree: list[dict[str, Any]] | None
                ) -> list[dict[str, Any]] | None:
    """The answer groups of a vote: each answer (as voted: normalised) with the strategy's weight
    (``info["votes"]``) and how many samples gave it: the finished paths of a search, the
    answers a strategy lists (``answers``, only those that ``voted`` when it says, ``path_answers``),
    else every sample the generator
    drew outside verification, in the trace. Heaviest first."""
    votes = info.get("votes")
    if not isinstance(votes, dict):
        return None
    answers: list[str | None]
    if tree is not None:
        source = "finished paths"
        answers = [r.get("answer") for r in tree if r.get("status") in ("complete", "final")]
    elif isinstance(info.get("answers"), list):
        source, answers = "samples (info.answers)", list(info["answers"])
        voted = info.get("voted")
        if isinstance(voted, list) and len(voted) == len(answers):  # count the voters only (DeepConf)
            filtered = sum(not v for v in voted)
            answers = [a for a, v in zip(answers, voted, strict=True) if v]
            source = f"samples that voted (info.answers; {filtered} filtered or stopped)"
    elif isinstance(info.get("path_answers"), list):
        source, answers = "paths", list(info["path_answers"])
    else:
        source = "samples in the trace"
        by_id = {node["id"]: node for node in nodes}

        def in_verification(node: dict[str, Any]) -> bool:
            parent = node.get("parent")
            while parent is not None and parent in by_id:
                up = by_id[parent]
                if up["kind"] == "verify" or up["name"] in ("verify", "prm", "synthesis"):
                    return True
                parent = up.get("parent")
            return False

        answers = [c.get("answer") for node in nodes if node["kind"] == "generate"
                   and (node.get("info") or {}).get("role", "generator") == "generator" and not in_verification(node)
                   for c in node.get("out", [])]
    counts: dict[str, int] = {}
    shown: dict[str, str] = {}
    unanswered = 0
    for answer in answers:
        key = _vote_key(answer) if isinstance(answer, str) else None
        if key is None:
            unanswered += 1
            continue
        counts[key] = counts.get(key, 0) + 1
        shown.setdefault(key, answer)  # type: ignore[arg-type]
    total = sum(v for v in votes.values() if isinstance(v, int | float)) or 0
    groups = []
    for key in dict.fromkeys([*votes, *counts]):
        weight = votes.get(key)
        groups.append({"answer": key, "as_written": shown.get(key, key), "weight": weight,
                       "share": weight / total if isinstance(weight, int | float) and total else None,
                       "count": counts.get(key, 0)})
    groups.sort(key=lambda g: (-(g["weight"] or 0), -g["count"]))
    return [{"source": source, "unanswered": unanswered, "total_weight": total}] + groups


def problem_detail(row: dict[str, Any], traced: dict[str, Any] | None, text_chars: int = TEXT_CHARS) -> dict[str, Any]:
    """Everything the page shows about one problem."""
    traced = traced or {}
    info = traced.get("info") or {}
    nodes, prompts = trace_nodes(traced.get("trace") or [], text_chars)
    tree = search_tree(info, nodes)
    return {
        "text": clip_text(traced.get("text"), text_chars),
        "info": _clip({k: v for k, v in info.items() if k != "tree"}),
        "trace": nodes,
        "prompts": prompts,
        "tree": tree,
        "votes": vote_groups(info, nodes, tree),
        # None: a run folder from before the ledger kept events (the page then draws the
        # committed usage from the trace's calls).
        "ledger": traced.get("ledger"),
        "usage_by_role": {role: _usage(u) for role, u in (row.get("usage_by_role") or {}).items()},
    }


# -- the page -----------------------------------------------------------------------------
def build_view_data(run_dir: str | Path, problem_id: str | None = None, *, text_chars: int = TEXT_CHARS,
                    max_detail_bytes: int = MAX_DETAIL_BYTES) -> dict[str, Any]:
    """The page's JSON: the run, every problem's row, and the details of as many problems as
    fit in ``max_detail_bytes`` (``problem_id``'s first). Raises ConfigError when ``run_dir``
    is not a run folder or has no problem ``problem_id``."""
    run = Path(run_dir)
    if not (run / "results.jsonl").is_file():
        raise ConfigError(f"{run} is not a run folder (no results.jsonl; make one with `reasoning-bench run --out`)")
    rows: dict[str, dict[str, Any]] = {}
    for row in _jsonl(run / "results.jsonl"):
        rows[str(row.get("id"))] = row  # a problem redone after a raised run limit: its last row
    if problem_id is not None and str(problem_id) not in rows:
        known = ", ".join(list(rows)[:20]) + (" ..." if len(rows) > 20 else "")
        raise ConfigError(f"{run} has no problem {problem_id!r}; its problems: {known or 'none'}")
    config = _read_json(run / "config.json")
    summary = _read_json(run / "summary.json")
    try:
        budget = Budget.parse(config.get("budget") or "").limits()
    except ConfigError:
        budget = {}
    try:
        run_budget = Budget.parse(config.get("run_budget") or "").limits()
    except ConfigError:
        run_budget = {}

    order = list(rows)
    if problem_id is not None:
        order.remove(str(problem_id))
        order.insert(0, str(problem_id))
    wanted = set(order)
    traces: dict[str, dict[str, Any]] = {}
    for traced in _jsonl(run / "traces.jsonl"):
        key = str(traced.get("id"))
        if key in wanted:
            traces[key] = traced
    details: dict[str, Any] = {}
    size, left_out = 0, 0
    for key in order:
        detail = problem_detail(rows[key], traces.get(key), text_chars)
        cost = len(json.dumps(detail, ensure_ascii=False))
        if details and size + cost > max_detail_bytes:
            left_out += 1
            continue
        details[key] = detail
        size += cost

    problems = []
    for key, row in rows.items():
        problems.append({
            "id": key, "correct": bool(row.get("correct")), "unverifiable": bool(row.get("unverifiable")),
            "answer": clip_text(row.get("answer"), 200), "gold": clip_text(row.get("gold"), 200),
            "usage": _usage(row.get("usage")), "seconds": (row.get("usage") or {}).get("seconds"),
            "stopped_by": row.get("stopped_by"), "status": row.get("status"),
            "traced": key in traces, "detail": key in details,
        })
    return {
        "format": VIEW_FORMAT,
        "run": {"dir": str(run), "name": run.name, "config": _clip(config),
                "summary": _clip({k: v for k, v in summary.items() if k != "config"})},
        "budget": budget,
        "run_budget": run_budget,
        "event_fields": list(EVENT_FIELDS),
        "problems": problems,
        "details": details,
        "left_out": left_out,
        "open": str(problem_id) if problem_id is not None else None,
    }


def page_json(data: dict[str, Any]) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element: every ``<`` (so "</script>",
    "<!--") and the two line separators JavaScript once treated as line ends are escaped."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_html(data: dict[str, Any]) -> str:
    """The page: the static frame, the data blob, the inline style and script."""
    title = f"reasoning-bench view: {data['run']['name']}"
    title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        # No network: nothing but this file is ever fetched (an empty favicon included).
        "<link rel=\"icon\" href=\"data:,\">\n"
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        "<header id=\"run\"></header>\n<main>\n<nav id=\"problems\" aria-label=\"problems\"></nav>\n"
        "<section id=\"problem\"><p class=\"muted\">Choose a problem.</p></section>\n</main>\n"
        f"<script type=\"application/json\" id=\"run-data\">{page_json(data)}</script>\n"
        f"<script>{_JS}</script>\n</body>\n</html>\n"
    )


def write_view(run_dir: str | Path, out_path: str | Path | None = None, problem_id: str | None = None, *,
               text_chars: int = TEXT_CHARS, max_detail_bytes: int = MAX_DETAIL_BYTES) -> Path:
    """Write the page of the run in ``run_dir`` to ``out_path`` (default ``RUN_DIR/view.html``),
    opening on ``problem_id`` when given; return its path."""
    data = build_view_data(run_dir, problem_id, text_chars=text_chars, max_detail_bytes=max_detail_bytes)
    out = Path(out_path) if out_path is not None else Path(run_dir) / "view.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(data), encoding="utf-8")
    return out


# -- serving it on loopback ---------------------------------------------------------------
LOOPBACK = "127.0.0.1"


def serve_view(path: str | Path, port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 (never another address) that answers ``/`` and
    ``/FILENAME`` with the page at ``path`` (read at each request) and anything else with 404.
    ``port`` 0 picks a free port (``server.server_address[1]``). Call ``serve_forever()``;
    ``shutdown()`` and ``server_close()`` stop it."""
    page = Path(path)
    names = {"/", "/" + page.name}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?")[0] not in names:
                self.send_error(404)
                return
            body = page.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return ThreadingHTTPServer((LOOPBACK, port), Handler)


def view_url(server: ThreadingHTTPServer, path: str | Path) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/{Path(path).name}"


_CSS = r"""
:root { --fg:#1d2329; --muted:#66707a; --line:#dde2e7; --bg:#fff; --alt:#f5f7f9; --ok:#1a7f37; --bad:#c62828;
  --kept:#1a7f37; --pruned:#9aa3ab; --complete:#1f5fbf; --final:#6a3fb5; --open:#b26a00; --sel:#fff6d6; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header { padding:10px 16px; border-bottom:1px solid var(--line); background:var(--alt); }
header h1 { font-size:17px; margin:0 0 4px; }
main { display:grid; grid-template-columns:minmax(260px,360px) 1fr; min-height:calc(100vh - 70px); }
nav { border-right:1px solid var(--line); overflow:auto; max-height:calc(100vh - 70px); position:sticky; top:0; }
section#problem { padding:12px 18px; min-width:0; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:3px 6px; border-bottom:1px solid var(--line); vertical-align:top; }
th { position:sticky; top:0; background:var(--alt); font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
tr.pick { cursor:pointer; } tr.pick:hover { background:var(--alt); } tr.current { background:var(--sel); }
.ok { color:var(--ok); font-weight:600; } .bad { color:var(--bad); font-weight:600; }
.muted { color:var(--muted); } .mono { font-family:ui-monospace,SFMono-Regular,Menlo,monospace; font-size:12.5px; }
h2 { font-size:18px; margin:4px 0 8px; } h3 { font-size:15px; margin:18px 0 6px; border-bottom:1px solid var(--line); padding-bottom:3px; }
.cards { display:flex; flex-wrap:wrap; gap:8px; }
.card { border:1px solid var(--line); border-radius:6px; padding:6px 10px; background:var(--alt); }
.card b { display:block; font-size:12px; color:var(--muted); font-weight:500; }
ul.tree { list-style:none; margin:0; padding-left:18px; } ul.tree.top { padding-left:0; }
li.tn > .row { display:flex; gap:8px; align-items:baseline; padding:1px 2px; border-radius:4px; white-space:nowrap; }
li.tn > .row:hover { background:var(--alt); } li.tn > .row.sel { background:var(--sel); }
.tog { width:14px; display:inline-block; color:var(--muted); user-select:none; } .tog.can { cursor:pointer; color:var(--fg); }
.kind { font-size:11px; padding:0 5px; border-radius:3px; border:1px solid var(--line); }
.kind.generate { background:#e8f0fe; } .kind.verify { background:#fdebd0; } .kind.span { background:#eef1f4; }
.name { cursor:pointer; font-weight:500; } .stat { color:var(--muted); font-size:12.5px; }
.err { color:var(--bad); } .status { font-size:11.5px; padding:0 6px; border-radius:9px; color:#fff; }
.status.kept { background:var(--kept); } .status.pruned { background:var(--pruned); } .status.complete { background:var(--complete); }
.status.final { background:var(--final); } .status.open { background:var(--open); } .status.root { background:#444; }
li.pruned > .row .step { text-decoration:line-through; color:var(--muted); }
.step { overflow:hidden; text-overflow:ellipsis; max-width:520px; display:inline-block; vertical-align:bottom; }
.split { display:grid; grid-template-columns:minmax(0,1fr) minmax(280px,40%); gap:14px; align-items:start; }
.panel { border:1px solid var(--line); border-radius:6px; padding:8px 10px; position:sticky; top:8px; max-height:90vh; overflow:auto; }
pre { white-space:pre-wrap; word-break:break-word; background:var(--alt); padding:6px 8px; border-radius:4px; margin:4px 0; }
button { font:inherit; font-size:12.5px; padding:1px 8px; cursor:pointer; }
.bar { height:10px; background:#4a78c2; border-radius:2px; display:inline-block; vertical-align:middle; }
svg.chart { width:100%; max-width:900px; height:260px; border:1px solid var(--line); border-radius:6px; background:#fff; }
svg.chart text { font-size:11px; fill:var(--muted); }
.legend span { margin-right:14px; } .sw { display:inline-block; width:18px; height:3px; vertical-align:middle; margin-right:4px; }
.note { background:#fff8e1; border:1px solid #f0d98a; padding:6px 10px; border-radius:6px; }
"""

_JS = r"""
(function () {
"use strict";
var DATA = JSON.parse(document.getElementById("run-data").textContent);
var PAGE = 200;              // children rendered per click in a tree
var LIST_PAGE = 500;         // problems rendered per click in the list
var FIELDS = DATA.event_fields;

function el(tag, attrs, text) {
  var node = document.createElement(tag);
  if (attrs) for (var k in attrs) {
    if (k === "class") node.className = attrs[k];
    else if (k === "title") node.title = attrs[k];
    else node.setAttribute(k, attrs[k]);
  }
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
// add(parent, children...) returns the parent; put(parent, child) returns the child.
function add(parent) { for (var i = 1; i < arguments.length; i++) if (arguments[i]) parent.appendChild(arguments[i]); return parent; }
function put(parent, child) { parent.appendChild(child); return child; }
function svg(tag, attrs) {
  var node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (var k in attrs) node.setAttribute(k, attrs[k]);
  return node;
}
// Numbers as people read them: 3549.76 -> "3,549.76", 3550 -> "3,550", 0.000123 -> "0.000123".
function fmt(x) {
  if (x === null || x === undefined || x === "") return "-";
  if (typeof x !== "number") return String(x);
  if (!isFinite(x)) return String(x);
  if (Number.isInteger(x)) return x.toLocaleString("en-US");
  var a = Math.abs(x);
  if (a >= 1000) return x.toLocaleString("en-US", {maximumFractionDigits: 2});
  if (a >= 1) return x.toLocaleString("en-US", {maximumFractionDigits: 3});
  if (a === 0) return "0";
  return String(Number(x.toPrecision(3)));
}
function secs(x) { return x === null || x === undefined ? "-" : (x < 1 ? (x * 1000).toFixed(1) + " ms" : x.toFixed(2) + " s"); }
function usageText(u) {
  if (!u) return "";
  var parts = [];
  if (u.tokens) parts.push(fmt(u.tokens) + " tok");
  if (u.cached_prompt_tokens) parts.push(fmt(u.cached_prompt_tokens) + " cached");
  if (u.calls) parts.push(fmt(u.calls) + (u.calls === 1 ? " call" : " calls"));
  if (u.usd) parts.push("$" + fmt(u.usd));
  return parts.join(" · ");
}
// JSON to read: short values and lists of plain values on one (wrapped) line, the rest indented.
function json(x) {
  if (Array.isArray(x) && x.every(function (v) { return v === null || typeof v !== "object"; }))
    return "[" + x.map(function (v) { return JSON.stringify(v); }).join(", ") + "]";
  var t = JSON.stringify(x);
  return t.length > 120 ? JSON.stringify(x, null, 1) : t;
}
function pct(x) { return (100 * x).toFixed(1) + "%"; }
function value(x) { return typeof x === "number" ? fmt(x) : (typeof x === "string" ? x : json(x)); }

// ---- the run header -------------------------------------------------------------------
function header() {
  var run = DATA.run, cfg = run.config || {}, s = run.summary || {};
  var h = document.getElementById("run");
  add(h, el("h1", null, "Run " + run.name));
  var bits = [];
  if (cfg.strategy) bits.push("strategy " + cfg.strategy);
  if (cfg.dataset) bits.push("dataset " + cfg.dataset);
  if (cfg.backend) bits.push("backend " + cfg.backend);
  if (cfg.budget) bits.push("budget " + cfg.budget);
  if (cfg.run_budget) bits.push("run budget " + cfg.run_budget);
  if (s.n_problems !== undefined) bits.push("accuracy " + pct(s.accuracy || 0) + " (" + fmt(s.n_correct) + "/" + fmt(s.n_problems) + ")");
  if (s.usage) bits.push(usageText(s.usage));
  add(h, el("div", {class: "muted"}, bits.join(" · ")));
  if (DATA.left_out) add(h, el("div", {class: "note"}, DATA.left_out + " problems' details are not in this page (too large); " +
      "open one with: reasoning-bench view " + run.dir + " --problem ID"));
}

// ---- the problem list -----------------------------------------------------------------
var rowsById = {};
function problemList() {
  var nav = document.getElementById("problems");
  var usd = DATA.problems.some(function (p) { return p.usage && p.usage.usd; });
  var table = el("table", {id: "problem-table"});
  var head = el("tr");
  ["id", "", "answer", "gold", "tokens", "calls"].concat(usd ? ["USD"] : []).concat(["stopped by"]).forEach(function (name, i) {
    add(head, el("th", {class: i >= 4 && name !== "stopped by" ? "num" : ""}, name));
  });
  add(table, add(el("thead"), head));
  var body = put(table, el("tbody"));
  function rows(start) {
    var end = Math.min(DATA.problems.length, start + LIST_PAGE);
    for (var i = start; i < end; i++) {
      var p = DATA.problems[i];
      var tr = el("tr", {class: "pick", "data-problem": p.id});
      add(tr, el("td", {class: "mono"}, p.id));
      add(tr, el("td", {class: p.unverifiable ? "muted" : (p.correct ? "ok" : "bad"),
                        title: p.unverifiable ? "not verifiable" : (p.correct ? "correct" : "incorrect")},
                 p.unverifiable ? "?" : (p.correct ? "\u2713" : "\u2717")));
      add(tr, el("td", {class: "mono"}, p.answer === null ? "-" : p.answer));
      add(tr, el("td", {class: "mono muted"}, p.gold === null ? "-" : p.gold));
      add(tr, el("td", {class: "num"}, fmt(p.usage.tokens || 0)));
      add(tr, el("td", {class: "num"}, fmt(p.usage.calls || 0)));
      if (usd) add(tr, el("td", {class: "num"}, fmt(p.usage.usd || 0)));
      add(tr, el("td", {class: "muted"}, p.stopped_by || ""));
      tr.addEventListener("click", (function (id) { return function () { location.hash = "problem=" + encodeURIComponent(id); }; })(p.id));
      rowsById[p.id] = tr;
      add(body, tr);
    }
    if (end < DATA.problems.length) {
      var more = el("tr"), cell = el("td", {colspan: "8"}), b = el("button", null, "show more (" + (DATA.problems.length - end) + " left)");
      b.addEventListener("click", function () { more.remove(); rows(end); });
      add(body, add(more, add(cell, b)));
    }
  }
  rows(0);
  add(nav, table);
}

// ---- a lazily rendered tree -----------------------------------------------------------
// roots: items; kidsOf(item) -> items; row(item, div) fills a row. Children are built when
// their parent is first opened, PAGE at a time; openDepth levels start open.
function LazyTree(host, roots, kidsOf, row, openDepth, cls) {
  this.kidsOf = kidsOf; this.row = row; this.openDepth = openDepth; this.cls = cls || "";
  this.items = new Map();  // id -> {li, open()}
  var ul = el("ul", {class: "tree top"});
  add(host, ul);
  this.fill(ul, roots, 0, 0);
}
LazyTree.prototype.fill = function (ul, items, start, depth) {
  var self = this, end = Math.min(items.length, start + PAGE);
  for (var i = start; i < end; i++) add(ul, this.item(items[i], depth));
  if (end < items.length) {
    var li = el("li", {class: "more"}), b = el("button", null, "show " + Math.min(PAGE, items.length - end) + " more of " + (items.length - end));
    b.addEventListener("click", function () { li.remove(); self.fill(ul, items, end, depth); });
    add(ul, add(li, b));
  }
  ul._shown = end; ul._items = items; ul._depth = depth;
};
LazyTree.prototype.item = function (node, depth) {
  var self = this, kids = this.kidsOf(node);
  var li = el("li", {class: "tn " + (this.cls ? this.cls(node) : ""), "data-node": node.id});
  var line = el("div", {class: "row"});
  var tog = el("span", {class: "tog" + (kids.length ? " can" : "")}, kids.length ? "\u25b8" : "\u00b7");
  add(li, add(line, tog));
  this.row(node, line);
  var sub = null;
  function open(show) {
    if (!kids.length) return;
    if (!sub) { sub = el("ul", {class: "tree"}); self.fill(sub, kids, 0, depth + 1); add(li, sub); }
    else sub.hidden = show === undefined ? !sub.hidden : !show;
    tog.textContent = sub.hidden ? "\u25b8" : "\u25be";
  }
  if (kids.length) tog.addEventListener("click", function () { open(); });
  this.items.set(node.id, {li: li, line: line, open: open, sub: function () { return sub; }});
  if (depth < this.openDepth) open(true);
  return li;
};
// Open the ancestors of a node (path: ids from a root down to it) and scroll to it.
LazyTree.prototype.reveal = function (path) {
  for (var i = 0; i < path.length; i++) {
    var it = this.items.get(path[i]);
    if (!it) return null;
    if (i < path.length - 1) {
      it.open(true);
      var ul = it.sub();
      while (!this.items.has(path[i + 1]) && ul._shown < ul._items.length) {
        var more = ul.querySelector(":scope > li.more"); if (more) more.remove();
        this.fill(ul, ul._items, ul._shown, ul._depth);
      }
    }
  }
  var last = this.items.get(path[path.length - 1]);
  if (last) last.li.scrollIntoView({block: "center"});
  return last;
};

// ---- one problem ----------------------------------------------------------------------
function showProblem(id) {
  var host = document.getElementById("problem");
  host.textContent = "";
  Object.keys(rowsById).forEach(function (k) { rowsById[k].classList.toggle("current", k === id); });
  var p = DATA.problems.find(function (q) { return q.id === id; });
  if (!p) { add(host, el("p", {class: "muted"}, "No problem " + id + " in this run.")); return; }
  var d = DATA.details[id];
  add(host, el("h2", null, "Problem " + id));
  var cards = put(host, el("div", {class: "cards"}));
  function card(label, value, cls) { add(cards, add(el("div", {class: "card"}), el("b", null, label), el("span", {class: cls || ""}, value))); }
  card("result", p.unverifiable ? "not verifiable" : (p.correct ? "correct" : "incorrect"), p.unverifiable ? "muted" : (p.correct ? "ok" : "bad"));
  card("answer", p.answer === null ? "none" : p.answer, "mono");
  card("gold", p.gold === null ? "-" : p.gold, "mono");
  card("cost", usageText(p.usage) || "nothing");
  if (p.seconds !== null && p.seconds !== undefined) card("time", secs(p.seconds));
  if (p.stopped_by) card("stopped by", p.stopped_by, "bad");
  if (!d) {
    add(host, el("p", {class: "note"}, p.traced ? "This problem's details are not in this page (it would be too large). Open it with: reasoning-bench view " + DATA.run.dir + " --problem " + id
                                              : "This run folder has no trace for this problem."));
    return;
  }
  if (d.usage_by_role && Object.keys(d.usage_by_role).length > 1)
    Object.keys(d.usage_by_role).forEach(function (role) { card(role, usageText(d.usage_by_role[role])); });
  var byId = new Map(), kids = new Map(), roots = [];
  d.trace.forEach(function (n) { byId.set(n.id, n); kids.set(n.id, []); });
  d.trace.forEach(function (n) { if (n.parent !== null && kids.has(n.parent)) kids.get(n.parent).push(n); else roots.push(n); });
  var callTree = null;
  function revealCall(id) {
    var path = [], n = byId.get(id);
    while (n) { path.unshift(n.id); n = n.parent === null ? null : byId.get(n.parent); }
    var it = callTree && callTree.reveal(path);
    if (it) selectCall(byId.get(id), it.line);
  }
  if (d.votes) votes(host, d.votes);
  if (d.tree) searchTree(host, d.tree, revealCall);
  ledger(host, d, p);
  add(host, el("h3", null, "Call tree (" + d.trace.length + " nodes)"));
  var split = put(host, el("div", {class: "split"}));
  var left = put(split, el("div", {id: "call-tree"})), panel = put(split, el("div", {class: "panel", id: "node-panel"}));
  add(panel, el("p", {class: "muted"}, "Click a node's name for its request, prefix, completions and info."));
  var selected = null;
  function selectCall(node, line) {
    if (selected) selected.classList.remove("sel");
    selected = line; line.classList.add("sel");
    nodePanel(panel, node, d, revealCall);
  }
  callTree = new LazyTree(left, roots, function (n) { return kids.get(n.id) || []; }, function (n, line) {
    add(line, el("span", {class: "kind " + n.kind}, n.kind));
    var name = put(line, el("span", {class: "name"}, n.name));
    name.addEventListener("click", function () { selectCall(n, line); });
    var stat = [];
    if (n.req && n.req.n) stat.push("n=" + n.req.n);
    if (n.req && n.req.prefix) stat.push("prefix " + (n.req.prefix.steps || 0) + " steps" + (n.req.prefix.tokens ? ", " + fmt(n.req.prefix.tokens) + " tok" : ""));
    var u = n.usage || n.total;
    if (u) stat.push(usageText(u));
    if (n.t1 !== null && n.t1 !== undefined && n.t0 !== null && n.t0 !== undefined) stat.push(secs(n.t1 - n.t0));
    if (n.info && n.info.shrunk) stat.push("shrunk by " + n.info.shrunk.by);
    add(line, el("span", {class: "stat"}, stat.join(" · ")));
    if (n.error) add(line, el("span", {class: "err"}, n.error));
  }, 1);
  if (d.text) { add(host, el("h3", null, "Answer text")); add(host, el("pre", null, d.text)); }
  var info = Object.keys(d.info || {});
  if (info.length) {
    add(host, el("h3", null, "Outcome info"));
    var t = put(host, el("table", {class: "mono"}));
    info.forEach(function (k) { var tr = put(t, el("tr")); add(tr, el("td", null, k)); add(tr, add(el("td"), el("pre", null, value(d.info[k])))); });
  }
}

function nodePanel(panel, n, d, revealCall) {
  panel.textContent = "";
  add(panel, el("h3", null, n.kind + " " + n.name + " (#" + n.id + ")"));
  var t = put(panel, el("table"));
  function kv(k, v) { var tr = put(t, el("tr")); add(tr, el("td", {class: "muted"}, k)); add(tr, el("td", {class: "mono"}, v)); }
  kv("started", secs(n.t0)); kv("ended", secs(n.t1));
  if (n.t1 !== null && n.t0 !== null && n.t1 !== undefined) kv("took", secs(n.t1 - n.t0));
  if (n.usage) Object.keys(n.usage).forEach(function (k) { kv(k, fmt(n.usage[k])); });
  if (n.total) kv("under it", usageText(n.total));
  if (n.error) kv("error", n.error);
  if (n.req) {
    var r = n.req;
    ["n", "max_tokens", "temperature", "top_p", "seed", "top_logprobs"].forEach(function (k) { if (r[k] !== undefined) kv(k, fmt(r[k])); });
    if (r.stop) kv("stop", JSON.stringify(r.stop));
    if (r.prompt_token_ids) kv("prompt ids", fmt(r.prompt_token_ids));
    if (r.prefix) {
      var tr = put(t, el("tr")); add(tr, el("td", {class: "muted"}, "prefix"));
      var td = put(tr, el("td", {class: "mono"}, (r.prefix.steps || 0) + " steps, " + (r.prefix.tokens !== null && r.prefix.tokens !== undefined ? fmt(r.prefix.tokens) + " tokens, " : "") + fmt(r.prefix.chars) + " chars, from node "));
      if (r.prefix.node !== null && r.prefix.node !== undefined) {
        var a = put(td, el("a", {href: "#"}, "#" + r.prefix.node));
        a.addEventListener("click", function (e) { e.preventDefault(); revealCall(r.prefix.node); });
      }
    }
    if (r.prompt !== undefined) {
      add(panel, el("h3", null, "Prompt"));
      var prompt = d.prompts[r.prompt];
      if (Array.isArray(prompt)) prompt.forEach(function (m) { add(panel, el("div", {class: "muted"}, m.role)); add(panel, el("pre", null, m.content)); });
      else add(panel, el("pre", null, typeof prompt === "string" ? prompt : json(prompt)));
    }
  }
  if (n.out) {
    add(panel, el("h3", null, n.out.length + (n.out.length === 1 ? " completion" : " completions")));
    n.out.forEach(function (c, i) {
      add(panel, el("div", {class: "muted"}, "#" + i + " · " + fmt(c.tokens) + " tokens · " + (c.finish || "?") + " · answer " + (c.answer === null ? "none" : c.answer)));
      add(panel, el("pre", null, c.text));
    });
  }
  if (n.info && Object.keys(n.info).length) { add(panel, el("h3", null, "Info")); add(panel, el("pre", null, json(n.info))); }
}

function votes(host, groups) {
  var meta = groups[0], rows = groups.slice(1);
  add(host, el("h3", null, "Votes"));
  var t = put(host, el("table", {id: "votes"}));
  add(t, add(el("tr"), el("th", null, "answer"), el("th", {class: "num"}, "weight"), el("th", {class: "num"}, "share"), el("th", {class: "num"}, meta.source), el("th", null, "")));
  var most = Math.max.apply(null, rows.map(function (g) { return g.weight || 0; }).concat([1e-12]));
  rows.forEach(function (g) {
    var tr = put(t, el("tr"));
    add(tr, el("td", {class: "mono"}, g.as_written));
    add(tr, el("td", {class: "num"}, g.weight === null || g.weight === undefined ? "-" : fmt(g.weight)));
    add(tr, el("td", {class: "num"}, g.share === null ? "-" : pct(g.share)));
    add(tr, el("td", {class: "num"}, fmt(g.count)));
    var bar = el("span", {class: "bar"}); bar.style.width = Math.round(160 * (g.weight || 0) / most) + "px";
    add(tr, add(el("td"), bar));
  });
  if (meta.unanswered) add(host, el("div", {class: "muted"}, meta.unanswered + " " + meta.source + " gave no answer"));
}

function searchTree(host, records, revealCall) {
  add(host, el("h3", null, "Search tree (" + (records.length - 1) + " nodes)"));
  var counts = {};
  records.forEach(function (r) { counts[r.status] = (counts[r.status] || 0) + 1; });
  var legend = put(host, el("div", {class: "legend"}));
  ["kept", "pruned", "complete", "final", "open"].forEach(function (s) {
    if (counts[s]) add(legend, add(el("span"), el("span", {class: "status " + s}, s), document.createTextNode(" " + counts[s])));
  });
  add(legend, el("span", {class: "muted"}, "expanded = had next steps drawn; KV = the prefix its call continued"));
  var kids = new Map(), roots = [];
  records.forEach(function (r) { kids.set(r.id, []); });
  records.forEach(function (r) { if (r.parent !== null && kids.has(r.parent)) kids.get(r.parent).push(r); else roots.push(r); });
  var box = put(host, el("div", {id: "search-tree"}));
  new LazyTree(box, roots, function (r) { return kids.get(r.id) || []; }, function (r, line) {
    add(line, el("span", {class: "status " + r.status}, r.status));
    add(line, el("span", {class: "mono"}, "#" + r.id));
    if (r.depth) add(line, el("span", {class: "stat"}, "d" + r.depth));
    if (r.score !== null && r.score !== undefined) add(line, el("span", {title: "PRM score"}, "PRM " + fmt(r.score)));
    if (r.expanded) add(line, el("span", {class: "stat"}, "expanded"));
    if (r.subtree !== undefined) add(line, el("span", {class: "stat"}, "subtree " + r.subtree));
    if (r.children !== undefined) add(line, el("span", {class: "stat"}, r.children + " children"));
    if (r.answer !== null && r.answer !== undefined) add(line, el("span", {class: "mono"}, "\u2192 " + r.answer));
    if (r.kv !== undefined) {
      var kv = r.kv ? "KV " + (r.kv.steps || 0) + " steps" + (r.kv.tokens !== null && r.kv.tokens !== undefined ? ", " + fmt(r.kv.tokens) + " tok" : ", " + fmt(r.kv.chars) + " chars") : "KV prompt only";
      if (r.cached) kv += " (cache hit " + fmt(r.cached) + ")";
      add(line, el("span", {class: "stat", title: "what this node's call shared with its parent"}, kv));
    }
    if (r.trace !== null && r.trace !== undefined) {
      var a = put(line, el("a", {href: "#", class: "stat"}, "call #" + r.trace));
      a.addEventListener("click", function (e) { e.preventDefault(); revealCall(r.trace); });
    }
    if (r.step) add(line, el("span", {class: "step mono", title: r.step}, r.step));
  }, records.length > 300 ? 1 : 3, function (r) { return r.status; });
}

// ---- the ledger over time -------------------------------------------------------------
var LIMITS = ["tokens", "completion_tokens", "uncached_tokens", "calls", "usd", "flops"];
function amount(values, limit) {
  var v = {};
  FIELDS.forEach(function (f, i) { v[f] = values[i] || 0; });
  if (limit === "tokens") return v.prompt_tokens + v.completion_tokens;
  if (limit === "uncached_tokens") return v.prompt_tokens + v.completion_tokens - v.cached_prompt_tokens;
  return v[limit] || 0;
}
function series(events, limit) {
  var reserved = 0, committed = 0, released = 0, pts = [[0, 0, 0, 0]], marks = [];
  events.forEach(function (e) {
    var t = e[0], kind = e[1];
    if (kind === "reserve") reserved += amount(e[2], limit);
    else if (kind === "commit") { var c = amount(e[2], limit), r = amount(e[3], limit); reserved -= r; committed += c; released += r - c; }
    else if (kind === "release") { var a = amount(e[2], limit); reserved -= a; released += a; }
    else { marks.push([t, kind, e[2]]); return; }
    pts.push([t, Math.max(0, reserved), committed, released]);
  });
  return {pts: pts, marks: marks};
}
function ledger(host, d, p) {
  add(host, el("h3", null, "Ledger over time"));
  var events = d.ledger, derived = false;
  if (!events) {  // a run from before the ledger's event log: the committed usage of each call
    derived = true;
    events = [];
    d.trace.forEach(function (n) {
      if (n.kind !== "generate" || !n.usage || n.t1 === null || n.t1 === undefined) return;
      var v = FIELDS.map(function (f) { return n.usage[f] || 0; });
      events.push([n.t1, "commit", v, v]);
    });
    events.sort(function (a, b) { return a[0] - b[0]; });
    add(host, el("p", {class: "note"}, "This run predates the ledger's event log: only what each call was charged is drawn (no reservations)."));
  }
  if (!events.length) { add(host, el("p", {class: "muted"}, "No ledger events (no calls were made).")); return; }
  var stopped = (p.stopped_by || "").replace(/^run:/, "");
  var used = LIMITS.filter(function (l) { return events.some(function (e) { return (e[1] === "reserve" || e[1] === "commit") && amount(e[2], l) > 0; }); });
  var start = stopped && used.indexOf(stopped) >= 0 ? stopped : (Object.keys(DATA.budget).filter(function (l) { return used.indexOf(l) >= 0; })[0] || used[0] || "tokens");
  var controls = put(host, el("div"));
  add(controls, el("label", {for: "ledger-limit"}, "limit "));
  var select = put(controls, el("select", {id: "ledger-limit"}));
  used.forEach(function (l) { var o = put(select, el("option", {value: l}, l + (DATA.budget[l] !== undefined ? " (cap " + fmt(DATA.budget[l]) + ")" : ""))); if (l === start) o.selected = true; });
  var legend = put(controls, el("span", {class: "legend"}));
  [["#4a78c2", "committed"], ["#e0a100", "reserved (in flight)"], ["#9aa3ab", "released"], ["#c62828", "cap / stop"]].forEach(function (s) {
    var sw = el("span", {class: "sw"}); sw.style.background = s[0]; add(legend, add(el("span"), sw, document.createTextNode(s[1])));
  });
  var box = put(host, el("div", {id: "ledger-chart"}));
  var summary = put(host, el("div", {class: "muted"}));
  function draw() {
    var limit = select.value || start, s = series(events, limit), cap = DATA.budget[limit];
    box.textContent = "";
    var W = 900, H = 260, L = 64, R = 12, T = 12, B = 28;
    var tmax = Math.max.apply(null, s.pts.map(function (q) { return q[0]; }).concat(s.marks.map(function (m) { return m[0]; })).concat([1e-6]));
    var ymax = Math.max.apply(null, s.pts.map(function (q) { return Math.max(q[1] + q[2], q[3]); }).concat([cap || 0, 1e-12]));
    function X(t) { return L + (W - L - R) * t / tmax; }
    function Y(v) { return H - B - (H - T - B) * v / ymax; }
    var chart = svg("svg", {class: "chart", viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "ledger over time: " + limit});
    chart.appendChild(svg("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999"}));
    chart.appendChild(svg("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#999"}));
    [0, 0.5, 1].forEach(function (f) {
      var lab = svg("text", {x: L - 4, y: Y(ymax * f) + 4, "text-anchor": "end"}); lab.textContent = fmt(Number((ymax * f).toPrecision(3))); chart.appendChild(lab);
      var tl = svg("text", {x: X(tmax * f), y: H - 8, "text-anchor": "middle"}); tl.textContent = secs(tmax * f); chart.appendChild(tl);
    });
    // A step line: each value holds until the next event.
    function step(index, color, stack) {
      var d = "";
      s.pts.forEach(function (q, i) {
        var x = X(q[0]).toFixed(1), y = Y(stack ? q[1] + q[2] : q[index]).toFixed(1);
        d += i === 0 ? "M" + x + " " + y : " H" + x + " V" + y;
      });
      d += " H" + X(tmax).toFixed(1);
      chart.appendChild(svg("path", {d: d, fill: "none", stroke: color, "stroke-width": 2}));
    }
    step(3, "#9aa3ab"); step(1, "#e0a100", true); step(2, "#4a78c2");
    if (cap !== undefined) {
      chart.appendChild(svg("line", {x1: L, y1: Y(cap), x2: W - R, y2: Y(cap), stroke: "#c62828", "stroke-dasharray": "5 4"}));
      var ct = svg("text", {x: W - R - 2, y: Y(cap) - 4, "text-anchor": "end"}); ct.textContent = "cap " + fmt(cap); chart.appendChild(ct);
    }
    s.marks.forEach(function (m, i) {
      var first = i === 0;
      chart.appendChild(svg("line", {x1: X(m[0]), y1: T, x2: X(m[0]), y2: H - B, stroke: "#c62828", "stroke-width": first ? 2 : 1, "stroke-dasharray": first ? "" : "2 3", class: "stop-mark"}));
      if (first) { var mt = svg("text", {x: X(m[0]) + 4, y: T + 10}); mt.textContent = m[1] + " by " + m[2]; chart.appendChild(mt); }
    });
    box.appendChild(chart);
    var end = s.pts[s.pts.length - 1];
    summary.textContent = limit + ": committed " + fmt(end[2]) + ", released " + fmt(end[3]) + (cap !== undefined ? ", cap " + fmt(cap) : "") +
      (s.marks.length ? "; first " + s.marks[0][1] + " by " + s.marks[0][2] + " at " + secs(s.marks[0][0]) + " (" + s.marks.length + " shrunk or refused)" : "") +
      (derived ? "" : "; " + events.filter(function (e) { return e[1] === "reserve"; }).length + " reservations");
  }
  select.addEventListener("change", draw);
  draw();
}

// ---- routing --------------------------------------------------------------------------
function route() {
  var m = /problem=([^&]*)/.exec(location.hash);
  var id = m ? decodeURIComponent(m[1]) : (DATA.open !== null ? DATA.open : (DATA.problems[0] ? DATA.problems[0].id : null));
  if (id !== null) showProblem(id);
}
header();
problemList();
window.addEventListener("hashchange", route);
route();
})();
"""
