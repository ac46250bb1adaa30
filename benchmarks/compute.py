"""Compute accounting for sweeps: FLOPs with the attention term, Kinetics' effective FLOPs, and
our extended variant of them.

**FLOPs.** Per generated token at context length t, a dense decoder with P parameters that cost
a multiply-add per token, L layers, query width d = heads x head_dim and key/value width d_kv
costs

    FLOPs   2·P                    (every weight: one multiply-add)
          + 4·L·d·t                (attention: q·K over t keys and the weighted sum of t values)

Prefilling a prompt of p tokens costs 2·P·p + 2·L·d·p² (causal attention). Summed over a
completion of g tokens after a p-token prompt the attention terms are 4·L·d·(p·g + g²/2).

**Effective FLOPs, Kinetics** (``KineticsCost``; the sweeps' ``eflops``). Kinetics (Sadhukhan
et al. 2025, "Kinetics: Rethinking Test-Time Scaling Laws", arXiv 2506.05333) charges memory
traffic at the hardware's arithmetic intensity I. Its official cost model
(github.com/Infini-AI-Lab/Kinetics, ``cost_model/utils.py::dense_cost``), for N samples
(``num_trials``) of g generated tokens each after a context of c tokens, is, term for term:

    compute = (2·P·g + 2·(2·c + g)·g·d·L) · N      parameters + attention (= 4·L·d·(c·g + g²/2))
    memory  = 2·(2·c + g·N)·g·d_kv·L · I           KV-cache reads: the context's K and V read once
                                                   per step for all N samples (2·c·g values),
                                                   each sample's own (≈ g²/2 each of K and V)
    eFLOPs  = compute + memory

(their code passes ``head_dim · num_hidden_layers`` as ``head_dim``, so d·L and d_kv·L are what
it multiplies; its factor 2 on the memory term makes the K and V values bytes at 2 bytes each).
What it leaves out: the weight-read term ``2·P·g·N`` is commented out of ``memory``, and there is
no prefill term. I = ``KINETICS_INTENSITY`` = 562.5 is the ``E_flops`` of their scripts
(``cost_model_ntrial.py``, ``cost_model_genlen.py``); their notebooks divide eFLOPs by 4,500
TFLOP/s to plot "B200 seconds", i.e. I = 4,500 TFLOP/s ÷ 8 TB/s, FLOPs per byte of a B200. For
samples of different lengths their ``expected_cost`` averages ``dense_cost(g_i, N)`` over the
lengths g_i; for one call's own lengths that is Σ_i compute_i + I·(4·c·ḡ·d_kv·L + 2·Σ_i g_i²·d_kv·L)
with ḡ the mean length, which is what ``KineticsCost.call`` returns. Their P is the checkpoint's
parameter count (0.752B for Qwen3-0.6B: embedding table and LM head included); ours is
``ModelShape.params``, every weight but the input embedding table (a lookup, not a multiply-add;
a table tied to the output layer counts once, as that layer), the same P as the FLOPs above.

**Effective FLOPs, extended** (``ExtendedComputeModel``; the sweeps' ``eflops_extended``, this
project's variant and its default before 2026-12): our FLOPs above (prefill included) plus
I·bytes, where bytes are each sample's KV reads *including its own read of the prompt's KV*
(2·L·d_kv·(p·g + g²/2) values per sample) and the weight reads 2·P·g amortised over a decode
batch of B sequences; I = ``H100_INTENSITY`` ≈ 295 (989 dense BF16 TFLOP/s ÷ 3.35 TB/s), B = 64
(an arbitrary batch). On the 0.5B model of RESULTS.md the weight term is most of it: eFLOPs are
~6× FLOPs there where Kinetics' formula gives ~2×. Kept for comparison with earlier rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

H100_INTENSITY = 989e12 / 3.35e12  # the extended model's I: H100 SXM, dense BF16 FLOP/s per byte/s
KINETICS_INTENSITY = 562.5  # Kinetics' E_flops: B200, 4,500 TFLOP/s / 8 TB/s


@dataclass(frozen=True, slots=True)
class ModelShape:
    params: float  # parameters that cost a multiply-add per token (no input embedding lookup; the output layer in)
    layers: int
    d_attn: int  # query heads x head dim
    d_kv: int  # key/value heads x head dim
    bytes_per_value: float = 2.0  # bf16 weights and KV cache

    @classmethod
    def from_config(cls, config: dict[str, Any], params: float | None = None) -> ModelShape:
        """From a Hugging Face ``config.json`` (Llama/Qwen/Mistral-style keys)."""
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        head_dim = int(config.get("head_dim") or hidden // heads)
        kv_heads = int(config.get("num_key_value_heads") or heads)
        layers = int(config["num_hidden_layers"])
        if params is None:  # attention + MLP weights of a gated-MLP decoder and its output layer
            inter = int(config.get("intermediate_size") or 4 * hidden)
            per_layer = hidden * head_dim * (2 * heads + 2 * kv_heads) + 3 * hidden * inter
            # The logits cost hidden x vocab multiply-adds a token whether or not the output layer
            # shares its weights with the input embedding table (tie_word_embeddings).
            params = layers * per_layer + hidden * int(config["vocab_size"])
        return cls(float(params), layers, heads * head_dim, kv_heads * head_dim)

    @classmethod
    def from_dir(cls, path: str | Path, params: float | None = None) -> ModelShape:
        return cls.from_config(json.loads((Path(path) / "config.json").read_text()), params)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def flops_of_call(shape: ModelShape, prompt_tokens: float, completion_tokens: Sequence[float],
                  prefill_per_sample: bool = False, cached_prompt_tokens: float = 0.0) -> float:
    """FLOPs of one call: a prompt (prefilled once, or once per sample for backends without
    native n) and its completions. Prompt tokens served from the prefix cache are not prefilled
    again: only the new ones are, attending to all before them."""
    return _flops_and_kv(shape, prompt_tokens, completion_tokens, prefill_per_sample, cached_prompt_tokens)[0]


def _flops_and_kv(shape: ModelShape, prompt_tokens: float, completion_tokens: Sequence[float],
                  prefill_per_sample: bool, cached_prompt_tokens: float) -> tuple[float, float]:
    """FLOPs, and the KV values every sample reads while decoding (its prompt's included)."""
    s = shape
    copies = len(completion_tokens) if prefill_per_sample else 1
    p = prompt_tokens / copies if prefill_per_sample and copies else prompt_tokens
    cached = min(p, cached_prompt_tokens / copies if prefill_per_sample and copies else cached_prompt_tokens)
    new = p - cached
    flops = copies * (2 * s.params * new + 2 * s.layers * s.d_attn * (p * p - cached * cached))
    kv_values = 0.0
    for g in completion_tokens:
        context = p * g + g * g / 2
        flops += 2 * s.params * g + 4 * s.layers * s.d_attn * context
        kv_values += 2 * s.layers * s.d_kv * context
    return flops, kv_values


@dataclass(frozen=True, slots=True)
class KineticsCost:
    """Kinetics' effective FLOPs of dense attention, as its official code computes them (see
    the module docstring): attention compute + KV-cache memory traffic, no weight reads, no
    prefill; the context's KV is read once per decode step for all samples of a request."""

    shape: ModelShape
    intensity: float = KINETICS_INTENSITY  # FLOPs per byte (Kinetics' E_flops)

    def dense_cost(self, context: float, generation: float, trials: int = 1) -> tuple[float, float]:
        """``cost_model/utils.py::dense_cost`` in FLOPs (theirs are in units of 1e12):
        (compute, memory · I) of ``trials`` samples of ``generation`` tokens after ``context``."""
        s = self.shape
        compute = (2 * s.params * generation + 2 * (2 * context + generation) * generation * s.d_attn * s.layers) * trials
        memory = 2 * (2 * context + generation * trials) * generation * s.d_kv * s.layers * self.intensity
        return compute, memory

    def expected_cost(self, context: float, generations: Sequence[float], trials: int) -> tuple[float, float]:
        """``cost_model/utils.py::expected_cost``: the mean of ``dense_cost`` over the lengths."""
        if not generations:
            return 0.0, 0.0
        costs = [self.dense_cost(context, g, trials) for g in generations]
        return sum(c for c, _ in costs) / len(costs), sum(m for _, m in costs) / len(costs)

    def call(self, prompt_tokens: float, completion_tokens: Sequence[float], separate_requests: bool = False) -> float:
        """eFLOPs of one call: its samples decoded together after one prompt (native n: their
        own lengths averaged as ``expected_cost`` does, N = their number), or, for a backend
        without native n (``prompt_tokens`` then counts one copy per sample), one request each."""
        if not completion_tokens:
            return 0.0
        if separate_requests:
            context = prompt_tokens / len(completion_tokens)
            return sum(sum(self.dense_cost(context, g, 1)) for g in completion_tokens)
        return sum(self.expected_cost(prompt_tokens, completion_tokens, len(completion_tokens)))

    def shared(self, prompt_tokens: float, completion_tokens: Sequence[float]) -> float:
        """The part of one batched call's eFLOPs that does not grow with its number of samples:
        the prompt's K and V read once per decode step for all of them, I·2·2·c·ḡ·d_kv·L. The
        rest (each sample's compute and own KV reads) is a sum over samples, so a random k of
        the call's N samples cost, in expectation, shared + k/N·(call − shared)."""
        if not completion_tokens:
            return 0.0
        mean = sum(completion_tokens) / len(completion_tokens)
        s = self.shape
        return 2 * 2 * prompt_tokens * mean * s.d_kv * s.layers * self.intensity


@dataclass(frozen=True, slots=True)
class ExtendedComputeModel:
    """This project's extended effective FLOPs (see the module docstring): our FLOPs with
    prefill, plus I·(every sample's KV reads, its prompt's included, and weight reads shared by
    a decode batch of ``batch``). Not Kinetics' model; kept under its own name."""

    shape: ModelShape
    intensity: float = H100_INTENSITY  # FLOPs per byte of the hardware
    batch: int = 64  # sequences decoded together: weight reads are shared among them

    def call(self, prompt_tokens: float, completion_tokens: list[int], prefill_per_sample: bool = False,
             cached_prompt_tokens: float = 0.0) -> tuple[float, float]:
        """(FLOPs, extended effective FLOPs) of one call."""
        s = self.shape
        flops, kv_values = _flops_and_kv(s, prompt_tokens, completion_tokens, prefill_per_sample, cached_prompt_tokens)
        weight_bytes = s.bytes_per_value * s.params * sum(completion_tokens) / self.batch
        return flops, flops + self.intensity * (s.bytes_per_value * kv_values + weight_bytes)


@dataclass(frozen=True, slots=True)
class ComputeModel:
    """What a sweep records per call: ``flops`` (above, prefill included), ``eflops``
    (Kinetics', ``KineticsCost``) and ``eflops_extended`` (ours, ``ExtendedComputeModel``)."""

    shape: ModelShape
    intensity: float = KINETICS_INTENSITY  # Kinetics' I, for eflops
    extended_intensity: float = H100_INTENSITY  # the extended model's I, for eflops_extended
    batch: int = 64  # the extended model's decode batch

    @property
    def kinetics(self) -> KineticsCost:
        return KineticsCost(self.shape, self.intensity)

    @property
    def extended(self) -> ExtendedComputeModel:
        return ExtendedComputeModel(self.shape, self.extended_intensity, self.batch)

    def call(self, prompt_tokens: float, completion_tokens: list[int], prefill_per_sample: bool = False,
             cached_prompt_tokens: float = 0.0) -> dict[str, float]:
        """FLOPs, Kinetics' eFLOPs and the extended eFLOPs of one call (``prefill_per_sample``:
        a backend without native n, one request per sample)."""
        flops, extended = self.extended.call(prompt_tokens, completion_tokens, prefill_per_sample, cached_prompt_tokens)
        return {"flops": flops, "eflops": self.kinetics.call(prompt_tokens, completion_tokens, prefill_per_sample),
                "eflops_extended": extended}

    def shared(self, prompt_tokens: float, completion_tokens: list[int], cached_prompt_tokens: float = 0.0) -> dict[str, float]:
        """The part of one batched call (native n) that its number of samples does not change:
        the prompt's prefill (FLOPs, extended eFLOPs) and Kinetics' prompt-KV read (eFLOPs)."""
        prefill = flops_of_call(self.shape, prompt_tokens, [], False, cached_prompt_tokens)
        return {"flops": prefill, "eflops": self.kinetics.shared(prompt_tokens, completion_tokens),
                "eflops_extended": prefill}

    def of_trace(self, trace: list[dict[str, Any]], native_n: bool = True) -> dict[str, float]:
        """FLOPs, eFLOPs and extended eFLOPs of every generate call in a trace (a Result's)."""
        total = {"flops": 0.0, "eflops": 0.0, "eflops_extended": 0.0}
        for node in trace:
            if node["kind"] != "generate" or not node.get("usage"):
                continue
            completions = [c["completion_tokens"] for c in node.get("completions", [])]
            usage = node["usage"]
            for kind, value in self.call(usage.get("prompt_tokens", 0), completions, not native_n,
                                         usage.get("cached_prompt_tokens", 0)).items():
                total[kind] += value
        return total
