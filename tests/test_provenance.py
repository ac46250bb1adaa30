"""The command a benchmark's JSON records is the one that reruns it (RESULTS.md cites it)."""

import json
import shlex
import sys

from reasoning.benchmarks.provenance import command


def test_the_command_is_python_dash_m_the_module_with_its_arguments_quoted():
    line = command("latency", ["--dataset", "gsm8k", "--option", "a=b c"])
    assert line == "python -m reasoning.benchmarks.latency --dataset gsm8k --option 'a=b c'"
    assert shlex.split(line)[3:] == ["--dataset", "gsm8k", "--option", "a=b c"]  # pasted back, the same arguments


def test_no_argv_means_this_process_arguments_without_the_script_path(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/site-packages/reasoning/benchmarks/two_gpu.py", "--n", "4"])
    assert command("two_gpu") == "python -m reasoning.benchmarks.two_gpu --n 4"
    assert command("two_gpu", []) == "python -m reasoning.benchmarks.two_gpu"  # an empty argv is not "none given"


def test_benchmarks_called_with_argv_record_those_arguments_not_the_callers(tmp_path, monkeypatch):
    # Before: deepconf_proof and tree_search recorded " ".join(sys.argv): the script's path (or, called
    # from Python, the caller's command line) instead of a command that reruns them.
    from reasoning.benchmarks import deepconf_proof, tree_search

    monkeypatch.setattr(sys, "argv", ["pytest", "-q"])
    argv = ["--backend", "scripted:4", "--dataset", "gsm8k:2", "--strategy", "greedy", "--no-sc-matched",
            "--out", str(tmp_path / "ts.json")]
    assert tree_search.main(argv) == 0
    assert json.loads((tmp_path / "ts.json").read_text())["command"] == command("tree_search", argv)
    argv = ["--backend", "scripted:18,3", "--dataset", "gsm8k:2", "--n", "4", "--ks", "4", "--warmup", "2",
            "--window", "4", "--keep-percent", "10", "--pool-only", "--out", str(tmp_path / "dc.json")]
    assert deepconf_proof.main(argv) == 0
    assert json.loads((tmp_path / "dc.json").read_text())["command"] == command("deepconf_proof", argv)
