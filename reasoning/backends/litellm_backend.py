"""Any provider litellm knows (OpenAI, Anthropic, Together, hosted vLLM...), via ``litellm.acompletion``.

litellm is imported on first construction (it takes ~2 s), never at ``import reasoning``,
and always with ``LITELLM_LOCAL_MODEL_COST_MAP`` set so that it reads its bundled cost
table instead of fetching one over the network.

Token counts are what litellm reports: the provider's ``usage`` when it sends one (litellm
estimates with a tokenizer otherwise). Per-sample counts come from logprobs when asked for,
else the reported total is split over samples (see ``split_completion_tokens``).
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

from ..aio import gather_all
from ..errors import AuthenticationError, BadModel, ConfigError, UnsupportedRequest
from ..types import Capabilities, GenerationRequest, GenerationResponse
from ._http import (
    DEFAULT_REQUEST_TIMEOUT,
    build_response,
    cached_tokens,
    check_timeout,
    merge_responses,
    translate_error,
    with_retries,
)
from .base import Backend

# Providers known to honour n > 1 in one request (litellm must also list "n" as supported;
# some that it lists, e.g. groq, reject n > 1 at runtime).
NATIVE_N_PROVIDERS = frozenset(
    {
        "openai",
        "azure",
        "azure_text",
        "text-completion-openai",
        "custom_openai",
        "hosted_vllm",
        "together_ai",
        "fireworks_ai",
    }
)
# Providers whose text completion is a real /completions call, not a chat message in disguise.
TEXT_COMPLETION_PROVIDERS = frozenset({"text-completion-openai", "azure_text", "text-completion-codestral"})
# Providers that continue a trailing assistant message natively (prefill).
PREFILL_PROVIDERS = frozenset({"anthropic"})
# Service-tier variants (batches, priority, flex...) are not used; size tiers are.
_PROMPT_PRICE = re.compile(r"input_cost_per_token(_above_\d+k_tokens)?")
_COMPLETION_PRICE = re.compile(r"output_cost_per_(reasoning_)?token(_above_\d+k_tokens)?")
# The API key variable of common hosted providers, checked before litellm is imported (it
# takes seconds), so that a missing key fails at once; ``require_key`` then asks litellm
# about every provider. A test keeps these names equal to litellm's.
KEY_VARIABLES = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
}


# Before any import of litellm: read the bundled cost map, never fetch one over the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _litellm() -> Any:
    import litellm

    litellm.suppress_debug_info = True  # no "Give Feedback" banners on every error
    return litellm


class LiteLLM(Backend):
    """``model`` is a litellm model name, e.g. ``openai/gpt-4o-mini`` or ``hosted_vllm/Qwen/Qwen3-8B``.

    ``native_n=None`` decides from the provider; ``extra`` is passed to every litellm call
    (e.g. ``{"top_k": 20}`` or ``{"extra_body": {...}}``). ``usd_per_token`` = (prompt,
    completion) USD per token overrides litellm's cost table (a model it does not list is
    otherwise unpriced, and a ``usd`` budget on it is refused). ``timeout``: seconds one call
    may take, retries included (then ``BackendTimeout``).
    """

    def __init__(
        self,
        model: str,
        api_base: str | None = None,
        api_key: str | None = None,
        *,
        concurrency: int = 64,
        timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_retries: int = 4,
        native_n: bool | None = None,
        extra: dict[str, Any] | None = None,
        backoff: float = 0.5,
        params: int | None = None,
        usd_per_token: tuple[float, float] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        check_timeout(timeout)
        self._litellm = litellm = _litellm()
        try:
            bare_model, provider, _, _ = litellm.get_llm_provider(model, api_base=api_base)
        except litellm.exceptions.BadRequestError as exc:
            raise BadModel(
                f"litellm cannot tell the provider of model {model!r}; prefix it, "
                f"e.g. 'openai/{model}' or 'hosted_vllm/{model}'"
            ) from exc
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.provider: str = provider
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.extra = dict(extra or {})
        self.params = params
        self.name = f"litellm:{model}"
        self._bare_model: str = bare_model
        supported = litellm.get_supported_openai_params(model=bare_model, custom_llm_provider=provider) or []
        if native_n is None:
            native_n = provider in NATIVE_N_PROVIDERS and "n" in supported
        # Declared only where litellm would pass logprobs on (drop_params would drop them silently).
        self.capabilities = Capabilities(native_n=native_n, logprobs="logprobs" in supported)
        self._given_prices = usd_per_token is not None
        looked_up = usd_per_token if usd_per_token is not None else self._lookup_prices()
        self._priced = looked_up is not None
        self._prices = looked_up or (0.0, 0.0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None

    # ---- what the ledger asks -------------------------------------------------------

    def prices(self) -> tuple[float, float]:
        return self._prices

    @property
    def priced(self) -> bool:
        return self._priced

    def _lookup_prices(self) -> tuple[float, float] | None:
        """Per-token USD from litellm's bundled table, the highest size tier (an upper bound
        for the ledger); None for models it does not know (local, self-hosted: unpriced)."""
        table = self._litellm.model_cost
        for key in (self.model, f"{self.provider}/{self._bare_model}", self._bare_model):
            entry = table.get(key)
            # A bare name must be this provider's (hosted_vllm/gpt-4o-mini is not OpenAI's).
            if entry and (key != self._bare_model or entry.get("litellm_provider") == self.provider):
                prompt = [v for k, v in entry.items() if _PROMPT_PRICE.fullmatch(k) and v]
                completion = [v for k, v in entry.items() if _COMPLETION_PRICE.fullmatch(k) and v]
                return max(prompt, default=0.0), max(completion, default=0.0)
        try:
            return self._litellm.cost_per_token(
                model=self._bare_model, custom_llm_provider=self.provider, prompt_tokens=1, completion_tokens=1
            )
        except Exception:  # noqa: BLE001 - litellm raises assorted Exception subclasses for unmapped models
            return None

    def _usd(self, response: Any, prompt_tokens: int, completion_tokens: int) -> float:
        if self._prices == (0.0, 0.0):
            return 0.0
        if self._given_prices:  # the caller's price, not litellm's idea of this model's
            return prompt_tokens * self._prices[0] + completion_tokens * self._prices[1]
        try:
            return float(self._litellm.completion_cost(completion_response=response))
        except Exception:  # noqa: BLE001 - pricing quirks must not fail a paid-for call: use table prices
            return prompt_tokens * self._prices[0] + completion_tokens * self._prices[1]

    # ---- calls ----------------------------------------------------------------------

    def _semaphore_for_loop(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # semaphores bind to one loop; tests use asyncio.run repeatedly
            self._semaphore = asyncio.Semaphore(self.concurrency)
            self._loop = loop
        assert self._semaphore is not None
        return self._semaphore

    def _raw_prompt_is_native(self) -> bool:
        if self.provider == "openai":  # litellm routes non-chat model names to /completions
            return self._bare_model not in self._litellm.open_ai_chat_completion_models
        return self.provider in TEXT_COMPLETION_PROVIDERS

    def _check(self, request: GenerationRequest) -> None:
        self.check_supported(request)
        if request.prompt is not None and not self._raw_prompt_is_native():
            raise UnsupportedRequest(
                f"{self.name}: litellm would wrap a raw prompt in a chat message for provider "
                f"{self.provider!r}; use messages, or 'openai/<model>' with api_base for a vLLM server"
            )

    def _kwargs(self, request: GenerationRequest, n: int, seed: int | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "timeout": self.timeout,
            "max_retries": 0,  # the SDK under litellm must not retry: with_retries does
            "drop_params": True,  # e.g. seed for providers that reject it
        }
        if self.api_base is not None:
            kwargs["api_base"] = self.api_base
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key
        if n > 1:
            kwargs["n"] = n
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if seed is not None:
            kwargs["seed"] = seed
        if request.logprobs:
            kwargs["logprobs"] = True if request.messages is not None else 1
        kwargs.update(self.extra)
        if request.messages is not None and request.continue_final_message:
            self._continue_final_message(kwargs)
        return kwargs

    def _continue_final_message(self, kwargs: dict[str, Any]) -> None:
        if self.provider in PREFILL_PROVIDERS:
            return  # a trailing assistant message is continued as is
        if self.provider == "hosted_vllm" or (self.api_base and self.provider in ("openai", "custom_openai")):
            body = dict(kwargs.get("extra_body") or {})
            body.update(continue_final_message=True, add_generation_prompt=False)  # vLLM extension
            kwargs["extra_body"] = body
            return
        raise UnsupportedRequest(f"{self.name}: provider {self.provider!r} cannot continue a final message")

    async def _call(self, request: GenerationRequest, n: int, seed: int | None) -> tuple[Any, int]:
        semaphore = self._semaphore_for_loop()
        kwargs = self._kwargs(request, n, seed)
        if request.messages is not None:
            kwargs["messages"] = [m.to_dict() for m in request.messages]
            method = self._litellm.acompletion
        else:
            kwargs["prompt"] = request.prompt
            method = self._litellm.atext_completion

        async def attempt() -> Any:
            async with semaphore:
                return await method(**kwargs)

        return await with_retries(attempt, self.max_retries, self.backoff, self._translate, self.timeout)

    def _translate(self, exc: BaseException, attempts: int) -> BaseException:
        return translate_error(
            exc,
            name=self.name,
            model=self.model,
            url=self.api_base or f"the {self.provider} API",
            attempts=attempts,
            key_hint=self._key_hint(exc),
            hint="if the provider rejects n > 1, pass native_n=False",
            timeout=self.timeout,
        )

    def _key_hint(self, exc: BaseException) -> str:
        if self.api_key is not None:
            return "the api_key argument"
        missing = self._missing_keys()
        return "set " + ", ".join(missing) if missing else "the provider's API key env var"

    def _missing_keys(self) -> list[str]:
        """The API key variables litellm wants for this model and does not find."""
        found = self._litellm.validate_environment(model=self.model, api_base=self.api_base)
        return [key for key in found.get("missing_keys") or [] if key.endswith("API_KEY")]

    def require_key(self) -> None:
        """Raise ``AuthenticationError`` naming the variable to set when no API key is at hand."""
        if self.api_key is None and (missing := self._missing_keys()):
            raise AuthenticationError(_no_key_message(self.name, missing))

    async def generate(self, request: GenerationRequest) -> GenerationResponse:
        self._check(request)
        chat = request.messages is not None
        if request.n == 1 or self.capabilities.native_n:
            results = [await self._call(request, request.n, request.seed)]
        else:
            # Fan-out: n single-sample calls; seed + i keeps seeded samples distinct.
            seeds = [None if request.seed is None else request.seed + i for i in range(request.n)]
            results = await gather_all([self._call(request, 1, s) for s in seeds])
        parts, usd = [], 0.0
        for response, _ in results:
            data = response.model_dump()
            part = build_response(data["choices"], data.get("usage"), request, chat)
            usd += self._usd(response, part[1], part[2])
            parts.append(part)
        completions, prompt_tokens, completion_tokens = merge_responses(parts)
        info: dict[str, Any] = {"model": data.get("model"), "provider": self.provider}
        if retries := sum(attempts - 1 for _, attempts in results):
            info["retries"] = retries
        return GenerationResponse(
            completions=completions,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            calls=len(results),
            usd=usd,
            info=info,
            cached_prompt_tokens=sum(cached_tokens(r.model_dump().get("usage")) for r, _ in results),
        )

    @classmethod
    def from_spec(cls, rest: str, *, api_base: str | None = None, api_key: str | None = None, **options: Any) -> LiteLLM:
        """The CLI's backend: a missing API key is refused here, before any call (and for the
        providers of ``KEY_VARIABLES``, before litellm is even imported)."""
        if not rest:
            raise ConfigError("litellm backend needs a model: --backend litellm:openai/gpt-4o-mini")
        if api_base and "," in api_base:
            raise ConfigError(f"--api-base {api_base!r}: the litellm backend takes one URL; for several replicas use "
                              "--backend openai:MODEL --api-base URL1,URL2 or litellm's Router (README, 'Several "
                              "replicas')")
        variable = KEY_VARIABLES.get(rest.partition("/")[0])
        if api_key is None and variable and not os.environ.get(variable):
            raise AuthenticationError(_no_key_message(f"litellm:{rest}", [variable]))
        backend = cls(rest, api_base=api_base, api_key=api_key, **options)
        backend.require_key()
        return backend

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "model": self.model,
            "provider": self.provider,
            "api_base": self.api_base,
            "native_n": self.capabilities.native_n,
            "concurrency": self.concurrency,
        }


def _no_key_message(name: str, variables: list[str]) -> str:
    return (f"{name} needs an API key: set {' or '.join(variables)} in the environment, or pass --api-key KEY "
            "(for a server without authentication, any value)")
