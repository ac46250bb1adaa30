"""The one chat-template renderer of the token-level backends (Local, vLLM): both feed the
model the same token ids for the same request, so their prompt-token counts agree."""

from __future__ import annotations

from typing import Any

from ..types import Message


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
