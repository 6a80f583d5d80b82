"""The transformers backend: loads in seconds anywhere; one generation at a time per model.

Generation runs in its own thread and hands tokens to the caller through a queue, so the
caller (a Gradio handler or the CLI) can stream, and an abort stops it at the next token.
LoRA adapters are attached with PEFT next to the base weights and switched per request.
Requests waiting for their turn are bounded in number (``max_waiting``) and in time
(``max_wait_s``); beyond either, the request is refused with a "busy, try again" error.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

from garden.engine.cpu_flags import has_native_bf16
from garden.engine.serving.types import Adapter, BackendChunk, GenerationRequest
from garden.errors import ModelLoadError, OutOfMemoryError, ServingError

_END = object()
MAX_WAITING = 16  # requests queued behind the one generating, per model
MAX_WAIT_S = 300.0  # how long a queued request waits for its turn


def pick_dtype(device: str) -> Any:
    """bf16 where the hardware does it well (CUDA, CPUs with AMX/AVX-512 bf16), else fp32."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if has_native_bf16() else torch.float32


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, MemoryError | torch.OutOfMemoryError) or "out of memory" in str(exc)


class TransformersBackend:
    name = "transformers"

    def __init__(
        self,
        model_path: str,
        dtype: str | None = None,
        *,
        max_waiting: int = MAX_WAITING,
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        self.model_path = model_path
        self.dtype_name = dtype
        self.max_waiting = max_waiting
        self.max_wait_s = max_wait_s
        self._waiting = 0
        self._count_lock = threading.Lock()
        self.model: Any = None
        self.tokenizer: Any = None
        self.device = "cpu"
        self.max_model_len = 2048
        self._lock = threading.Lock()
        self._aborts: dict[str, threading.Event] = {}
        self._adapters: set[str] = set()

    def start(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = getattr(torch, self.dtype_name) if self.dtype_name else pick_dtype(self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype)
        except Exception as exc:
            if is_oom(exc):
                raise OutOfMemoryError(
                    f"Not enough memory to load {self.model_path}.",
                    hint="Unload other models or pick a smaller one.",
                ) from exc
            raise ModelLoadError(
                f"transformers could not load {self.model_path}: {exc}",
                hint="Check that the folder holds a complete causal-LM model.",
            ) from exc
        self.model = model.to(self.device).eval()  # type: ignore[arg-type]
        limit = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_model_len = int(min(limit, 8192))
        with torch.inference_mode():  # first-call kernel set-up, not paid by the first answer
            ids = torch.tensor([[1, 2, 3]], device=self.device)
            self.model.generate(input_ids=ids, max_new_tokens=2, do_sample=False, pad_token_id=0)

    def _use_adapter(self, adapter: Adapter | None) -> None:
        if adapter is None:
            if self._adapters:
                self.model.disable_adapters()
            return
        if adapter.name not in self._adapters:
            try:
                self.model.load_adapter(adapter.path, adapter_name=adapter.name)
            except Exception as exc:
                raise ServingError(
                    f"Could not attach adapter {adapter.name} ({adapter.path}): {exc}",
                    hint="The adapter may belong to another base model or be incomplete.",
                ) from exc
            self._adapters.add(adapter.name)
        self.model.set_adapter(adapter.name)
        self.model.enable_adapters()

    def stream(self, request: GenerationRequest) -> Iterator[BackendChunk]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        config, request_id = request.config, request.request_id
        self._enter_queue()
        out: queue.Queue[Any] = queue.Queue()
        abort = self._aborts.setdefault(request_id, threading.Event())

        class Streamer(BaseStreamer):
            def __init__(self) -> None:
                self.first = True

            def put(self, value: Any) -> None:
                if self.first:  # the prompt
                    self.first = False
                    return
                out.put([int(t) for t in value.reshape(-1).tolist()])

            def end(self) -> None:
                pass

        class Aborted(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), abort.is_set(), dtype=torch.bool)

        kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "do_sample": not config.greedy,
            "repetition_penalty": config.repetition_penalty,
            "streamer": Streamer(),
            "stopping_criteria": StoppingCriteriaList([Aborted()]),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if config.ignore_eos:
            kwargs["min_new_tokens"] = config.max_new_tokens
        if not config.greedy:
            kwargs.update(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)

        def run() -> None:
            try:
                with self._turn():
                    if abort.is_set():
                        return
                    self._use_adapter(request.adapter)
                    if config.seed is not None:
                        torch.manual_seed(config.seed)
                    ids = torch.tensor([request.prompt_ids], device=self.device)
                    with torch.inference_mode():
                        self.model.generate(
                            input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs
                        )
            except BaseException as exc:
                out.put(exc)
            finally:
                out.put(_END)

        thread = threading.Thread(target=run, name=f"hf-generate-{request_id}", daemon=True)
        thread.start()
        generated: list[int] = []
        emitted = ""
        eos = set(_as_list(self.model.generation_config.eos_token_id))
        try:
            while True:
                item = out.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    if is_oom(item):
                        raise OutOfMemoryError(
                            "Out of memory while generating.",
                            hint="Lower max new tokens, shorten the conversation, or unload other models.",
                        ) from item
                    if isinstance(item, ServingError):
                        raise item
                    raise ServingError(f"Generation failed: {item}") from item
                generated.extend(t for t in item if t not in eos)
                text = self.tokenizer.decode(
                    generated, skip_special_tokens=True, clean_up_tokenization_spaces=False
                )
                if text.endswith("\ufffd"):
                    continue
                yield BackendChunk(delta=text[len(emitted) :], tokens=len(generated))
                emitted = text
            reason = "abort" if abort.is_set() else None
            if reason is None:
                reason = "length" if len(generated) >= config.max_new_tokens else "stop"
            text = self.tokenizer.decode(
                generated, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
            yield BackendChunk(
                delta=text[len(emitted) :], tokens=len(generated), finish_reason=reason
            )
        finally:
            abort.set()
            self._aborts.pop(request_id, None)

    def _enter_queue(self) -> None:
        """Count a request in, or refuse it when ``max_waiting`` are already queued."""
        with self._count_lock:
            if self._waiting >= self.max_waiting + 1:  # + the one generating
                raise ServingError(
                    f"The model is busy: {self.max_waiting} requests are already waiting.",
                    hint="Try again in a few seconds.",
                )
            self._waiting += 1

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """Wait (at most ``max_wait_s``) for this request's turn to generate; counts it out."""
        try:
            if not self._lock.acquire(timeout=self.max_wait_s):
                raise ServingError(
                    f"The model is busy: this request waited {self.max_wait_s:.0f} s for its turn.",
                    hint="Try again in a minute, or use the vLLM backend for many users.",
                )
            try:
                yield
            finally:
                self._lock.release()
        finally:
            with self._count_lock:
                self._waiting -= 1

    def abort(self, request_id: str) -> None:
        event = self._aborts.get(request_id)
        if event is not None:
            event.set()

    def shutdown(self) -> None:
        for event in list(self._aborts.values()):
            event.set()
        with self._lock:
            self.model = None
        import gc

        gc.collect()


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
