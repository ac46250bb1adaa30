"""``reasoning-bench view``: the run viewer page, from run folders the real CLI wrote (Scripted
backends), the ledger's event log it draws, the page's safety against model text, its size and
lazy rendering at 10,000 trace nodes, the CLI subcommand and ``--serve`` on loopback."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reasoning.backends import Scripted
from reasoning.benchmarks.cli import main
from reasoning.benchmarks.viewer import build_view_data, page_json, serve_view, view_url, write_view
from reasoning.budget import EVENT_FIELDS, Budget, CallShape, Ledger, Usage
from reasoning.errors import BudgetExhausted
from reasoning.registry import BACKENDS
from reasoning.trace import Trace

ROOT = Path(__file__).resolve().parent.parent


# -- a backend that writes solutions in steps, so that searches grow real trees -------------
class StepTree(Scripted):
    """``steptree:A,B``: every solution is three steps ("Step k: ...", blank line between), the
    last one boxing the answers in turn; a continuation gets the steps after the ones it holds
    (a search's stop string cuts one step). An LLM PRM's judgement ("Latest step:") gets a
    verdict, Yes or No in turn, whose probability the Scripted logprobs make vary."""

    def _text(self, request, index):
        prompt = request.prompt_text() if request.messages is not None else ""
        if "Latest step:" in prompt:
            return "Checked. Is the step correct (Yes/No)? " + ("Yes" if index % 3 else "No")
        done = self.continuation(request).count("\n\n")
        answer = self.answers[index % len(self.answers)]
        steps = [f"Step 1: idea {index % 3}.\n\n", f"Step 2: work {index % 2}.\n\n", f"Step 3: so \\boxed{{{answer}}}."]
        return "".join(steps[min(done, 2):])


@pytest.fixture(autouse=True)
def steptree_backend(monkeypatch):
    """``--backend steptree:...`` for this module's tests only (the registry is process-wide)."""
    monkeypatch.setitem(BACKENDS._classes, "steptree", StepTree)


def run(out, *args):
    assert main(["run", "--dataset", "gsm8k", "--out", str(out), *args]) == 0
    return out


def page_data(html: str) -> dict:
    """The JSON blob of a page, as the page's script reads it."""
    match = re.search(r'<script type="application/json" id="run-data">(.*?)</script>', html, re.DOTALL)
    assert match, "no data blob"
    return json.loads(match.group(1))


def view(run_dir, *args) -> tuple[str, dict]:
    out = Path(run_dir) / "page.html"
    assert main(["view", str(run_dir), "--out", str(out), *args]) == 0
    html = out.read_text(encoding="utf-8")
    return html, page_data(html)


# -- the ledger's event log -------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_ledger_logs_reservations_commits_releases_and_stops_over_time():
    clock = Clock()
    shape = CallShape(prompt_tokens=10, prompt_copies_per_sample=False, calls_per_sample=False)
    parent = Ledger(Budget(tokens=100), clock=clock, events=True)
    ledger = parent.child(Budget(calls=3))  # a slice keeps no log of its own; its parent's has its events
    assert ledger.events is None and ledger.event_log() == []
    clock.now = 100.5
    first = ledger.reserve(shape, n=2, max_tokens=20)  # 10 + 40 = 50 fits
    clock.now = 101.0
    ledger.commit(first, Usage(prompt_tokens=10, completion_tokens=15, calls=1, cached_prompt_tokens=4))
    clock.now = 101.25
    second = ledger.reserve(shape, n=4, max_tokens=40)  # 170 does not fit 75 left: 1 x 40 = 50 does
    clock.now = 101.5
    ledger.release(second)
    clock.now = 102.0
    with pytest.raises(BudgetExhausted):
        ledger.reserve(shape, n=1, max_tokens=90, min_tokens=80)  # 90 > 75 left: refused
    assert parent.events[0] == (0.5, "reserve", first.amount)
    assert parent.event_log() == [
        [0.5, "reserve", [10, 40, 0, 1, 0.0, 0.0]],
        [1.0, "commit", [10, 15, 4, 1, 0.0, 0.0], [10, 40, 0, 1, 0.0, 0.0]],
        [1.25, "shrink", "tokens"],
        [1.25, "reserve", [10, 40, 0, 1, 0.0, 0.0]],
        [1.5, "release", [10, 40, 0, 1, 0.0, 0.0]],
        [2.0, "refuse", "tokens"],
    ]
    assert list(EVENT_FIELDS) == ["prompt_tokens", "completion_tokens", "cached_prompt_tokens", "calls", "usd", "flops"]
    assert parent.stopped_by == "tokens" and parent.used.tokens == 25  # the log changed nothing


def test_solve_keeps_the_problem_ledgers_events_in_the_result():
    import reasoning as rz
    from reasoning.strategies import create

    result = rz.solve("q", create("self-consistency", n=3), Scripted(["5"]), Budget(tokens=10_000))
    kinds = [event[1] for event in result.ledger_events]
    assert kinds == ["reserve", "commit"]
    committed = result.ledger_events[1][2]
    assert committed[0] + committed[1] == result.usage.tokens and committed[3] == result.usage.calls == 1
    assert json.loads(json.dumps(result.ledger_events)) == result.ledger_events  # JSON as it is


def test_a_run_writes_each_problems_ledger_and_its_first_stop_is_stopped_by(tmp_path):
    out = run(tmp_path / "run", "--limit", "2", "--strategy", "early-stop-sc", "--option", "in_flight=false",
              "--backend", "scripted:42,7", "--budget", "tokens=600")
    rows = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    for traced in map(json.loads, (out / "traces.jsonl").read_text().splitlines()):
        events, row = traced["ledger"], rows[traced["id"]]
        commits = [e for e in events if e[1] == "commit"]
        assert sum(e[2][0] + e[2][1] for e in commits) == row["usage"]["tokens"]
        assert sum(e[2][3] for e in commits) == row["usage"]["calls"] == len(commits)
        stops = [e for e in events if e[1] in ("shrink", "refuse")]
        assert stops and stops[0][2] == row["stopped_by"] == "tokens" and events[-1][1] == "refuse"
        times = [e[0] for e in events]
        assert times == sorted(times) and times[0] >= 0


# -- pages of real runs ---------------------------------------------------------------------
def test_the_page_of_a_self_consistency_run_lists_problems_answers_votes_and_the_call_tree(tmp_path):
    out = run(tmp_path / "sc", "--limit", "3", "--strategy", "self-consistency", "--n", "3",
              "--backend", "scripted:18,18,7")
    html, data = view(out)
    assert [p["id"] for p in data["problems"]] == ["0", "1", "2"]
    first = data["problems"][0]
    assert first["correct"] is True and first["answer"] == "18" and first["gold"] == "18"  # GSM8K item 0
    assert [p["correct"] for p in data["problems"][1:]] == [False, False]
    assert first["usage"]["calls"] == 1 and first["usage"]["tokens"] > 0
    detail = data["details"]["0"]
    meta, *groups = detail["votes"]
    assert meta["source"] == "samples in the trace"
    assert [(g["answer"], g["weight"], g["count"]) for g in groups] == [("18", 2.0, 2), ("7", 1.0, 1)]
    assert groups[0]["share"] == pytest.approx(2 / 3)
    kinds = [(n["kind"], n["name"], n["parent"]) for n in detail["trace"]]
    assert kinds == [("span", "self-consistency", None), ("generate", "generate", 0)]
    call = detail["trace"][1]
    assert call["req"]["n"] == 3 and [c["answer"] for c in call["out"]] == ["18", "18", "7"]
    assert detail["trace"][0]["total"]["tokens"] == call["usage"]["tokens"] == first["usage"]["tokens"]
    assert "token_ids" in (out / "traces.jsonl").read_text() and '"token_ids"' not in json.dumps(data)  # not in the page
    assert [e[1] for e in detail["ledger"]] == ["reserve", "commit"]


def test_the_page_of_a_beam_search_shows_kept_pruned_and_finished_nodes_with_scores_and_shared_prefixes(tmp_path):
    out = run(tmp_path / "beam", "--limit", "1", "--strategy", "beam-search", "--n", "4", "--option", "width=2",
              "--backend", "steptree:5,7")
    _, data = view(out)
    tree = data["details"]["0"]["tree"]
    by_id = {r["id"]: r for r in tree}
    statuses = {r["status"] for r in tree}
    assert {"root", "kept", "pruned", "complete"} <= statuses
    assert tree[0]["status"] == "root" and tree[0]["expanded"] is True
    # Depth 1 drew n = 4 first steps from the prompt; the best n // width = 2 were kept and expanded.
    first = [r for r in tree if r["depth"] == 1]
    assert len(first) == 4 and sorted(r["status"] for r in first) == ["kept", "kept", "pruned", "pruned"]
    for record in tree[1:]:
        assert isinstance(record["score"], float)  # the PRM's score
        assert record["expanded"] == any(r["parent"] == record["id"] for r in tree)
        assert record["expanded"] == (record["status"] == "kept" and record["depth"] < 3)
        if record["depth"] == 1:
            assert record["kv"] is None  # a first step shares the prompt only
        else:  # a later one continued its parent's prefix: the parent's steps and token ids
            assert record["kv"]["steps"] == record["depth"] - 1 == by_id[record["parent"]]["depth"]
            assert record["kv"]["tokens"] > 0 and record["kv"]["node"] == by_id[record["parent"]]["trace"]
        call = next(n for n in data["details"]["0"]["trace"] if n["id"] == record["trace"])
        assert record["cached"] == call.get("usage", {}).get("cached_prompt_tokens", 0)
    assert any(r["cached"] > 0 for r in tree[1:])  # prefixes re-read from the backend's prefix cache
    kept = [r for r in first if r["status"] == "kept"]
    pruned = [r for r in first if r["status"] == "pruned"]
    assert min(r["score"] for r in kept) >= max(r["score"] for r in pruned)
    # The vote of a search: the PRM-weighted finished paths.
    meta, *groups = data["details"]["0"]["votes"]
    assert meta["source"] == "finished paths"
    assert sum(g["count"] for g in groups) == sum(r["status"] == "complete" for r in tree)
    # Each tree node names the call that drew it; the call tree has the spans of each depth.
    calls = {n["id"]: n for n in data["details"]["0"]["trace"]}
    assert all(calls[r["trace"]]["kind"] == "generate" for r in tree[1:])
    assert any(n["name"] == "depth-2" and n["kind"] == "span" for n in calls.values())


@pytest.mark.parametrize("strategy, options", [
    ("dvts", ["--n", "4", "--option", "width=2"]),
    ("rebase", ["--n", "4"]),
    ("ets", ["--n", "4", "--option", "embeddings=ngrams"]),
])
def test_the_other_searches_pages_show_pruned_nodes(strategy, options, tmp_path):
    out = run(tmp_path / strategy, "--limit", "1", "--strategy", strategy, *options, "--backend", "steptree:5,7")
    _, data = view(out)
    tree = data["details"]["0"]["tree"]
    assert any(r["status"] == "pruned" for r in tree) and any(r["status"] == "complete" for r in tree)
    assert all(r["expanded"] == any(c["parent"] == r["id"] for c in tree) for r in tree)
    assert any(r["kv"] and r["kv"]["steps"] >= 1 for r in tree[1:])


@pytest.mark.parametrize("strategy, options, source", [
    ("deepconf", ["--n", "32", "--option", "warmup=4"], "samples that voted"),
    ("early-stop-sc", [], "samples in the trace"),
    ("parallel-thinking", ["--option", "paths=4"], "paths"),
])
def test_the_pages_of_voting_strategies_show_answer_groups(strategy, options, source, tmp_path):
    out = run(tmp_path / strategy, "--limit", "1", "--strategy", strategy, *options, "--backend", "scripted:42,7")
    html, data = view(out)
    meta, *groups = data["details"]["0"]["votes"]
    assert meta["source"].startswith(source)
    assert {g["answer"] for g in groups} == {"42", "7"}
    traced = json.loads((out / "traces.jsonl").read_text().splitlines()[0])
    assert {g["answer"]: g["weight"] for g in groups} == pytest.approx(traced["info"]["votes"])
    assert all(g["count"] >= 1 for g in groups)
    if strategy == "deepconf":  # the counts are of the samples that voted, not of those filtered out
        info = traced["info"]
        assert sum(g["count"] for g in groups) == info["voters"] == sum(info["voted"]) < info["n"]
        assert f"{info['n'] - info['voters']} filtered or stopped" in meta["source"]


def test_a_genrm_run_shows_the_verifier_role_and_its_calls(tmp_path):
    out = run(tmp_path / "genrm", "--limit", "1", "--strategy", "genrm-best-of-n", "--backend", "scripted:42,7")
    _, data = view(out)
    detail = data["details"]["0"]
    assert set(detail["usage_by_role"]) == {"generator", "verifier"}
    verify = [n for n in detail["trace"] if n["kind"] == "span" and n["name"] == "verify"]
    assert verify and verify[0]["total"]["calls"] == sum(
        n["usage"]["calls"] for n in detail["trace"] if n["parent"] == verify[0]["id"])


# -- model text cannot break the page ----------------------------------------------------------
class Tags(HTMLParser):
    """Start tags outside <script> and <style>, and each script's type."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.scripts: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script":
            self.scripts.append(dict(attrs).get("type"))


EVIL = "</script><script>document.title='pwned'</script><!--<script>"


def test_a_trace_text_with_script_tags_cannot_end_the_data_blob(tmp_path):
    # The model "answers" with markup: it lands in results.jsonl, traces.jsonl and the page.
    out = run(tmp_path / "evil", "--limit", "1", "--strategy", "self-consistency", "--n", "2",
              "--backend", f"scripted:{EVIL}")
    raw = (out / "traces.jsonl").read_text()
    assert "</script>" in raw
    html, data = view(out)
    assert html.count("</script>") == 2 and html.count("<script") == 2 and "<!--" not in html
    parser = Tags()
    parser.feed(html)
    assert parser.scripts == ["application/json", None]
    assert data == json.loads(page_json(build_view_data(out)))  # the blob reads back whole
    text = data["details"]["0"]["trace"][1]["out"][0]["text"]
    assert EVIL in text and data["problems"][0]["answer"] is not None and "</script>" in data["problems"][0]["answer"]


def test_page_json_escapes_every_less_than_sign_and_line_separator():
    text = page_json({"a": "</script>\u2028<!--", "b": ["<"]})
    assert "<" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script>\u2028<!--", "b": ["<"]}


# -- 10,000 nodes -----------------------------------------------------------------------------
def big_run(folder: Path, spans: int = 99, calls: int = 100) -> Path:
    """A run folder with one problem whose trace has 1 + spans + spans x calls nodes (10,000)."""
    trace = Trace()
    root = trace.add("span", "beam-search", None, info={"n": 8})
    for s in range(spans):
        span = trace.add("span", f"depth-{s + 1}", root.id, info={"depth": s + 1})
        for c in range(calls):
            node = trace.add("generate", f"step-{s + 1}", span.id,
                             request={"n": 1, "max_tokens": 64, "messages": [{"role": "user", "content": "Find x."}]},
                             completions=[{"text": f"step {s}.{c}\n\n", "completion_tokens": 5, "finish_reason": "stop",
                                           "token_ids": list(range(5))}],
                             usage={"prompt_tokens": 10, "completion_tokens": 5, "calls": 1, "tokens": 15})
            trace.close(node)
        trace.close(span)
    trace.close(root)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"strategy": "beam-search", "dataset": "gsm8k", "budget": ""}))
    row = {"id": "0", "answer": "5", "gold": "5", "correct": True, "usage": {"prompt_tokens": 10 * spans * calls,
           "completion_tokens": 5 * spans * calls, "calls": spans * calls}, "stopped_by": None}
    (folder / "results.jsonl").write_text(json.dumps(row) + "\n")
    (folder / "traces.jsonl").write_text(json.dumps({"id": "0", "text": "x", "info": {}, "trace": trace.to_list()}) + "\n")
    return folder


def test_a_10000_node_trace_makes_a_page_of_bounded_size_that_draws_no_node_up_front(tmp_path):
    folder = big_run(tmp_path / "big")
    page = write_view(folder)
    html = page.read_text(encoding="utf-8")
    data = page_data(html)
    nodes = data["details"]["0"]["trace"]
    assert len(nodes) == 10_000
    assert len(data["details"]["0"]["prompts"]) == 1  # one prompt, referred to by 9,900 calls
    assert len(html) < 10_000 * 400  # about 300 bytes a node
    # The static page holds no tree node: the script draws them, a subtree when it is opened.
    parser = Tags()
    parser.feed(html)
    assert "li" not in parser.tags and "ul" not in parser.tags and "tr" not in parser.tags
    assert nodes[0]["total"] == {"tokens": 148_500, "prompt_tokens": 99_000, "completion_tokens": 49_500,
                                 "calls": 9_900}  # spans carry their subtree's usage


def test_texts_are_clipped_and_details_beyond_the_size_cap_are_left_out(tmp_path):
    out = run(tmp_path / "sc", "--limit", "3", "--strategy", "self-consistency", "--n", "2", "--backend", "scripted:42")
    data = build_view_data(out, text_chars=20)
    text = data["details"]["0"]["trace"][1]["out"][0]["text"]
    assert "characters not shown" in text and text.startswith("Let me think")
    small = build_view_data(out, "2", max_detail_bytes=1)  # room for one: the one asked for
    assert list(small["details"]) == ["2"] and small["left_out"] == 2 and small["open"] == "2"
    assert [p["detail"] for p in small["problems"]] == [False, False, True]


def test_an_old_run_folder_without_ledger_events_and_a_torn_last_line_still_views(tmp_path):
    out = run(tmp_path / "old", "--limit", "2", "--strategy", "greedy", "--backend", "scripted:3")
    lines = (out / "traces.jsonl").read_text().splitlines()
    old = [json.loads(line) for line in lines]
    for traced in old:
        del traced["ledger"]
    torn = "\n".join(json.dumps(t) for t in old) + "\n" + lines[0][:40]
    (out / "traces.jsonl").write_text(torn)
    data = build_view_data(out)
    assert all(data["details"][key]["ledger"] is None for key in data["details"])
    assert all(data["details"][key]["trace"] for key in ("0", "1"))
    assert data["details"]["0"]["trace"][1]["req"]["temperature"] == 0  # greedy's 0 is a value, not a blank
    assert (out / "traces.jsonl").read_text() == torn  # the viewer never changes a run folder


# -- the CLI ----------------------------------------------------------------------------------
def test_view_writes_run_dir_view_html_by_default_and_opens_on_the_problem_asked_for(tmp_path, capsys):
    out = run(tmp_path / "sc", "--limit", "2", "--strategy", "self-consistency", "--n", "2", "--backend", "scripted:42")
    capsys.readouterr()
    assert main(["view", str(out), "--problem", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "view.html")
    data = page_data((out / "view.html").read_text())
    assert data["open"] == "1" and set(data["details"]) == {"0", "1"}


def test_view_refuses_a_folder_that_is_no_run_an_unknown_problem_and_a_port_without_serve(tmp_path, capsys):
    out = run(tmp_path / "sc", "--limit", "1", "--strategy", "greedy", "--backend", "scripted:42")
    def error():
        return " ".join(capsys.readouterr().err.split())  # the console wraps long lines

    assert main(["view", str(tmp_path / "nothing")]) == 2
    assert "is not a run folder" in error()
    assert main(["view", str(out), "--problem", "99"]) == 2
    assert "has no problem '99'; its problems: 0" in error()
    assert main(["view", str(out), "--port", "8000"]) == 2
    assert "--port is for --serve" in error()
    assert not (tmp_path / "nothing").exists() and not (out / "view.html").exists()


def test_serve_view_answers_on_loopback_only(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<!DOCTYPE html><title>x</title>")
    server = serve_view(page, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert server.server_address[0] == "127.0.0.1"
        url = view_url(server, page)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/page.html")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == page.read_bytes() and response.headers["Content-Type"].startswith("text/html")
        with urllib.request.urlopen(url.rsplit("/", 1)[0] + "/", timeout=10) as response:
            assert response.read() == page.read_bytes()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url.rsplit("/", 1)[0] + "/../../etc/passwd", timeout=10)
        assert missing.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_cli_serves_the_page_and_prints_its_url(tmp_path):
    out = run(tmp_path / "sc", "--limit", "2", "--strategy", "self-consistency", "--n", "2", "--backend", "scripted:42")
    proc = subprocess.Popen([sys.executable, "-m", "reasoning.benchmarks.cli", "view", str(out), "--problem", "1",
                             "--serve", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/view\.html)#problem=1", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        with urllib.request.urlopen(match.group(1), timeout=20) as response:
            body = response.read()
        assert body == (out / "view.html").read_bytes() and page_data(body.decode())["open"] == "1"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        proc.stdout.close()
        proc.stderr.close()


# -- the README's example ---------------------------------------------------------------------
def readme_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Look inside a run")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    section = readme_section()
    bash = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    python = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    commands = [line.split(" #")[0].strip() for line in re.sub(r"\\\n\s*", " ", bash).splitlines()]
    commands = [c for c in commands if c.startswith("reasoning-bench ")]
    assert len(commands) >= 3 and any("--serve" in c for c in commands)
    for command in commands:
        if "--serve" not in command:  # serving blocks until Ctrl-C; tested above
            assert main(shlex.split(command)[1:]) == 0, command
    namespace: dict = {}
    exec(compile(python, "README view example", "exec"), namespace)
    page = namespace["page"]
    assert Path(page).is_file() and page_data(Path(page).read_text())["problems"]


# -- in a browser: what is drawn up front, and on a click ----------------------------------
def test_a_10000_node_trace_draws_only_the_open_root_and_one_level_in_chromium(tmp_path):
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if not chromium:
        pytest.skip("no chromium on PATH")
    page_file = write_view(big_run(tmp_path / "big"))
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(page_file.as_uri())
            rows = page.locator("#call-tree li.tn")
            assert rows.count() == 1 + 99  # the root, open, and its 99 spans; none of 9,900 calls
            page.locator("#call-tree li.tn[data-node='1'] > .row > .tog").click()
            assert rows.count() == 1 + 99 + 100  # one span opened: its 100 calls
            page.locator("#call-tree li.tn[data-node='2'] > .row > .name").click()
            assert "step 0.0" in page.locator("#node-panel").inner_text()
            assert problems == []
        finally:
            browser.close()


# -- the embedded model -----------------------------------------------------------------------
@pytest.mark.slow
def test_the_page_of_a_run_on_the_embedded_model(tmp_path):
    out = tmp_path / "local"
    cmd = [sys.executable, "-m", "reasoning.benchmarks.cli", "run", "--dataset", "gsm8k", "--limit", "1",
           "--strategy", "self-consistency", "--n", "2", "--backend", "local", "--max-tokens", "96", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    html, data = view(out)
    detail = data["details"]["0"]
    call = next(n for n in detail["trace"] if n["kind"] == "generate")
    assert len(call["out"]) == 2 and all(c["text"] for c in call["out"])
    row = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert data["problems"][0]["answer"] == row["answer"]
    assert [e[1] for e in detail["ledger"]] == ["reserve", "commit"]
    assert detail["ledger"][1][2][1] == row["usage"]["completion_tokens"]
