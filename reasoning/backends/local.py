"""Local CPU backend: transformers ``generate`` on the embedded model or any HF folder.

One worker thread owns the model, so only one ``generate`` runs at a time and the event
loop is never blocked. Requests that arrive while it is busy wait in a queue; those with
the same sampling settings (temperature, top_p, max_tokens, stop) are run together as one
left-padded batch (micro-batching: many problems run concurrently, and a CPU is far more
efficient on a batch than one row at a time). A request with a ``seed`` always runs alone,
so that its samples do not depend on what it was batched with.

Choices, measured or documented:
- dtype bfloat16 by default: on the 2-core AVX512-BF16 dev machine it decodes ~4x faster
  than float32 (one row: 18 vs 6 tok/s; n=8: 83 vs 21 tok/s). A CPU without native bf16
  may prefer ``dtype="float32"``.
- ``max_batch_rows`` 16: on 2 cores a batch of 16 rows gives ~90-100 tok/s against ~85 for 8
  and ~15 for 1; more rows add little throughput and lengthen every request in the batch.
- temperature 0 is greedy; with n > 1 the one greedy sample is returned n times (and
  counted n times, as an engine that computed them would).
- ``token_logprobs`` are of the raw model distribution (log_softmax of the logits before
  temperature / top_p), as vLLM reports them by default.
- Stopping while sampling (issue 21), for the rows of the requests that ask for it, by a logits
  processor that runs before temperature / top_p (``_ConfidenceProcessor``): each step it
  takes the top k of the raw log-distribution of every live row that asked, records DeepConf's
  token confidence (``token_confidence``; ``Completion.token_confidences`` for
  ``top_logprobs``) and, for a ``confidence_stop``, keeps the running window sum with the very
  arithmetic of ``ConfidenceStop.stops_at`` on those same numbers, so the recorded confidences
  replay to the stop exactly. At the step the rule fires every logit of that row but
  end-of-sequence's is set to -inf: the row emits EOS there (counted), finish_reason
  "confidence". ``stop_early`` is asked each time a row of its request finishes (rows decode
  in lockstep, so they finish shortest first, ties in row order); once it says stop, that
  request's rows still running end at that step, "cancelled", with the tokens they decoded.
  The batch is static: a row that ended is no longer charged, but it keeps its slot in the
  batch's forward passes until every row has ended (wall time falls once the whole batch is
  done). Batches in which no request asks for any of this run as before (no processor, no
  per-row bookkeeping).
- Stop strings are matched on the decoded text, each step, so a stop string inside a
  token is found too; the text is cut before it (as OpenAI does) and the tokens counted
  run up to the one that completed it.
- ``seed`` on the constructor seeds the sampler once at load (a run is reproducible if its
  calls come in the same order); a request's own ``seed`` makes that request reproducible.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendError, BackendUnavailable, ConfigError, ReasoningError, UnsupportedRequest
from ..types import Capabilities, Completion, ConfidenceStop, GenerationRequest, GenerationResponse, token_confidence
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
    quiet_transformers,
)

_STOP_WORKER = object()
# Most top-k candidates a token's confidence may be taken over (as vLLM's default max_logprobs).
TOP_LOGPROBS = 20


@dataclass(eq=False)
class _Job:
    request: GenerationRequest
    prompt_ids: list[int]
    future: Future[GenerationResponse] = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None  # raised by its stop_early while the batch ran

    @property
    def greedy(self) -> bool:
        return self.request.temperature == 0

    @property
    def rows(self) -> int:
        return 1 if self.greedy else self.request.n

    @property
    def batch_key(self) -> tuple[Any, ...]:
        r = self.request
        if r.seed is not None:  # alone: its samples must not depend on its batch mates
            return ("seeded", id(self))
        if r.score is not None:  # a forward pass, not a generate: scored alone
            return ("score", id(self))
        return (r.temperature, r.top_p, r.max_tokens, r.stop)


class Local(TokenizedPrompts, Backend):
    """A model on this machine's CPU through transformers (see the module docstring)."""

    capabilities = Capabilities(
        native_n=True, logprobs=True, token_ids=True, exact_prompt_tokens=True, prefix_caching=False,
        top_logprobs=TOP_LOGPROBS, confidence_stop=True, early_stop=True, score=True,
    )

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        dtype: str = "bfloat16",
        threads: int | None = None,
        seed: int | None = None,
        max_batch_rows: int = 16,
        batch_window_s: float = 0.005,
    ) -> None:
        if model is None or (isinstance(model, str) and model in MODELS):
            self._model_name: str | None = model or DEFAULT_MODEL
            self._path: Path | None = None
            label = self._model_name
            ready = model_dir(self._model_name)
            self.params = flops_params(ready) if (ready / COMPLETE_MARKER).is_file() else None
        else:
            self._model_name = None
            self._path = Path(model).expanduser()
            if not (self._path / "config.json").is_file():
                raise BackendUnavailable(
                    f"{self._path} is not an HF model folder (no config.json); known embedded "
                    f"models: {', '.join(sorted(MODELS))}"
                )
            label = self._path.name
            self.params = flops_params(self._path)
        self.name = f"local:{label}"
        if dtype not in ("bfloat16", "float32", "float16"):
            raise ConfigError(f"dtype must be bfloat16, float32 or float16, got {dtype!r}")
        self.dtype = dtype
        self.threads = threads or len(os.sched_getaffinity(0))
        self.seed = seed
        self.max_batch_rows = max_batch_rows
        self.batch_window_s = batch_window_s
        self._tokenizer: Any = None
        self._model: Any = None
        self._eos_ids: list[int] = []
        self._pad_id = 0
        self._load_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._worker_lock = threading.Lock()
        self._decoding = 0  # tokens decoded by the running batch (written by the worker only)
        self._cache_prompt_tokens()

    # -- loading ---------------------------------------------------------------------

    def _resolve_path(self) -> Path:
        if self._path is None:
            assert self._model_name is not None
            self._path = ensure_local_model(self._model_name)
            self.params = flops_params(self._path)
        return self._path

    def _load_tokenizer(self) -> Any:
        with self._load_lock:
            if self._tokenizer is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from transformers import AutoTokenizer

                path = self._resolve_path()
                with quiet_transformers():
                    self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            return self._tokenizer

    def _load_model(self) -> Any:
        tokenizer = self._load_tokenizer()
        with self._load_lock:
            if self._model is None:
                import torch
                from transformers import AutoModelForCausalLM, GenerationConfig

                with quiet_transformers():  # no "Loading weights" bar on every run
                    model = AutoModelForCausalLM.from_pretrained(
                        self._resolve_path(), dtype=getattr(torch, self.dtype), local_files_only=True
                    )
                model.eval()
                self._eos_ids = _eos_ids(model.generation_config.eos_token_id, tokenizer.eos_token_id)
                pad = model.generation_config.pad_token_id
                self._pad_id = pad if pad is not None else tokenizer.pad_token_id or self._eos_ids[0]
                # generate() fills every unset option from the model's generation_config: keep
                # only the token ids, so a folder's top_k / repetition_penalty never sneak in.
                model.generation_config = GenerationConfig(
                    eos_token_id=self._eos_ids, pad_token_id=self._pad_id, bos_token_id=tokenizer.bos_token_id
                )
                if self.seed is not None:
                    torch.manual_seed(self.seed)
                self._model = model
            return self._model

    def tokens_in_flight(self) -> int:
        return self._decoding

    def preparation_note(self) -> str | None:
        if self._path is None and self._model_name is not None:
            return preparation_note(self._model_name)
        return None

    async def load(self) -> None:
        """Prepare (first time: assemble and convert) and load the model, off the event loop."""
        await asyncio.to_thread(self._load_model)

    async def aclose(self) -> None:
        """Stop the worker (queued requests fail) and free the model; a later call reloads."""
        with self._worker_lock:
            worker, self._worker = self._worker, None
            self._inbox.put(_STOP_WORKER)
        if worker is not None:
            await asyncio.to_thread(worker.join)
        with self._load_lock:
            self._model = None

    # -- prompt tokens -----------------------------------------------------------------

    def _prompt_tokenizer(self) -> Any:
        return self._load_tokenizer()

    # -- generation ----------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> GenerationResponse:
        self.check_supported(request)
        if self._tokenizer is None:
            await asyncio.to_thread(self._load_tokenizer)
        ids = self.prompt_ids(request)
        if request.score is not None and not ids:
            raise ConfigError("a score request needs a prompt before the scored text")
        ids += self.score_ids(request)
        self._check_prompt(ids, request)
        job = _Job(request, ids)
        self._submit(job)
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            job.cancelled.set()  # the worker drops its rows within a step
            raise

    def _check_prompt(self, ids: Sequence[int], request: GenerationRequest) -> None:
        if not ids:
            raise ConfigError("empty prompt: nothing to condition on")
        vocab = len(self._tokenizer)
        if any(not 0 <= i < vocab for i in ids):
            raise ConfigError(f"prompt_token_ids outside the vocabulary [0, {vocab})")
        limit = getattr(self._tokenizer, "model_max_length", None)
        if limit and len(ids) + request.max_tokens > limit:
            raise UnsupportedRequest(
                f"{self.name}: prompt ({len(ids)}) + max_tokens ({request.max_tokens}) exceeds the context ({limit})"
            )

    def _submit(self, job: _Job) -> None:
        with self._worker_lock:
            if self._worker is None:  # each worker gets its own inbox, so a closing one takes no new work
                self._inbox = queue.SimpleQueue()
                self._worker = threading.Thread(
                    target=self._serve, args=(self._inbox,), name=f"{self.name}-worker", daemon=True
                )
                self._worker.start()
            self._inbox.put(job)

    def _serve(self, inbox: queue.SimpleQueue[Any]) -> None:
        import torch

        torch.set_num_threads(self.threads)  # per thread under OpenMP: set it where generate runs
        pending: deque[_Job] = deque()
        while True:
            if not pending:
                item = inbox.get()
                if item is _STOP_WORKER:
                    break
                pending.append(item)
                time.sleep(self.batch_window_s)  # let requests sent together share the first batch
            if not _drain(inbox, pending):
                break
            self._run(_take_batch(pending, self.max_batch_rows))
        for job in pending:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(BackendUnavailable(f"{self.name} was closed"))

    def _run(self, jobs: list[_Job]) -> None:
        live = [j for j in jobs if j.future.set_running_or_notify_cancel() and not j.cancelled.is_set()]
        if not live:
            return
        try:
            responses = self._score(live) if live[0].request.score is not None else self._generate_batch(live)
        except ReasoningError as exc:
            for job in live:
                job.future.set_exception(exc)
            return
        except Exception as exc:  # noqa: BLE001 (the worker outlives any one batch: callers get the error)
            error = BackendError(f"{self.name}: generation failed: {exc!r}")
            error.__cause__ = exc
            for job in live:
                job.future.set_exception(error)
            return
        for job, response in zip(live, responses):
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                job.future.set_result(response)

    def _generate_batch(self, jobs: list[_Job]) -> list[GenerationResponse]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        model = self._load_model()
        first = jobs[0].request
        row_jobs = [job for job in jobs for _ in range(job.rows)]
        input_ids, attention_mask = _left_pad([job.prompt_ids for job in row_jobs], self._pad_id)
        width = input_ids.shape[1]
        tap = _LogprobTap() if any(job.request.logprobs for job in jobs) else None
        rows = _Rows(row_jobs, self._tokenizer, set(self._eos_ids))
        early = any(job.request.stop_early is not None for job in jobs)
        stopper = _RowStopper(width, [job.cancelled for job in row_jobs], first.stop, self._tokenizer, tap,
                              set(self._eos_ids), self._count_decoded, max_new_tokens=first.max_tokens,
                              on_finished=rows.finished if early else None)
        confidence = None
        if any(job.request.top_logprobs or job.request.confidence_stop is not None for job in jobs):
            rows.confidences = [_RowConfidence.of(job.request) for job in row_jobs]
            confidence = _ConfidenceProcessor(rows.confidences, self._eos_ids[0], stopper.has_ended, tap)
        sampling = first.temperature > 0
        config = GenerationConfig(
            max_new_tokens=first.max_tokens,
            do_sample=sampling,
            eos_token_id=self._eos_ids,
            pad_token_id=self._pad_id,
            **({"temperature": 1.0, "top_k": 0, "top_p": 1.0} if sampling else {}),
        )
        # Our processors run after generate's own (none here), so the tap and the confidence
        # processor see raw logits (the tap before a forced end of sequence changes them).
        processors = LogitsProcessorList([p for p in (tap, confidence) if p is not None])
        if sampling:
            from transformers import TemperatureLogitsWarper, TopPLogitsWarper

            if first.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(first.temperature))
            if first.top_p < 1.0:
                processors.append(TopPLogitsWarper(first.top_p))
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                if first.seed is not None:
                    torch.manual_seed(first.seed)
                output = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    generation_config=config,
                    logits_processor=processors,
                    stopping_criteria=StoppingCriteriaList([stopper]),
                )
        finally:
            self._decoding -= stopper.decoded  # the calls return now; their usage counts instead
        seconds = time.perf_counter() - started
        generated = output[:, width:].tolist()
        logprobs = torch.stack(stopper.logprobs, dim=1).tolist() if tap and stopper.logprobs else None
        info = {
            "model": self.name.removeprefix("local:"),
            "device": "cpu",
            "dtype": self.dtype,
            "batch_requests": len(jobs),
            "batch_rows": len(row_jobs),
            "seconds": round(seconds, 3),
        }
        return self._responses(jobs, row_jobs, generated, logprobs, info, rows)

    def _score(self, jobs: list[_Job]) -> list[GenerationResponse]:
        """Score requests: one forward pass over prompt + scored text each; the log-probability
        of every scored token given all before it (raw distribution, as ``token_logprobs``)."""
        import torch

        model = self._load_model()
        responses = []
        for job in jobs:
            scored = len(self.score_ids(job.request))
            started = time.perf_counter()
            with torch.inference_mode():
                ids = torch.tensor([job.prompt_ids])
                logits = model(input_ids=ids).logits[0, :-1].float()
                chosen = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
            logprobs = chosen[len(chosen) - scored:].tolist() if scored else []
            info = {"model": self.name.removeprefix("local:"), "device": "cpu", "dtype": self.dtype,
                    "scored_tokens": scored, "seconds": round(time.perf_counter() - started, 3)}
            completion = Completion(job.request.score or "", 0, "stop", logprobs,
                                    list(job.prompt_ids[len(job.prompt_ids) - scored:]))
            responses.append(GenerationResponse([completion], prompt_tokens=len(job.prompt_ids), completion_tokens=0,
                                                info=info, prompt_token_ids=list(job.prompt_ids)))
        return responses

    def _count_decoded(self, tokens: int) -> None:
        self._decoding += tokens

    def _responses(
        self,
        jobs: list[_Job],
        row_jobs: list[_Job],
        generated: list[list[int]],
        logprobs: list[list[float]] | None,
        info: dict[str, Any],
        rows: _Rows,
    ) -> list[GenerationResponse]:
        by_job: dict[int, list[Completion]] = {id(job): [] for job in jobs}
        for row, job in enumerate(row_jobs):
            completion = rows.built.get(row) or rows.completion(row, generated[row],
                                                                logprobs[row] if logprobs is not None else None)
            by_job[id(job)].append(completion)
        responses = []
        for job in jobs:
            completions = by_job[id(job)]
            if job.greedy:  # one greedy row stands for all n identical samples
                one = completions[0]
                completions = [_copy(one) for _ in range(job.request.n)]
            responses.append(
                GenerationResponse(
                    completions=completions,
                    prompt_tokens=len(job.prompt_ids),
                    completion_tokens=sum(c.completion_tokens for c in completions),
                    info=dict(info),
                    prompt_token_ids=list(job.prompt_ids),
                )
            )
        return responses

    def model_path(self) -> str:
        """The model folder (assembled and converted first for the embedded model)."""
        return str(self._resolve_path())

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "dtype": self.dtype, "threads": self.threads, "params": self.params}


def _drain(inbox: queue.SimpleQueue[Any], pending: deque[_Job]) -> bool:
    """Move waiting requests to ``pending``; False once the worker is told to stop."""
    while True:
        try:
            item = inbox.get_nowait()
        except queue.Empty:
            return True
        if item is _STOP_WORKER:
            return False
        pending.append(item)


def _eos_ids(configured: int | list[int] | None, tokenizer_eos: int | None) -> list[int]:
    ids = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    ids.append(tokenizer_eos)  # chat models end turns on the tokenizer's EOS even if the config forgets it
    return list(dict.fromkeys(i for i in ids if i is not None))


def _take_batch(pending: deque[_Job], max_rows: int) -> list[_Job]:
    """The oldest job plus every later one with the same settings, up to ``max_rows`` rows."""
    first = pending.popleft()
    batch, rows, kept = [first], first.rows, deque()
    while pending:
        job = pending.popleft()
        if job.batch_key == first.batch_key and rows + job.rows <= max_rows:
            batch.append(job)
            rows += job.rows
        else:
            kept.append(job)
    pending.extend(kept)
    return batch


def _left_pad(prompts: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids, attention_mask


class _LogprobTap:
    """A logits processor that keeps the raw log-distribution of the current step."""

    def __init__(self) -> None:
        self.current: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        self.current = torch.log_softmax(scores.float(), dim=-1)
        return scores


class _RowConfidence:
    """One row's token confidences and, where its request has one, its confidence stop."""

    __slots__ = ("confidences", "report_k", "reported", "rule", "stopped_at", "top_k", "window_sum")

    def __init__(self, top_k: int, rule: ConfidenceStop | None = None, report_k: int = 0) -> None:
        self.top_k = top_k  # candidates in ``confidences`` (the rule's k where there is a rule)
        self.rule = rule
        self.report_k = report_k  # top_logprobs asked (0: none returned)
        self.confidences: list[float] = []
        # Only when the request returns confidences over another k than its rule's.
        self.reported: list[float] | None = [] if report_k and report_k != top_k else None
        self.window_sum = 0.0
        self.stopped_at: int | None = None  # the step at which the rule forced end of sequence

    @classmethod
    def of(cls, request: GenerationRequest) -> _RowConfidence | None:
        rule = request.confidence_stop
        if rule is None and not request.top_logprobs:
            return None
        return cls(rule.top_k if rule is not None else request.top_logprobs, rule, request.top_logprobs)

    @property
    def k(self) -> int:
        return max(self.top_k, self.report_k)

    @property
    def token_confidences(self) -> list[float]:
        return self.reported if self.reported is not None else self.confidences

    def push(self, top: Sequence[float]) -> bool:
        """Record this step's confidence from its best log-probabilities (most likely first);
        True: the rule stops the row at this step."""
        confidence = token_confidence(top[: self.top_k])
        if self.reported is not None:
            self.reported.append(token_confidence(top[: self.report_k]))
        i = len(self.confidences)
        self.confidences.append(confidence)
        rule = self.rule
        if rule is None:
            return False
        # ConfidenceStop.stops_at's arithmetic, one step at a time, on the recorded numbers.
        self.window_sum += confidence
        if i >= rule.window:
            self.window_sum -= self.confidences[i - rule.window]
        if i + 1 >= rule.window and self.window_sum / rule.window < rule.threshold:
            self.stopped_at = i
            return True
        return False


class _ConfidenceProcessor:
    """A logits processor for the rows that ask for token confidences or a confidence stop
    (None in ``rows``: the row is left alone). It must see the raw scores (run before
    temperature / top_p): one log_softmax (or the tap's) and one top-k over the live rows that
    asked, their confidences recorded, and every logit but ``eos``'s set to -inf on the rows
    whose rule fires. ``ended(row)``: the row ended at an earlier step (EOS, a stop string,
    cancelled); its later steps (padding) are not recorded."""

    def __init__(self, rows: Sequence[_RowConfidence | None], eos: int, ended: Callable[[int], bool],
                 tap: _LogprobTap | None = None) -> None:
        self.rows = rows
        self.eos = eos
        self.ended = ended
        self.tap = tap
        self.live = [row for row, state in enumerate(rows) if state is not None]
        self.k = max((rows[row].k for row in self.live), default=1)  # type: ignore[union-attr]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        rows = self.rows
        self.live = [row for row in self.live if rows[row].stopped_at is None and not self.ended(row)]  # type: ignore[union-attr]
        if not self.live:
            return scores
        index = torch.tensor(self.live, dtype=torch.long, device=scores.device)
        if self.tap is not None:  # it ran first, on these scores
            logprobs = self.tap.current.index_select(0, index)
        else:
            logprobs = torch.log_softmax(scores.index_select(0, index).float(), dim=-1)
        top = torch.topk(logprobs, min(self.k, logprobs.shape[-1]), dim=-1).values.tolist()
        for row, values in zip(self.live, top, strict=True):
            if rows[row].push(values):  # type: ignore[union-attr]
                scores[row] = float("-inf")
                scores[row, self.eos] = 0.0
        return scores


class _Rows:
    """A batch's rows as completions: what the processors recorded for them and what
    ``stop_early`` decided (asked by the stopping criterion as rows finish)."""

    def __init__(self, row_jobs: list[_Job], tokenizer: Any, eos: set[int]) -> None:
        self.row_jobs = row_jobs
        self.tokenizer = tokenizer
        self.eos = eos
        self.confidences: list[_RowConfidence | None] | None = None
        self.cancelled_at: dict[int, int] = {}  # row -> tokens it had decoded when stop_early decided
        self.built: dict[int, Completion] = {}  # rows already shown to stop_early, as they were shown
        self._finished: dict[int, list[Completion]] = {}  # per job (id): finished, in finishing order
        self._decided: set[int] = set()

    def completion(self, row: int, tokens: list[int], logprobs: list[float] | None) -> Completion:
        job = self.row_jobs[row]
        request = job.request
        if row in self.cancelled_at:
            kept = tokens[: self.cancelled_at[row]]
            completion = Completion(text=self.tokenizer.decode(kept, skip_special_tokens=True),
                                    completion_tokens=len(kept), finish_reason="cancelled", token_ids=kept)
        else:
            completion = _completion(tokens, request, self.eos, self.tokenizer)
        state = self.confidences[row] if self.confidences is not None else None
        if state is not None:
            if (state.stopped_at is not None and completion.finish_reason == "stop"
                    and completion.stop_sequence is None and completion.completion_tokens == state.stopped_at + 1):
                completion.finish_reason = "confidence"  # the end of sequence the processor forced
            if request.top_logprobs:
                completion.token_confidences = state.token_confidences[: completion.completion_tokens]
        if request.logprobs and logprobs is not None:
            completion.token_logprobs = logprobs[: completion.completion_tokens]
        return completion

    def finished(self, ended: list[int], input_ids: Any, stopper: _RowStopper) -> None:
        """Rows ``ended`` at this step: show each to its request's ``stop_early``; once it
        decides, end that request's rows still running here, "cancelled"."""
        decoded = input_ids.shape[1] - stopper.prompt_width
        for row in ended:
            job = self.row_jobs[row]
            decide = job.request.stop_early
            if decide is None or id(job) in self._decided or job.cancelled.is_set():
                continue
            logprobs = [float(step[row]) for step in stopper.logprobs] if job.request.logprobs and stopper.tap else None
            completion = self.built[row] = self.completion(row, input_ids[row, stopper.prompt_width:].tolist(), logprobs)
            seen = self._finished.setdefault(id(job), [])
            try:
                # A greedy row stands for its n identical samples: they finish together.
                for _ in range(job.request.n if job.greedy else 1):
                    seen.append(completion)
                    if decide(list(seen)):
                        self._decided.add(id(job))
                        break
            except Exception as exc:  # noqa: BLE001 (the request's own code: its caller gets the error)
                job.error = exc
                self._decided.add(id(job))
            if id(job) in self._decided:
                for other, mate in enumerate(self.row_jobs):
                    if mate is job and not stopper.has_ended(other) and other not in ended:
                        stopper.done[other] = True
                        self.cancelled_at[other] = decoded


class _RowStopper:
    """Per-row stopping criterion: cancelled rows and stop strings; also collects logprobs.

    It runs after each step's token is appended, so it sees exactly the sampled token.
    ``on_finished(rows, input_ids, stopper)`` (requests with ``stop_early``) is told which rows
    ended at this step (EOS, stop string, max_new_tokens) and may end others (``done``).
    """

    def __init__(
        self,
        prompt_width: int,
        cancelled: list[threading.Event],
        stop: Sequence[str],
        tokenizer: Any,
        tap: _LogprobTap | None,
        eos: frozenset[int] | set[int] = frozenset(),
        on_decoded: Callable[[int], None] | None = None,
        max_new_tokens: int | None = None,
        on_finished: Callable[[list[int], Any, _RowStopper], None] | None = None,
    ) -> None:
        self.prompt_width = prompt_width
        self.max_new_tokens = max_new_tokens
        self.on_finished = on_finished
        self.eos = eos
        self.on_decoded = on_decoded  # told how many rows decoded a token this step (progress)
        self.decoded = 0
        self.cancelled = cancelled
        self.stop = tuple(s for s in stop if s)
        # A stop string ending in the newest token starts at most this many tokens back.
        self.window = 2 * max((len(s) for s in self.stop), default=0) + 4
        self.tokenizer = tokenizer
        self.tap = tap
        self.logprobs: list[Any] = []
        self.done = [False] * len(cancelled)
        self.ended = [False] * len(cancelled)  # generated an EOS token (counting decoded tokens only)

    def has_ended(self, row: int) -> bool:
        """Whether ``row`` ended at a step already checked (its later tokens are padding)."""
        return self.done[row] or self.ended[row]

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self.tap is not None:
            self.logprobs.append(self.tap.current.gather(1, input_ids[:, -1:]).squeeze(1))
        running = [row for row in range(len(self.done)) if not self.has_ended(row)] if self.on_finished else None
        step = 0  # a row's EOS counts (as in its usage); its padding after does not
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if not (self.done[row] or self.ended[row]):
                step += 1
                self.ended[row] = token in self.eos
        self.decoded += step
        if self.on_decoded is not None:
            self.on_decoded(step)
        start = max(self.prompt_width, input_ids.shape[1] - self.window)
        for row, event in enumerate(self.cancelled):
            if self.done[row]:
                continue
            if event.is_set():
                self.done[row] = True
            elif self.stop:
                tail = self.tokenizer.decode(input_ids[row, start:].tolist(), skip_special_tokens=True)
                self.done[row] = any(s in tail for s in self.stop)
        if running:
            full = self.max_new_tokens is not None and input_ids.shape[1] - self.prompt_width >= self.max_new_tokens
            ended = [row for row in running if full or self.has_ended(row)]
            if ended:
                self.on_finished(ended, input_ids, self)  # type: ignore[misc]
        return torch.tensor(self.done, dtype=torch.bool)


def _completion(tokens: list[int], request: GenerationRequest, eos: set[int], tokenizer: Any) -> Completion:
    """Trim one generated row (EOS, stop string, padding) and count what was generated."""
    end = next((i for i, t in enumerate(tokens) if t in eos), None)
    body = tokens if end is None else tokens[:end]
    cut = _stop_cut(body, request.stop, tokenizer)
    if cut is not None:
        kept = body[:cut]
        text = tokenizer.decode(kept, skip_special_tokens=True)
        at, stop = min((text.find(s), s) for s in request.stop if s and s in text)
        # include_stop: the text is what the kept ids decode to (they never drift apart)
        text = text if request.include_stop else text[:at]
        return Completion(text=text, completion_tokens=len(kept), finish_reason="stop", token_ids=kept,
                          stop_sequence=stop)
    decoded = tokenizer.decode(body, skip_special_tokens=True)
    if end is not None:  # the EOS token was generated: it counts
        kept = tokens[: end + 1]
        return Completion(text=decoded, completion_tokens=len(kept), finish_reason="stop", token_ids=kept)
    return Completion(text=decoded, completion_tokens=len(body), finish_reason="length", token_ids=body)


def _stop_cut(body: list[int], stop: Sequence[str], tokenizer: Any) -> int | None:
    """The fewest leading tokens of ``body`` whose text holds a stop string, or None."""
    stop = [s for s in stop if s]

    def holds(k: int) -> bool:
        text = tokenizer.decode(body[:k], skip_special_tokens=True)
        return any(s in text for s in stop)

    if not stop or not holds(len(body)):
        return None
    low, high = 1, len(body)
    while low < high:
        mid = (low + high) // 2
        if holds(mid):
            high = mid
        else:
            low = mid + 1
    return low


def _copy(completion: Completion) -> Completion:
    return Completion(
        text=completion.text,
        completion_tokens=completion.completion_tokens,
        finish_reason=completion.finish_reason,
        token_logprobs=list(completion.token_logprobs) if completion.token_logprobs is not None else None,
        token_ids=list(completion.token_ids) if completion.token_ids is not None else None,
        stop_sequence=completion.stop_sequence,
        token_confidences=list(completion.token_confidences) if completion.token_confidences is not None else None,
    )
