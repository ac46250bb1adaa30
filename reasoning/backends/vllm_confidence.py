"""A vLLM (V1) logits processor that stops a sample once its group confidence drops: DeepConf's
online early stop, in the engine (``GenerationRequest.confidence_stop``).

The official code (``facebookresearch/deepconf``, ``processors.py``) wraps a per-request
callable in vLLM's ``AdapterLogitsProcessor``: one softmax + top-k per request per step. This
one does the same arithmetic batched: one ``log_softmax`` + ``topk`` over the rows of the
requests that asked for it, one transfer of their confidences to the host, and a running
window sum per request. At the step where the mean token confidence of the last ``window``
tokens first falls below the threshold, every logit but end-of-sequence's is set to -inf,
so the sample ends there: no token is decoded after the decision.

Alignment: a request's confidences are indexed by its position (the length of its output
token list when the step runs), so a step whose sample is discarded (a chunk of a chunked
prefill) is overwritten by the next one instead of counted twice.

It is imported by name in vLLM's engine process (``logits_processors=[...]``): it must not
import anything from this package beyond what that process can import (vllm, torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

# The key of SamplingParams.extra_args that carries a request's rule.
EXTRA_ARG = "rz_confidence_stop"


@dataclass(slots=True)
class _Rule:
    threshold: float
    window: int
    top_k: int
    eos: int
    output_ids: list[int]  # the engine's running list of this request's output tokens
    confidences: list[float] = field(default_factory=list)
    window_sum: float = 0.0

    def push(self, confidence: float) -> bool:
        """Record the confidence of the token at the current position; True: stop here."""
        position = len(self.output_ids)
        if position != len(self.confidences):  # a discarded step was recorded: rebuild
            del self.confidences[position:]
            self.window_sum = sum(self.confidences[-self.window:])
        self.confidences.append(confidence)
        self.window_sum += confidence
        if len(self.confidences) > self.window:
            self.window_sum -= self.confidences[-self.window - 1]
        return len(self.confidences) >= self.window and self.window_sum / self.window < self.threshold


class ConfidenceStopProcessor(LogitsProcessor):
    """Batch-level: rows without the rule cost nothing; a batch without any costs one dict check."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        self.rules: dict[int, _Rule] = {}  # batch row -> rule

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        rule = (sampling_params.extra_args or {}).get(EXTRA_ARG)
        if rule is None:
            return
        if not isinstance(rule, dict) or not {"threshold", "window", "top_k", "eos"} <= set(rule):
            raise ValueError(f"{EXTRA_ARG} needs threshold, window, top_k and eos, got {rule!r}")
        if int(rule["window"]) < 1 or not 1 <= int(rule["top_k"]) <= 1024:
            raise ValueError(f"{EXTRA_ARG}: window >= 1 and 1 <= top_k <= 1024, got {rule!r}")

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token wins: it must also run for greedy requests

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.rules.pop(index, None)
        for added in batch_update.added:
            # (index, params, [prompt ids,] output ids): the prompt ids came in vLLM 0.11
            index, params, output_ids = added[0], added[1], added[-1]
            rule = (getattr(params, "extra_args", None) or {}).get(EXTRA_ARG) if params is not None else None
            if rule is None:
                self.rules.pop(index, None)
            else:
                self.rules[index] = _Rule(float(rule["threshold"]), int(rule["window"]), int(rule["top_k"]),
                                          int(rule["eos"]), output_ids)
        for first, second, direction in batch_update.moved:
            a, b = self.rules.pop(first, None), self.rules.pop(second, None)
            if a is not None:
                self.rules[second] = a
            if direction == MoveDirectionality.SWAP and b is not None:
                self.rules[first] = b

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rules:
            return logits
        rows = sorted(i for i in self.rules if i < logits.shape[0])
        if not rows:
            return logits
        top_k = max(self.rules[i].top_k for i in rows)
        index = torch.tensor(rows, device=logits.device)
        logprobs = torch.log_softmax(logits.index_select(0, index).float(), dim=-1)
        top = torch.topk(logprobs, top_k, dim=-1).values  # sorted, most likely first
        # Mean of each row's own top k (rows asking for fewer than the batch's largest k).
        ks = torch.tensor([self.rules[i].top_k for i in rows], device=logits.device)
        keep = torch.arange(top_k, device=logits.device).unsqueeze(0) < ks.unsqueeze(1)
        confidences = (-(top * keep).sum(dim=-1) / ks).tolist()
        for row, confidence in zip(rows, confidences, strict=True):
            rule = self.rules[row]
            if rule.push(confidence):
                eos_logit = logits[row, rule.eos].clone()
                logits[row] = float("-inf")
                logits[row, rule.eos] = eos_logit
        return logits
