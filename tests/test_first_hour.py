"""Issue 23, the first hour of a new user: what `reasoning-bench run` says while it works.

The model being prepared once, transformers' own bars kept out, progress in tokens with an
honest ETA, the two kinds of seconds named apart, resumes counted, the temperature that is
sent recorded, --help naming every backend, and budgets too small for a call refused up front.
Everything runs on the Scripted backend or a tiny random model except the one slow test, which
prepares the real embedded model from its parts in a fresh cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from reasoning.benchmarks.cli import _EtaColumn, main
from reasoning.benchmarks.run import RunConfig, RunProgress, run_benchmark
from reasoning.strategies import create

from reasoning.backends.scripted import Scripted

ROOT = Path(__file__).resolve().parent.parent


def flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


# -- 1. the first run says it is preparing the model; transformers' bars stay out -------------


def test_the_embedded_model_says_it_must_be_prepared_until_it_is(tmp_path, monkeypatch):
    from reasoning.backends.local import Local
    from reasoning.backends.local_model import COMPLETE_MARKER, model_dir

    monkeypatch.setenv("REASONING_CACHE_DIR", str(tmp_path))
    note = Local().preparation_note()
    assert note is not None and note.startswith("preparing the embedded model qwen2.5-coder-0.5b-instruct (one time")
    model_dir().mkdir(parents=True)
    (model_dir() / COMPLETE_MARKER).write_text("done")
    assert Local().preparation_note() is None
    assert Scripted().preparation_note() is None  # nothing to prepare


def test_the_run_prints_the_preparation_note_before_solving_and_only_when_it_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Scripted, "preparation_note", lambda self: "preparing the scripted model (one time)")
    common = ["run", "--dataset", "gsm8k", "--strategy", "greedy", "--backend", "scripted:18",
              "--out", str(tmp_path / "o")]
    assert main([*common, "--limit", "2"]) == 0
    err = capsys.readouterr().err
    assert "preparing the scripted model (one time)" in err
    assert err.index("preparing the scripted model") < err.index("solving")
    assert main([*common, "--limit", "2"]) == 0  # everything done: nothing is loaded
    assert "preparing" not in capsys.readouterr().err


def tiny_causal_lm(folder: Path) -> None:
    """A random 1-layer Qwen2 and a word-level tokenizer, built offline."""
    transformers = pytest.importorskip("transformers")
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[PAD]", "[UNK]", "a", "b", "c", "d", "e", "f"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(folder)
    config = transformers.Qwen2Config(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                                      pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    transformers.Qwen2ForCausalLM(config).save_pretrained(folder)


def test_loading_a_local_model_shows_no_transformers_progress_bars(tmp_path, capfd):
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from reasoning.backends.local import Local

    tiny_causal_lm(tmp_path)
    hf_logging.enable_progress_bar()
    capfd.readouterr()
    AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True)
    assert "Loading weights" in capfd.readouterr().err  # what a plain load shows
    local = Local(tmp_path)
    asyncio.run(local.load())
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # switched off for the load only
    asyncio.run(local.aclose())


def test_a_local_model_counts_the_tokens_it_is_decoding(tmp_path):
    from reasoning.backends.local import Local
    from reasoning.types import GenerationRequest

    tiny_causal_lm(tmp_path)
    local = Local(tmp_path)
    seen: list[int] = []
    count = local._count_decoded

    def spy(tokens: int) -> None:
        count(tokens)
        seen.append(local.tokens_in_flight())

    local._count_decoded = spy
    request = GenerationRequest(prompt_token_ids=(2, 3, 4), n=3, max_tokens=12, temperature=1.0, seed=1)
    response = asyncio.run(local.generate(request))
    assert seen and seen == sorted(seen) and 0 < seen[-1] <= response.completion_tokens
    assert local.tokens_in_flight() == 0  # returned calls count through their usage instead
    asyncio.run(local.aclose())


# -- 2. progress in tokens, and an ETA that is honest -------------------------------------------


class Recorded(RunProgress):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple] = []

    def note(self, text: str) -> None:
        self.events.append(("note", text))

    def begin(self) -> None:
        self.events.append(("begin", self.total, self.done, self.todo))

    def changed(self) -> None:
        self.events.append(("changed", self.finished, self.calls, self.completion_tokens, self.eta()))


def config(tmp_path: Path, **fields) -> RunConfig:
    return RunConfig(**{"dataset": "gsm8k", "limit": 4, "strategy": "self-consistency", "backend": "scripted",
                        "out": str(tmp_path / "o"), "concurrency": 2, **fields})


def test_progress_counts_calls_and_tokens_as_they_return_and_gives_no_eta_before_a_problem_ends(tmp_path):
    run = Recorded()
    strategy = create("self-consistency", n=2)
    backend = Scripted(["18"], completion_tokens=30)
    summary = asyncio.run(run_benchmark(config(tmp_path), strategy, backend, progress=run))
    assert run.events[0] == ("begin", 4, 0, 4)
    changes = [e for e in run.events if e[0] == "changed"]
    assert [e[2] for e in changes] == sorted(e[2] for e in changes)  # calls only grow
    assert [e[3] for e in changes] == sorted(e[3] for e in changes)
    assert all(eta is None for _, finished, _, _, eta in changes if finished == 0)
    assert any(finished == 0 and calls > 0 for _, finished, calls, _, _ in changes)  # tokens move first
    assert changes[-1][1:] == (4, 4, summary["usage"]["completion_tokens"], 0.0)


def test_the_eta_comes_from_the_token_rate_and_says_nothing_when_it_cannot_know():
    run = RunProgress()
    run.todo, run.started = 4, 100.0
    run.completion_tokens = 150
    assert run.eta(now=110.0) is None  # no problem finished: no average to go by
    run.finished, run.finished_tokens = 1, 100
    # 4 problems at 100 tokens each = 400; 150 generated in 10 s: 250 more at 15/s
    assert run.eta(now=110.0) == pytest.approx(250 / 15)
    run.completion_tokens = 450  # the running problems outgrew the average: unknown, not "0:00:01"
    assert run.eta(now=110.0) is None
    run.finished = 4
    assert run.eta(now=110.0) == 0.0
    run = RunProgress()
    run.todo, run.started, run.finished, run.finished_tokens = 4, 100.0, 1, 200  # 800 expected
    run.completion_tokens, run.in_flight = 100, lambda: 50  # tokens a local model is decoding count too
    assert run.eta(now=110.0) == pytest.approx(650 / 15)


def test_the_eta_column_never_shows_a_number_it_has_no_basis_for():
    run = RunProgress()
    run.todo, run.started, run.completion_tokens = 5, 0.0, 10
    assert str(_EtaColumn(run).render(None)) == "ETA after the 1st problem"
    run.finished, run.finished_tokens, run.completion_tokens = 1, 5, 50
    assert str(_EtaColumn(run).render(None)) == "ETA ?"


# -- 3. wall seconds and summed problem seconds, named apart ----------------------------------


def test_the_summary_names_wall_time_and_summed_problem_time_apart(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", "--dataset", "gsm8k", "--limit", "4", "--strategy", "greedy", "--concurrency", "4",
                 "--backend", "scripted:18?latency=0.2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "seconds" not in summary["usage"] and "seconds" not in summary["run_charged"]
    assert summary["wall_seconds"] > 0 and summary["problem_seconds_sum"] > 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert summary["problem_seconds_sum"] == pytest.approx(sum(r["usage"]["seconds"] for r in rows))
    shown = capsys.readouterr().out
    assert "wall s" in shown and "seconds" not in shown


# -- 4. a resume says how far the earlier attempts got --------------------------------------


def test_a_resumed_run_says_how_many_problems_are_done(tmp_path, capsys):
    common = ["run", "--dataset", "gsm8k", "--strategy", "greedy", "--backend", "scripted:18",
              "--out", str(tmp_path / "o")]
    assert main([*common, "--limit", "2"]) == 0
    assert "resuming" not in capsys.readouterr().err
    assert main([*common, "--limit", "4"]) == 0
    assert "resuming: 2 of 4 done" in flat(capsys.readouterr().err)
    assert main([*common, "--limit", "4"]) == 0
    assert "resuming: 4 of 4 done; nothing left to run" in flat(capsys.readouterr().err)


# -- 5. config.json records the temperature that is sent -------------------------------------


def sent_temperatures(out: Path) -> set[float]:
    return {node["request"]["temperature"] for line in (out / "traces.jsonl").read_text().splitlines()
            for node in json.loads(line)["trace"] if node["kind"] == "generate"}


@pytest.mark.parametrize("strategy, options, sent", [
    ("greedy", [], 0.0),
    ("self-consistency", [], 0.7),
    ("self-consistency", ["--temperature", "0.4"], 0.4),
    ("self-consistency", ["--option", "temperature=0.3"], 0.3),
])
def test_config_records_the_temperature_the_requests_go_out_at(tmp_path, strategy, options, sent):
    out = tmp_path / "o"
    assert main(["run", "--dataset", "gsm8k", "--limit", "2", "--strategy", strategy, *options,
                 "--backend", "scripted:18", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["temperature"] == sent
    assert sent_temperatures(out) == {sent}


def test_greedy_says_its_temperature_is_fixed_and_old_greedy_runs_still_resume(tmp_path, capsys):
    out = tmp_path / "o"
    common = ["run", "--dataset", "gsm8k", "--strategy", "greedy", "--backend", "scripted:18", "--out", str(out)]
    assert main([*common, "--limit", "1", "--temperature", "0.5"]) == 0
    assert "greedy samples at temperature 0; --temperature 0.5 does not apply" in flat(capsys.readouterr().err)
    old = json.loads((out / "config.json").read_text()) | {"temperature": 0.7}  # what earlier versions wrote
    (out / "config.json").write_text(json.dumps(old))
    assert main([*common, "--limit", "2"]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


# -- 6. --help names every backend and dataset ----------------------------------------------


def test_run_help_names_every_backend_the_project_declares(capsys):
    from reasoning.benchmarks.datasets import BUILTIN

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["reasoning.backends"]
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    backend_help = flat(capsys.readouterr().out).rsplit("--backend BACKEND", 1)[1].split("--api-base", 1)[0]
    assert [kind for kind in declared if kind not in backend_help] == []
    assert set(BUILTIN) >= {"game24", "game24-all"}


# -- 7. a budget too small for any call is refused before anything runs -----------------------


def prompt_tokens(problem_index: int = 0) -> int:
    from reasoning.benchmarks.datasets import load_items
    from reasoning.benchmarks.run import solve_options

    from reasoning import Problem
    from reasoning.solve import problem_messages
    from reasoning.types import GenerationRequest

    item = load_items("gsm8k", 3)[problem_index]
    messages = problem_messages(Problem(item.problem, item.id), solve_options(item.kind).get("prompt", "solve_math"))
    return Scripted().count_prompt_tokens(GenerationRequest(messages=messages))


def test_a_budget_with_no_room_for_an_answer_is_refused_up_front_and_a_bigger_one_then_runs(tmp_path, capsys):
    out = tmp_path / "o"
    shortest = min(prompt_tokens(i) for i in range(3))
    common = ["run", "--dataset", "gsm8k", "--limit", "3", "--strategy", "greedy", "--backend", "scripted:18",
              "--out", str(out)]
    assert main([*common, "--budget", f"tokens={shortest + 10}"]) == 2
    err = flat(capsys.readouterr().err)
    assert f"shortest prompt alone is {shortest} tokens" in err and f"at least {shortest + 64}" in err
    assert not (out / "results.jsonl").exists() or not (out / "results.jsonl").read_text()
    assert main([*common, "--budget", "completion_tokens=10"]) == 2
    assert "fewer than the 64 below which a call is refused" in flat(capsys.readouterr().err)
    assert main([*common, "--budget", "tokens=5000"]) == 0  # the same --out, a budget that fits: it runs
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


# -- the real thing: a first run on a fresh cache ------------------------------------------


@pytest.mark.slow
def test_a_first_run_prepares_the_model_once_and_says_so(tmp_path):
    env = dict(os.environ, REASONING_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="200")
    cmd = [sys.executable, "-m", "reasoning.benchmarks.cli", "run", "--dataset", "gsm8k", "--limit", "1",
           "--strategy", "greedy", "--max-tokens", "8", "--backend", "local", "--out", str(tmp_path / "o")]
    first = subprocess.run(cmd, check=False, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr
    assert "preparing the embedded model qwen2.5-coder-0.5b-instruct (one time" in flat(first.stderr)
    assert first.stderr.index("preparing the embedded model") < first.stderr.index("solving")
    assert "Loading weights" not in first.stderr and "it/s]" not in first.stderr  # no tqdm bars of transformers
    second = subprocess.run([*cmd[:-1], str(tmp_path / "p")], check=False, env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert second.returncode == 0, second.stderr
    assert "preparing" not in second.stderr and "Loading weights" not in second.stderr
