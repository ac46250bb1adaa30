"""The backend protocol: one async call, declared capabilities, honest token bounds.

Backends know nothing of strategies or budgets. The ledger asks a backend only two
questions before a call: an upper bound on the prompt's tokens, and the per-token prices
(see ``call_shape``), so that it can reserve the worst case.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..budget import CallShape
from ..errors import UnsupportedRequest
from ..types import Capabilities, GenerationRequest, GenerationResponse

# Chat templates add a few special tokens per message and around the whole prompt.
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS_FIXED = 32


def byte_bound_prompt_tokens(request: GenerationRequest) -> int:
    """An upper bound on prompt tokens that holds for any byte-level tokenizer.

    Every BPE / sentencepiece-with-byte-fallback token covers at least one byte, so
    tokens <= UTF-8 bytes; chat templates add a bounded number of special tokens.
    """
    if request.prompt_token_ids is not None:
        return len(request.prompt_token_ids)
    messages = len(request.messages) if request.messages is not None else 0
    return (
        len(request.prompt_text().encode("utf-8"))
        + TEMPLATE_TOKENS_PER_MESSAGE * messages
        + TEMPLATE_TOKENS_FIXED
    )


class Backend(ABC):
    """Generates completions for a GenerationRequest. Subclasses set ``capabilities``."""

    name: str = "backend"
    capabilities: Capabilities = Capabilities()
    # Parameter count, when known: FLOPs are estimated as 2 x params per token.
    params: int | None = None

    @abstractmethod
    async def generate(self, request: GenerationRequest) -> GenerationResponse:
        """Sample ``request.n`` completions. Must report usage as the engine counted it."""

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """An upper bound (exact where ``capabilities.exact_prompt_tokens``) on prompt tokens."""
        return byte_bound_prompt_tokens(request)

    def prices(self) -> tuple[float, float]:
        """USD per prompt token and per completion token (0 for local models)."""
        return 0.0, 0.0

    @property
    def priced(self) -> bool:
        """Whether ``prices()`` are known. A model known to be free (local, vLLM) is priced at
        0; an API model missing from litellm's cost table, with no price given, is not, and
        a ``usd`` budget on it is refused (it would be silently unlimited)."""
        return True

    def call_shape(self, request: GenerationRequest) -> CallShape:
        """What the ledger needs to reserve the worst case of ``request``."""
        prompt_price, completion_price = self.prices()
        fan_out = not self.capabilities.native_n
        return CallShape(
            prompt_tokens=self.count_prompt_tokens(request),
            prompt_copies_per_sample=fan_out,
            calls_per_sample=fan_out,
            usd_per_prompt_token=prompt_price,
            usd_per_completion_token=completion_price,
            flops_per_token=2.0 * self.params if self.params else 0.0,
        )

    def check_supported(self, request: GenerationRequest) -> None:
        """Refuse, clearly, what this backend cannot honour."""
        caps = self.capabilities
        if request.prompt_token_ids is not None and not caps.token_ids:
            raise UnsupportedRequest(f"{self.name} does not accept prompt_token_ids")
        if request.logprobs and not caps.logprobs:
            raise UnsupportedRequest(f"{self.name} does not return logprobs")
        if request.top_logprobs > caps.top_logprobs:
            raise UnsupportedRequest(
                f"{self.name} returns at most {caps.top_logprobs} top logprobs per token, asked for {request.top_logprobs}"
            )
        if request.score is not None and not caps.score:
            raise UnsupportedRequest(f"{self.name} cannot score a given text (teacher-forced log-probabilities)")
        if request.confidence_stop is not None and not caps.confidence_stop:
            raise UnsupportedRequest(f"{self.name} cannot stop a sample on its confidence while it runs")
        if request.confidence_stop is not None and request.confidence_stop.top_k > caps.top_logprobs:
            raise UnsupportedRequest(f"{self.name} returns at most {caps.top_logprobs} top logprobs per token; the "
                                     f"confidence stop asks for {request.confidence_stop.top_k}")

    async def load(self) -> None:
        """Load weights / start engines now, so that no budgeted call pays for it.

        Backends load lazily on their first call otherwise; remote ones have nothing to load.
        """

    def tokens_in_flight(self) -> int:
        """Completion tokens decoded so far by calls that have not returned yet, for progress
        displays (0 where the backend cannot tell: their tokens count once they return)."""
        return 0

    def preparation_note(self) -> str | None:
        """A line for the user when ``load`` must first do slow one-time work (the embedded
        model is assembled and converted on first use); None when loading is routine."""
        return None

    async def aclose(self) -> None:
        """Release connections, engines, threads."""

    @classmethod
    def from_spec(cls, rest: str, *, api_base: str | None = None, api_key: str | None = None, **options: Any) -> Backend:
        """Build from the CLI's ``--backend KIND:REST`` (REST: a model name or path, or empty)."""
        return cls(rest or None, **options)

    def describe(self) -> dict[str, object]:
        """A JSON-friendly description for summaries and traces."""
        return {"backend": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
