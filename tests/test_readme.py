"""The README's code blocks run as written: Python blocks compile and their imports resolve (the
runnable ones run: the strategy example here, the main example on the real model in the slow
suite), every `reasoning-bench` command line parses with the real CLI parser, JSON parses."""

import ast
import importlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from reasoning.benchmarks.cli import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
BLOCKS = [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w+)\n(.*?)```", README, re.DOTALL)]


def blocks(language):
    return [body for lang, body in BLOCKS if lang == language]


def test_the_readme_has_the_blocks_this_file_checks():
    assert len(blocks("python")) >= 4 and len(blocks("bash")) >= 5 and blocks("json")


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_blocks_compile_and_import_what_exists(index):
    source = blocks("python")[index]
    tree = compile(source, f"README python block {index}", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), \
                    f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "rz":
            import reasoning

            assert hasattr(reasoning, node.attr), f"rz.{node.attr}"


def command_lines(body):
    joined = re.sub(r"\\\n\s*", " ", body)
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if line.startswith("reasoning-bench "):
            yield line


def test_every_reasoning_bench_command_parses():
    parser = build_parser()
    lines = [line for body in blocks("bash") for line in command_lines(body)]
    assert len(lines) >= 10
    for line in lines:
        argv = [a for a in shlex.split(line)[1:] if a != "..."]
        try:
            parser.parse_args(argv)
        except SystemExit as exit:
            raise AssertionError(f"README command does not parse: {line}") from exit


def test_python_modules_named_in_commands_exist():
    for body in blocks("bash"):
        for module in re.findall(r"python3? -m ([\w.]+)", body):
            assert importlib.util.find_spec(module), module


def test_json_blocks_parse():
    for body in blocks("json"):
        json.loads(body)


def test_the_strategy_example_runs():
    example = next(b for b in blocks("python") if "class MyVote" in b)
    namespace: dict = {}
    import reasoning as rz
    from reasoning.backends import Scripted
    from reasoning.registry import STRATEGIES
    from reasoning.strategies import create

    exec(compile(example, "README strategy example", "exec"), namespace)
    try:
        result = rz.solve("q", create("my-vote", n=3), Scripted(["5", "5", "9"]))
        assert result.answer == "5" and namespace["MyVote"].options()["n"].help == "samples to vote on"
    finally:  # the example registers into this process: later tests must see the shipped strategies only
        STRATEGIES.unregister("my-vote")


@pytest.mark.slow
def test_the_main_example_runs_on_the_embedded_model(tmp_path):
    example = next(b for b in blocks("python") if "rz.backends.Local()" in b)
    script = example + "\nprint('answers', result.answer, [r.answer for r in results], result.usage.calls)\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "answers" in done.stdout


def test_every_picture_the_readme_shows_is_a_small_png_in_the_repository():
    pictures = re.findall(r"!\[([^\]]+)\]\(([^)]+)\)", README)
    assert pictures
    root = Path(__file__).resolve().parent.parent
    for alt, path in pictures:
        picture = root / path
        assert picture.is_file(), f"README shows {path}, which is not in the repository"
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size < 400_000, path
        assert len(alt) > 20, f"{path}: say what the picture shows"
