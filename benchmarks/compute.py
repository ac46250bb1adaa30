"""Compute accounting for sweeps: FLOPs with the attention term, and Kinetics' effective FLOPs.

Per generated token at context length t, a dense decoder with P non-embedding parameters,
L layers, query width d = heads x head_dim and key/value width d_kv costs

    FLOPs   2·P                    (every weight: one multiply-add)
          + 4·L·d·t                (attention: q·K over t keys and the weighted sum of t values)

and reads from memory, besides the weights, the whole KV cache so far: 2·L·d_kv·t values.
Prefilling a prompt of p tokens costs 2·P·p + 2·L·d·p² (causal attention). Summed over a
completion of g tokens after a p-token prompt the attention terms are 4·L·d·(p·g + g²/2)
FLOPs and 2·L·d_kv·(p·g + g²/2) values read.

"Effective FLOPs" (Kinetics, Sadhukhan et al. 2025) charge memory traffic at the hardware's
arithmetic intensity I (peak FLOP/s ÷ memory bytes/s): eFLOPs = FLOPs + I · bytes, where
bytes = KV-cache reads + weight reads amortised over the decode batch. Kinetics shows that
for long generations the KV term dominates, which plain 2·P·tokens hides. The default
I = 295 is an H100 SXM (989 dense BF16 TFLOP/s ÷ 3.35 TB/s); batch = 64 sequences.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

H100_INTENSITY = 989e12 / 3.35e12


@dataclass(frozen=True, slots=True)
class ModelShape:
    params: float  # non-embedding parameters (cost a multiply-add per token)
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
        if params is None:  # attention + MLP weights of a gated-MLP decoder, no embeddings
            inter = int(config.get("intermediate_size") or 4 * hidden)
            per_layer = hidden * head_dim * (2 * heads + 2 * kv_heads) + 3 * hidden * inter
            params = layers * per_layer + (0 if config.get("tie_word_embeddings") else hidden * int(config["vocab_size"]))
        return cls(float(params), layers, heads * head_dim, kv_heads * head_dim)

    @classmethod
    def from_dir(cls, path: str | Path, params: float | None = None) -> ModelShape:
        return cls.from_config(json.loads((Path(path) / "config.json").read_text()), params)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ComputeModel:
    shape: ModelShape
    intensity: float = H100_INTENSITY  # FLOPs per byte of the hardware
    batch: int = 64  # sequences decoded together: weight reads are shared among them

    def call(self, prompt_tokens: float, completion_tokens: list[int], prefill_per_sample: bool = False,
             cached_prompt_tokens: float = 0.0) -> tuple[float, float]:
        """(FLOPs, effective FLOPs) of one call: a prompt (prefilled once, or once per sample
        for backends without native n) and its completions. Prompt tokens served from the
        prefix cache are not prefilled again: only the new ones are, attending to all before them."""
        s = self.shape
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
        generated = sum(completion_tokens)
        weight_bytes = s.bytes_per_value * s.params * generated / self.batch
        effective = flops + self.intensity * (s.bytes_per_value * kv_values + weight_bytes)
        return flops, effective

    def of_trace(self, trace: list[dict[str, Any]], native_n: bool = True) -> tuple[float, float]:
        """(FLOPs, effective FLOPs) of every generate call in a trace (a Result's)."""
        total = [0.0, 0.0]
        for node in trace:
            if node["kind"] != "generate" or not node.get("usage"):
                continue
            completions = [c["completion_tokens"] for c in node.get("completions", [])]
            usage = node["usage"]
            flops, effective = self.call(usage.get("prompt_tokens", 0), completions, not native_n,
                                         usage.get("cached_prompt_tokens", 0))
            total[0] += flops
            total[1] += effective
        return total[0], total[1]
