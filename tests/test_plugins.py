"""A strategy from a separate package, declared by an entry point only, works through the CLI
(`strategies`, `run`), sweeps and the proxy's model names, without touching this repository."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = '''
"""my_vote: a third-party strategy (majority over n samples, plus a marker to find it by)."""
from pydantic import Field

from reasoning import Outcome, Strategy
from reasoning.strategies.voting import majority


class MyVote(Strategy):
    n: int = Field(3, ge=1, description="samples to vote on")

    async def run(self, ctx):
        samples = await ctx.generate(n=self.n)
        vote = majority(samples)
        return Outcome(vote.answer, vote.sample.text if vote.sample else None, samples, {"plugin": "my-vote"})
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "my-vote-plugin"
version = "0.1.0"

[project.entry-points."reasoning.strategies"]
my-vote = "my_vote:MyVote"

[tool.setuptools]
py-modules = ["my_vote"]
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    source = tmp_path_factory.mktemp("plugin-src")
    (source / "my_vote.py").write_text(PLUGIN)
    (source / "pyproject.toml").write_text(PYPROJECT)
    site = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(source)], check=True, capture_output=True, timeout=600)
    return site


def cli(site, *args, cwd):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "reasoning.benchmarks.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_plugin_is_listed_and_documented(plugin_site, tmp_path):
    listed = cli(plugin_site, "strategies", cwd=tmp_path)
    assert listed.returncode == 0 and "my-vote" in listed.stdout, listed.stderr[-2000:]
    one = cli(plugin_site, "strategies", "my-vote", cwd=tmp_path)
    assert one.returncode == 0 and "samples to vote on" in one.stdout
    # Without the plugin on the path, the name is unknown.
    missing = subprocess.run([sys.executable, "-m", "reasoning.benchmarks.cli", "strategies", "my-vote"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert missing.returncode == 2 and "unknown strategy 'my-vote'" in missing.stdout + missing.stderr


def test_run_and_sweep_use_the_plugin(plugin_site, tmp_path):
    run = cli(plugin_site, "run", "--dataset", "gsm8k", "--limit", "2", "--strategy", "my-vote", "--n", "3",
              "--backend", "scripted:7,7,3", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    traces = [json.loads(line) for line in (tmp_path / "run" / "traces.jsonl").read_text().splitlines()]
    assert [t["info"]["plugin"] for t in traces] == ["my-vote", "my-vote"]
    assert all(t["trace"][0]["info"]["n"] == 3 for t in traces)
    sweep = cli(plugin_site, "sweep", "--dataset", "gsm8k", "--limit", "2", "--strategy", "my-vote", "--n", "1,2",
                "--backend", "scripted:7,7,3", "--no-coverage", "--out", str(tmp_path / "sweep"), cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "sweep" / "sweep.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"my-vote"} and [r["point"] for r in rows] == ["n=1", "n=2"]


def test_the_proxy_serves_the_plugin_by_model_name(plugin_site, tmp_path):
    script = textwrap.dedent('''
        import openai
        from reasoning import Budget
        from reasoning.serve import BackendPool, ReasoningService
        from reasoning.serve.app import ServerThread, create_app

        service = ReasoningService(BackendPool("scripted:7,7,3"), budget_cap=Budget.parse("tokens=100000,seconds=60"))
        with ServerThread(create_app(service, api_key="k")) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=60)
            models = [m.id for m in client.models.list().data]
            reply = client.chat.completions.create(model="my-vote-3", messages=[{"role": "user", "content": "q"}])
            print("my-vote" in models)
            print(reply.choices[0].message.content.strip().splitlines()[-1])
    ''')
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(plugin_site)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    listed, answer = done.stdout.strip().splitlines()[-2:]
    assert listed == "True" and answer.endswith("boxed{7}."), answer


def test_the_project_declares_its_own_plugins_the_same_way():
    import tomllib

    from reasoning.registry import BACKENDS, STRATEGIES, VERIFIERS

    declared = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    points = declared["entry-points"]
    assert set(points["reasoning.strategies"]) == set(STRATEGIES.names())
    assert set(points["reasoning.verifiers"]) == set(VERIFIERS.names())
    assert set(points["reasoning.backends"]) == set(BACKENDS.names())
