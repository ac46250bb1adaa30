"""One import name: the project installs only `reasoning`, and other packages' `verifiers`,
`strategies`, `benchmarks` or `prompts` cannot shadow any part of it."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import reasoning as rz

ROOT = Path(__file__).resolve().parent.parent
OLD_NAMES = {"strategies", "verifiers", "benchmarks", "prompts"}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_no_source_file_imports_an_old_top_level_name():
    offenders = []
    for folder in ("reasoning", "strategies", "verifiers", "benchmarks", "prompts", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            bad = {m for m in _imported_modules(path) if m.split(".")[0] in OLD_NAMES}
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in sorted(bad)]
    assert offenders == []


def test_common_strategies_are_reexported_from_the_top():
    from reasoning.strategies import BestOfN, SelfConsistency
    from reasoning.verifiers import LLMJudge

    assert rz.SelfConsistency is SelfConsistency and rz.BestOfN is BestOfN and rz.LLMJudge is LLMJudge
    with pytest.raises(AttributeError):
        rz.NoSuchThing  # noqa: B018


def test_decoy_top_level_packages_do_not_affect_the_project(tmp_path):
    decoys = tmp_path / "decoys"
    for name in OLD_NAMES:
        (decoys / name).mkdir(parents=True)
        (decoys / name / "__init__.py").write_text(
            f"raise RuntimeError('the decoy top-level {name!r} was imported')\n")
    script = (
        "import reasoning as rz\n"
        "from reasoning.backends import Scripted\n"
        "from reasoning.verifiers import is_equivalent, extract_answer\n"
        "from reasoning.benchmarks.datasets import load_items\n"
        "from reasoning.strategies import create\n"
        "from reasoning.prompts import load_prompt\n"
        "r = rz.solve('q', rz.SelfConsistency(n=3), Scripted(['7', '7', '3']))\n"
        "assert r.answer == '7', r.answer\n"
        "assert is_equivalent('1/2', '0.5') and extract_answer('so \\\\boxed{4}') == '4'\n"
        "assert len(load_items('gsm8k', 2)) == 2 and create('best-of-n', n=2).n == 2\n"
        "load_prompt('solve_math')\n"
        "import sys\n"
        "assert not any(m.split('.')[0] in {'strategies', 'verifiers', 'benchmarks', 'prompts'} for m in sys.modules)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(decoys)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_a_plain_install_has_only_the_reasoning_package(tmp_path):
    # Built from a copy: an in-tree build would write build/ into the checkout (and race others).
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv*", ".git", ".gpu*", "build", "runs",
                                                                 "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    top = {p.name for p in target.iterdir() if not p.name.endswith((".dist-info", ".egg-info")) and p.name != "bin"}
    assert top == {"reasoning"}, top
    assert (target / "reasoning" / "strategies" / "self_consistency.py").is_file()
    assert (target / "reasoning" / "prompts" / "solve_math.md").is_file()
    assert (target / "reasoning" / "benchmarks" / "data" / "gsm8k_test.jsonl").is_file()
    # Raw benchmark results are data about the project, not part of what is installed.
    assert not (target / "reasoning" / "benchmarks" / "results").exists()
    assert not list(target.rglob("RESULTS.md")) and not list(target.rglob("*.png"))
    script = (
        f"import sys; sys.path.insert(0, {str(target)!r})\n"
        "import reasoning.strategies, reasoning.verifiers\n"
        f"assert reasoning.strategies.__file__.startswith({str(target)!r}), reasoning.strategies.__file__\n"
        "try:\n    import strategies\nexcept ImportError:\n    print('no top-level strategies')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "no top-level strategies", done.stderr[-2000:]
