"""GenRM: generative verification as next-token prediction.

After "When To Solve, When To Verify: Compute-Optimal Problem Solving and Generative
Verification for LLM Reasoning" (Singhi et al., 2025; official code
``nishadsinghi/sc-genrm-scaling``), which builds on GenRM (Zhang et al., 2024, "Generative
Verifiers: Reward Modeling as Next-Token Prediction"). For each candidate solution the model
writes ``k`` verification chains-of-thought, each ending in a verdict; the candidate's score
is the mean P(Yes) over its chains *that reached a verdict*.

Prompts: ``prompts/genrm_verify.md`` (ours: zero-shot, the default) or
``prompts/genrm_paper.md`` (the paper's GenRM-Base prompt format: a math teacher grades the
solution step by step after two worked examples, one ``No`` and one ``Yes``; see that file
for what matches the official prompt and what differs). The paper gives GenRM-Base 1,024
tokens per verification (official ``llmonk/verify/README.md``; 2,048 for GenRM-FT).

Verdict format (exact): the last line of a chain is

    Is the answer correct (Yes/No)? Yes        or        Is the answer correct (Yes/No)? No

(the paper's prompt writes it after "Verification: "). Case, surrounding markdown emphasis
(``**Yes**``) and trailing punctuation are tolerated; the *last* cue in the chain wins.

A chain without a parseable verdict (truncated, off-format) is DROPPED from the mean, as in
the official code (an unparseable verification is ``None``, becomes NaN, and
``get_solution_score`` averages the others; a solution with none scores 0). Its record keeps
``p_yes = None`` and ``source = "none"``.

P(Yes) of one chain:

* with logprobs and token ids (Local, vLLM, or any backend offering ``token_texts(ids)``), the
  verdict token is located (the Yes/No token of the last cue; see ``verdict_token_index``)
  and ``p = exp(logprob of the sampled verdict token)``; P(Yes) = p if it sampled "Yes",
  else 1 - p. This is what the paper's code does too: it requests ``logprobs=1`` from vLLM
  (the sampled token, plus the top-1 one when different) and takes P(Yes) = exp(logprob of
  "Yes") at the verdict position (it looks at the first, second-to-last and third-to-last
  tokens), else 1 - exp(logprob of "No") (``extract_P_yes`` /
  ``extract_final_verification_from_logprobs``): one token's probability, not the full
  next-token distribution.
* otherwise (no logprobs, or the token cannot be located): the hard verdict, 1.0 for Yes and
  0.0 for No, so the mean is the fraction of Yes verdicts. The paper's Llama MATH configs
  score this way only (``use_verification_logprobs: false``, ``use_hybrid: false``); its
  Qwen-7B, GPQA and QwQ configs use the logprob where it is found and the verdict otherwise
  (``use_hybrid: true``), which is what this verifier does.

One batched ``ctx.generate(n=k)`` per candidate, all candidates concurrently, all through
the context's ledger: verification draws from the same budget as the solutions. A budget
shrink leaves a candidate fewer chains (its mean is over those it got); a candidate with no
verdict at all scores 0 and is marked ``judged == 0`` (``chains == 0``: no chain drawn) in
``sample.info["genrm"]``, which also records each chain's completion ``tokens`` and the
call's ``prompt_tokens`` (for the strategy's cost accounting).

Whether a candidate *has an answer* is not this verifier's business: it scores the text.
GenRM best-of-N gives a candidate without an answer score 0 (``strategies.genrm_best_of_n``).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from typing import Any

from reasoning.context import Context, Sample
from reasoning.strategy import Verifier

ANSWER_CUE = r"Is\s+the\s+answer\s+correct"
_VERDICT_TAIL = r"\s*\(\s*Yes\s*/\s*No\s*\)\s*\??\s*[*_`\"']*\s*(Yes|No)\b"


def _cue_pattern(cue: str) -> re.Pattern[str]:
    return re.compile(cue + _VERDICT_TAIL, re.IGNORECASE)


_ANSWER_VERDICT = _cue_pattern(ANSWER_CUE)
_WORD = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_verdict(text: str, pattern: re.Pattern[str] = _ANSWER_VERDICT) -> tuple[bool | None, int]:
    """(True for Yes / False for No / None, char offset just past the verdict word) of the last cue."""
    found = None
    for found in pattern.finditer(text):
        pass
    if found is None:
        return None, -1
    return found.group(1).lower() == "yes", found.end(1)


def token_texts(backend: Any, ids: Sequence[int]) -> list[str] | None:
    """The text of each token id, when the backend can tell (else None).

    A backend may offer ``token_texts(ids)``; otherwise a loaded Hugging Face tokenizer
    (Local and vLLM keep one) decodes each id on its own.
    """
    hook = getattr(backend, "token_texts", None)
    if callable(hook):
        return list(hook(list(ids)))
    tokenizer = getattr(backend, "tokenizer", None) or getattr(backend, "_tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "decode"):
        return [tokenizer.decode([i]) for i in ids]
    return None


def verdict_token_index(text: str, offset: int, pieces: Sequence[str]) -> int | None:
    """Index of the verdict token among ``pieces`` (token texts), or None.

    The verdict word ending at char ``offset`` of ``text`` is followed by ``m`` more stand-alone
    yes/no words; so it is the (m+1)-th token from the end whose letters read "yes"/"no".
    """
    after = len(_WORD.findall(text[offset:]))
    seen = 0
    for index in range(len(pieces) - 1, -1, -1):
        letters = re.sub(r"[^a-z]", "", pieces[index].lower())
        if letters in ("yes", "no"):
            if seen == after:
                return index
            seen += 1
    return None


def chain_p_yes(
    sample: Sample, backend: Any, pattern: re.Pattern[str] = _ANSWER_VERDICT
) -> tuple[bool | None, float, str]:
    """(verdict, P(Yes), source) of one verification chain; source is logprob|verdict|none."""
    verdict, offset = parse_verdict(sample.text, pattern)
    if verdict is None:
        return None, 0.0, "none"
    completion = sample.completion
    if completion is not None and completion.token_logprobs and completion.token_ids:
        ids = completion.token_ids[: len(completion.token_logprobs)]
        pieces = token_texts(backend, ids)
        index = verdict_token_index(sample.text, offset, pieces) if pieces else None
        if index is not None:
            sampled_yes = re.sub(r"[^a-z]", "", pieces[index].lower()) == "yes"
            if sampled_yes == verdict:  # the token agrees with the parsed verdict
                p = min(1.0, math.exp(completion.token_logprobs[index]))
                return verdict, (p if verdict else 1.0 - p), "logprob"
    return verdict, (1.0 if verdict else 0.0), "verdict"


class GenRM(Verifier):
    """Mean P(Yes) over ``k`` verification chains per candidate, chains without a verdict
    dropped (see the module docstring). ``prompt``: a prompt file of ``prompts/`` with the
    variables ``problem`` and ``solution`` (``genrm_verify`` or ``genrm_paper``)."""

    name = "genrm"

    def __init__(self, k: int = 4, max_tokens: int = 512, temperature: float = 0.7, prompt: str = "genrm_verify"):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.prompt = prompt

    async def score(self, ctx: Context, samples: list[Sample]) -> list[float]:
        from reasoning.prompts import load_prompt

        template = load_prompt(self.prompt)
        logprobs = bool(ctx.backend.capabilities.logprobs)

        async def one(sample: Sample) -> float:
            messages = template.render(problem=ctx.problem.text, solution=sample.text)
            chains = await ctx.generate(
                messages, n=self.k, max_tokens=self.max_tokens, temperature=self.temperature,
                logprobs=logprobs, name="genrm", min_tokens=min(32, self.max_tokens),
            )
            judged = [chain_p_yes(chain, ctx.backend) for chain in chains]
            # A chain without a verdict is dropped from the mean (None), as in the paper's code.
            p_yes = [None if source == "none" else p for _, p, source in judged]
            counted = [p for p in p_yes if p is not None]
            sample.info["genrm"] = {
                "chains": len(chains),
                "judged": len(counted),
                "verdicts": [v for v, _, _ in judged],
                "p_yes": p_yes,
                "sources": [s for _, _, s in judged],
                "tokens": [c.completion.completion_tokens if c.completion else 0 for c in chains],
                "prompt_tokens": call_prompt_tokens(ctx, chains),
            }
            return mean_p_yes(p_yes)

        return list(await asyncio.gather(*(one(s) for s in samples)))


def mean_p_yes(p_yes: Sequence[float | None]) -> float:
    """A candidate's GenRM score: the mean P(Yes) over its chains with a verdict (None: no
    verdict, dropped); 0 when none has one (the paper's ``get_solution_score``)."""
    counted = [p for p in p_yes if p is not None]
    return sum(counted) / len(counted) if counted else 0.0


def call_prompt_tokens(ctx: Context, samples: Sequence[Sample]) -> int:
    """Prompt tokens charged for the calls that produced ``samples`` (each call once)."""
    nodes = ctx.trace.nodes
    total = 0
    for trace_id in dict.fromkeys(s.trace_id for s in samples):
        if trace_id is not None and 0 <= trace_id < len(nodes) and nodes[trace_id].id == trace_id:
            total += int(nodes[trace_id].usage.get("prompt_tokens", 0))
    return total
