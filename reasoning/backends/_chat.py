"""The one chat-template renderer of the token-level backends (Local, vLLM): both feed the
model the same token ids for the same request, so their prompt-token counts agree."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from ..types import GenerationRequest, Message


def render_prompt_ids(tokenizer: Any, messages: tuple[Message, ...] | None, prompt: str | None,
                      continue_final: bool = False) -> list[int]:
    """Token ids of a chat (through the model's own template; ``continue_final`` continues the
    last assistant turn instead of opening a new one) or of a raw prompt."""
    if messages is None:
        return list(tokenizer(prompt)["input_ids"])
    text = tokenizer.apply_chat_template(
        [m.to_dict() for m in messages],
        tokenize=False,
        add_generation_prompt=not continue_final,
        continue_final_message=continue_final,
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class TokenizedPrompts:
    """The exact token ids of backends that tokenize here (Local, VLLM): a prompt rendered once
    (cached by prompt only, so a request the ledger shrank hits) and a score request's text
    tokenized on its own (no special tokens, as ATTS's reference code does: the boundary may
    split differently from one string), so both backends feed and score the same tokens. The
    ledger counts every request before it is sent: lengths only, no copies."""

    def _cache_prompt_tokens(self) -> None:
        self._render = lru_cache(maxsize=4096)(self._render_uncached)
        self._tokenize_score = lru_cache(maxsize=4096)(self._tokenize_score_uncached)

    def _prompt_tokenizer(self) -> Any:
        raise NotImplementedError

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The exact token ids the model is fed for ``request``."""
        return list(self._prompt_ids(request))

    def _prompt_ids(self, request: GenerationRequest) -> Sequence[int]:
        if request.prompt_token_ids is not None:
            return request.prompt_token_ids
        return self._render(request.messages, request.prompt, request.continue_final_message)

    def _render_uncached(self, messages: tuple[Message, ...] | None, prompt: str | None,
                         continue_final: bool) -> tuple[int, ...]:
        return tuple(render_prompt_ids(self._prompt_tokenizer(), messages, prompt, continue_final))

    def score_ids(self, request: GenerationRequest) -> list[int]:
        """The token ids of a score request's text, fed after the prompt's."""
        return [] if request.score is None else list(self._tokenize_score(request.score))

    def _tokenize_score_uncached(self, text: str) -> tuple[int, ...]:
        return tuple(self._prompt_tokenizer()(text, add_special_tokens=False)["input_ids"])

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        scored = len(self._tokenize_score(request.score)) if request.score is not None else 0
        return len(self._prompt_ids(request)) + scored

