"""benchmarks/gpu_host.sh's model preparation on the GPU host, with a stand-in `python3` on PATH
that "converts" by creating the destination folder (the real conversion needs the payload):
the three conversions run side by side, each is marked done and skipped next time, and a failed
one stops the command before it runs and is redone on the next call."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_host.sh"
STUB = """#!/usr/bin/env bash
# the conversion's destination: the quoted path in the code under $MODEL (or $MODELS); FAIL=WORD fails a model
dest=$(printf '%s' "$2" | grep -o "'[^']*'" | tr -d "'" | grep "^$MODEL" | tail -1)
echo "$dest" >> "$LOG"
# side by side: wait until all $EXPECT conversions have started (one after another, the first
# would wait for the others forever: give up after 30 s and fail)
for _ in $(seq 300); do [ "$(wc -l < "$LOG")" -ge "$EXPECT" ] && break; sleep 0.1; done
[ "$(wc -l < "$LOG")" -ge "$EXPECT" ] || exit 4
if [ -n "$FAIL" ] && printf '%s' "$2" | grep -q "$FAIL"; then exit 3; fi
mkdir -p "$dest"
"""


@pytest.fixture
def host(tmp_path):
    stage, site, bin_dir = tmp_path / "stage", tmp_path / "site", tmp_path / "bin"
    (stage / "payload").mkdir(parents=True)
    for name in ("qwen05b.gguf", "qwen15b.gguf", "gemma270m.gguf"):
        (stage / "payload" / name).write_bytes(b"")
    site.mkdir()
    (site / ".reasoning-ready").touch()  # the wheels are installed
    bin_dir.mkdir()
    stub = bin_dir / "python3"
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)

    def run(*command, fail="", expect=3):
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STAGE": str(stage), "SITE": str(site),
               "MODEL": str(tmp_path / "model"), "MODELS": str(tmp_path / "models"), "LOG": str(tmp_path / "log"),
               "FAIL": fail, "EXPECT": str(expect)}
        return subprocess.run(["bash", str(SCRIPT), *command], env=env, capture_output=True, text=True, timeout=60,
                              check=False)

    return tmp_path, run


def started(log: Path) -> set[str]:
    return {Path(line).name for line in log.read_text().splitlines()} if log.exists() else set()


def test_the_conversions_run_side_by_side_are_marked_and_skipped_next_time(host):
    root, run = host
    done = run("echo", "ran")
    assert done.returncode == 0 and done.stdout.strip() == "ran"
    # each stand-in conversion ends only once all three have started: they ran side by side
    assert started(root / "log") == {"model", "qwen2.5-coder-1.5b-instruct", "gemma-3-270m"}
    for folder in (root / "model", root / "models" / "qwen2.5-coder-1.5b-instruct", root / "models" / "gemma-3-270m"):
        assert (folder / ".reasoning-converted").exists()
    (root / "log").unlink()
    assert run("echo", "again").returncode == 0 and not (root / "log").exists()  # nothing converted again


def test_a_failed_conversion_stops_the_command_and_is_redone_next_time(host):
    root, run = host
    failed = run("echo", "must not run", fail="gemma")
    assert failed.returncode == 1 and "must not run" not in failed.stdout
    assert "a model conversion failed" in failed.stderr
    assert not (root / "models" / "gemma-3-270m" / ".reasoning-converted").exists()
    assert (root / "model" / ".reasoning-converted").exists()
    (root / "log").unlink()
    assert run("echo", "ran", expect=1).returncode == 0
    assert started(root / "log") == {"gemma-3-270m"}  # only the failed one is converted again
