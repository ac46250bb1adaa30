"""The HTML pages the project writes, as a person sees them: headless Chromium (Debian's
``chromium`` package, driven through Playwright's CDP client; no browser is downloaded) loads each
page from disk; a test fails on any console error, uncaught JavaScript exception, failed load or
request that leaves the machine, and reads the numbers off the rendered DOM. A screenshot of every
page is kept in ``$CI_ARTIFACTS/browser/`` (default ``ci-artifacts/browser/`` in the checkout,
git-ignored; .ci/run sets it).

Where chromium or playwright is missing these tests skip with the reason, except under CI=true,
where they fail: CI installs both (.ci/run, the dev extra)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# As root, in a closed network: no sandbox (root), no GPU, none of Chromium's own background
# connections (each would be refused, and logged).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
TALLEST_SHOT = 8000  # px: a longer page is shot down to this height (a 500-problem table)


def artifacts() -> Path:
    folder = Path(os.environ.get("CI_ARTIFACTS") or ROOT / "ci-artifacts") / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None and not CHROMIUM:
        missing = "no chromium on PATH (Debian: apt-get install chromium; or set CHROMIUM=/path/to/chrome)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run under CI: {missing}")
        pytest.skip(f"browser tests skipped: {missing}")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@dataclass
class Seen:
    """A page as it was shown: its text, its tables' cells, and what went wrong while loading."""

    text: str
    tables: list[list[list[str]]]
    problems: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    screenshot: Path | None = None


def show(browser, page_file: Path, name: str, *, width: int = 1280, act=None) -> Seen:
    """Load ``page_file`` as a person would (from disk, in a 1280-px window), do ``act(page)`` if
    given (clicks), screenshot it to the artifacts folder as ``name``.png, and collect every console
    error, uncaught exception, failed request and request to anything but a local file."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console.{msg.type}: {msg.text} at {msg.location}")
            if msg.type in ("error", "assert") else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught exception: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url} ({request.failure})"))
    page.on("crash", lambda _page: problems.append("the page crashed"))

    def local_only(route):
        if route.request.url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            problems.append(f"request off the machine: {route.request.url}")
            route.abort()

    page.route("**/*", local_only)
    try:
        page.goto(page_file.resolve().as_uri(), wait_until="load")
        settle(page)
        if act is not None:
            act(page)
            settle(page)
        text = page.evaluate("() => document.body.innerText")
        tables = page.evaluate("""() => Array.from(document.querySelectorAll('table')).map(table =>
            Array.from(table.rows).map(row => Array.from(row.cells).map(cell => cell.innerText.trim())))""")
        broken = page.evaluate("""() => Array.from(document.images)
            .filter(img => !img.complete || img.naturalWidth === 0).map(img => img.getAttribute('src'))""")
        shot = artifacts() / f"{name}.png"
        height = page.evaluate("() => document.documentElement.scrollHeight")
        if height <= TALLEST_SHOT:
            page.screenshot(path=str(shot), full_page=True)
        else:
            page.screenshot(path=str(shot), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": TALLEST_SHOT})
    finally:
        page.close()
    return Seen(text, tables, problems, broken, shot)


def settle(page) -> None:
    """Two frames and a tick: what scripts draw after a load or a click is drawn, its errors in."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 50))))")


def assert_clean(seen: Seen) -> None:
    assert not seen.problems, "the page logged errors in the browser:\n" + "\n".join(seen.problems)
    assert not seen.broken_images, f"images that did not load: {seen.broken_images}"
    assert seen.screenshot and seen.screenshot.read_bytes()[:4] == b"\x89PNG"


# ---- the sweep report ---------------------------------------------------------------------------


def reasoning_bench(*args: str, cwd: Path) -> None:
    """The installed ``reasoning-bench`` command, as a user runs it."""
    script = Path(sys.executable).with_name("reasoning-bench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "reasoning.benchmarks.cli"]
    done = subprocess.run(command + list(args), cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def write_dataset(path: Path, words: list[int]) -> Path:
    """Problems whose questions are ``words[i]`` words long (the scripted backend counts a
    prompt's tokens as its words, plus the template's)."""
    with path.open("w", encoding="utf-8") as handle:
        for i, count in enumerate(words):
            question = " ".join(["word"] * (count - 3)) + f" what is {i}+{i}?"
            assert len(question.split()) == count
            handle.write(json.dumps({"id": f"q{i}", "question": question, "answer": 2 * i}) + "\n")
    return path


def sweep(tmp: Path, name: str, words: list[int], *strategies: str, n: str) -> Path:
    data = write_dataset(tmp / f"{name}.jsonl", words)
    out = tmp / name
    args = ["sweep", "--dataset", str(data), "--n", n, "--backend", "scripted:0,2", "--out", str(out)]
    for strategy in strategies:
        args += ["--strategy", strategy]
    reasoning_bench(*args, cwd=tmp)
    return out


@pytest.fixture(scope="module")
def template_tokens(tmp_path_factory) -> int:
    """Tokens a one-sample greedy run costs beyond its question's words (template + completion),
    measured with the CLI itself on one problem, so that the datasets below give exact means."""
    tmp = tmp_path_factory.mktemp("calibrate")
    out = sweep(tmp, "one", [50], "greedy", n="1")
    (row,) = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    extra = row["usage"]["tokens"] - 50
    assert extra == int(extra) > 0
    return int(extra)


def tokens_shown(value: float) -> str:
    """Mean tokens as the table should show them: rounded half-even to a whole number, grouped."""
    return f"{int(Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)):,}"


def cells_table(seen: Seen) -> list[dict[str, str]]:
    """The report's 'Cells' table as one dict per row, keyed by the rendered header."""
    (table,) = [t for t in seen.tables if t and t[0][:3] == ["dataset", "strategy", "point"]]
    header, *rows = table
    return [dict(zip(header, row)) for row in rows]


def check_report(seen: Seen, out: Path) -> list[dict[str, str]]:
    """Every row of sweep.jsonl is on the page, each number as it should read."""
    rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines() if line.strip()]
    shown = cells_table(seen)
    assert len(shown) == len(rows)
    for row, cells in zip(rows, shown):
        assert (cells["strategy"], cells["point"]) == (row["strategy"], row["point"])
        assert cells["accuracy"] == f"{row['accuracy']:.3f}"
        assert cells["problems"] == str(row["n_problems"])
        assert cells["tokens"] == tokens_shown(row["usage"]["tokens"]), (row["usage"]["tokens"], cells["tokens"])
        assert cells["mean n"] == ("-" if row["mean_n"] is None else str(int(row["mean_n"])))
        assert re.fullmatch(r"-?\d{1,3}(,\d{3})*(\.\d*[1-9])?|-|-?\d(\.\d+)?e[+-]\d+", cells["USD"]), cells["USD"]
    assert "Sweep report" in seen.text and "Coverage" in seen.text
    return shown


def test_the_sweep_report_of_a_two_problem_sweep_in_a_browser(browser, template_tokens, tmp_path):
    """Two problems whose mean greedy cost is exactly 1,000 tokens (the old '1,'), self-consistency
    at n = 1, 2, 4 (1,000, 1,020, 1,060: every one ends in a zero)."""
    half = 1000 - template_tokens
    out = sweep(tmp_path, "two", [half - 1, half + 1], "greedy", "self-consistency", n="1,2,4")
    seen = show(browser, out / "report.html", "sweep-report-2-problems")
    assert_clean(seen)
    shown = check_report(seen, out)
    assert [c["tokens"] for c in shown] == ["1,000", "1,000", "1,020", "1,060"]
    assert {c["problems"] for c in shown} == {"2"}
    assert "1,000" in seen.text.split()  # as a person reads the page's text, not only the cell


def five_hundred_words(total: int) -> list[int]:
    """500 question lengths (words) that add up to ``total``, not all alike."""
    base, extra = divmod(total, 500)
    words = [base + (1 if i < extra else 0) for i in range(500)]
    for j in range(250):  # +k, -k in pairs: the sum stays
        words[2 * j] += j % 9
        words[2 * j + 1] -= j % 9
    assert sum(words) == total
    return words


def test_the_sweep_report_of_a_500_problem_sweep_in_a_browser(browser, template_tokens, tmp_path):
    """The published bug's own number: a mean of 3,549.76 tokens per problem must read 3,550."""
    words = five_hundred_words(round((Decimal("3549.76") - template_tokens) * 500))
    out = sweep(tmp_path, "five-hundred", words, "greedy", "self-consistency", n="1,2,4")
    rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    assert rows[0]["strategy"] == "greedy" and rows[0]["usage"]["tokens"] == pytest.approx(3549.76)
    seen = show(browser, out / "report.html", "sweep-report-500-problems")
    assert_clean(seen)
    shown = check_report(seen, out)
    assert [c["tokens"] for c in shown] == ["3,550", "3,550", "3,570", "3,610"]
    assert {c["problems"] for c in shown} == {"500"}


def test_a_console_error_or_an_exception_on_a_page_fails_the_check(browser, tmp_path):
    """The check itself can fail: a page that logs an error, one that throws, one that loads an
    image that is not there and one that reaches off the machine are each caught."""
    pages = {  # page body: what must be reported
        "console-error": ("<script>console.error('drawn wrong')</script>", "console.error: drawn wrong"),
        "exception": ("<script>null.tree()</script>", "uncaught exception: Cannot read properties of null"),
        "missing-image": ("<img src='nowhere.png'>", "request failed: file://"),
        "network": ("<img src='https://example.invalid/x.png'>", "request off the machine: https://example.invalid"),
    }
    for name, (body, reported) in pages.items():
        page_file = tmp_path / f"{name}.html"
        page_file.write_text(f"<!doctype html><html><body><p>{name}</p>{body}</body></html>")
        seen = show(browser, page_file, f"self-check-{name}")
        assert any(problem.startswith(reported) for problem in seen.problems), (name, seen.problems)
        with pytest.raises(AssertionError):
            assert_clean(seen)
    clean = tmp_path / "clean.html"
    clean.write_text("<!doctype html><html><body><table><tr><td>3,550</td></tr></table></body></html>")
    seen = show(browser, clean, "self-check-clean")
    assert_clean(seen)
    assert seen.tables == [[["3,550"]]] and seen.text.strip() == "3,550"


# ---- the run viewer (reasoning-bench view) -----------------------------------------------------


RUN_STRATEGY = ("--strategy", "self-consistency", "--n", "4")


def run_and_view(tmp: Path, name: str, words: list[int]) -> tuple[Path, list[dict]]:
    """``reasoning-bench run`` (self-consistency, n = 4, scripted backend) over problems of these
    lengths, then ``reasoning-bench view`` of it; the page and the run's results rows."""
    data = write_dataset(tmp / f"{name}.jsonl", words)
    out = tmp / name
    reasoning_bench("run", "--dataset", str(data), *RUN_STRATEGY, "--backend", "scripted:0,2,0,7",
                    "--out", str(out), cwd=tmp)
    page = out / "page.html"
    reasoning_bench("view", str(out), "--out", str(page), cwd=tmp)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    return page, rows


@pytest.fixture(scope="module")
def run_template_tokens(tmp_path_factory) -> int:
    """Tokens a problem costs in these runs beyond its question's words, measured on one problem."""
    tmp = tmp_path_factory.mktemp("calibrate-run")
    data = write_dataset(tmp / "one.jsonl", [50])
    reasoning_bench("run", "--dataset", str(data), *RUN_STRATEGY, "--backend", "scripted:0", "--out", str(tmp / "one"), cwd=tmp)
    (row,) = [json.loads(line) for line in (tmp / "one" / "results.jsonl").read_text().splitlines()]
    return int(row["usage"]["tokens"]) - 50


def problem_list(seen: Seen) -> list[dict[str, str]]:
    """The viewer's problem list as one dict per row, keyed by the rendered header."""
    (table,) = [t for t in seen.tables if t and t[0][:1] == ["id"] and "tokens" in t[0]]
    header, *rows = table
    return [dict(zip(header, row)) for row in rows]


def check_problem_list(seen: Seen, rows: list[dict]) -> list[dict[str, str]]:
    shown = problem_list(seen)
    assert [r["id"] for r in shown] == [row["id"] for row in rows]
    for row, cells in zip(rows, shown):
        assert cells["tokens"] == f"{int(row['usage']['tokens']):,}", (row["id"], cells["tokens"])
        assert cells["calls"] == f"{int(row['usage']['calls']):,}"
        assert cells["answer"] == (row["answer"] if row["answer"] is not None else "-")
        assert cells[""] == ("\u2713" if row["correct"] else "\u2717")
    return shown


def open_problem(problem_id: str):
    """A click on the problem's row in the list, as a person picks it."""
    def act(page):
        page.locator(f"#problem-table tr[data-problem='{problem_id}']").click()
    return act


def test_the_viewer_of_a_two_problem_run_in_a_browser(browser, run_template_tokens, tmp_path):
    """Problem q0 costs exactly 3,550 tokens, q1 1,000, the run 4,550: each must read so."""
    page, rows = run_and_view(tmp_path, "two", [3550 - run_template_tokens, 1000 - run_template_tokens])
    assert [r["usage"]["tokens"] for r in rows] == [3550, 1000]
    seen = show(browser, page, "viewer-2-problems")  # opens on the first problem
    assert_clean(seen)
    shown = check_problem_list(seen, rows)
    assert [c["tokens"] for c in shown] == ["3,550", "1,000"]
    assert "4,550 tok" in seen.text  # the run's total, in the header
    assert "Problem q0" in seen.text and "3,550 tok" in seen.text and "Votes" in seen.text
    assert "Call tree" in seen.text
    clicked = show(browser, page, "viewer-2-problems-q1", act=open_problem("q1"))
    assert_clean(clicked)
    assert "Problem q1" in clicked.text and "1,000 tok · 1 call" in clicked.text


def test_the_viewer_of_a_500_problem_run_in_a_browser(browser, run_template_tokens, tmp_path):
    words = [w - run_template_tokens for w in five_hundred_words(500 * 3549 + 380)]  # sum: 1,774,880
    words[0] = 3550 - run_template_tokens
    page, rows = run_and_view(tmp_path, "five-hundred", words)
    total = sum(int(r["usage"]["tokens"]) for r in rows)
    seen = show(browser, page, "viewer-500-problems")
    assert_clean(seen)
    shown = check_problem_list(seen, rows)
    assert len(shown) == 500 and shown[0]["tokens"] == "3,550"
    assert f"{total:,} tok" in seen.text
    clicked = show(browser, page, "viewer-500-problems-q499", act=open_problem("q499"))
    assert_clean(clicked)
    assert "Problem q499" in clicked.text and f"{int(rows[-1]['usage']['tokens']):,} tok" in clicked.text
