"""How the chat engine hands answers between backends: vLLM taking over from transformers,
a LoRA-enabled vLLM taking over from one without LoRA layers, and the backend of each answer.

A mixin of :class:`~garden.engine.serving.engine.ChatEngine`, which owns the state declared
below; kept apart so that the engine module stays about loading and chatting.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from garden.config import Settings
from garden.engine.serving.auto import lacks_lora, route
from garden.engine.serving.parallel import ParallelSizes
from garden.engine.serving.targets import VLLM_LORA_RANKS, fitting_lora_rank
from garden.engine.serving.types import Adapter, Backend, EngineStatus
from garden.errors import ServingError

log = logging.getLogger("garden.serving")
# LoRA runs whose int4 copies one engine builds and keeps loaded (about 0.1 GB each for the
# default model); a run beyond them is answered by vLLM or transformers.
MAX_RUN_COPIES = 4


class BackendHandover:
    """The hand-over half of :class:`ChatEngine` (see the module docstring)."""

    settings: Settings
    base_path: str
    model_name: str
    requested: str
    vllm_options: dict[str, Any]
    status: EngineStatus
    _lock: threading.RLock
    _backend: Backend | None
    _spare: Backend | None
    _fast: Backend | None
    _run_copies: dict[str, Backend | None]
    _adapters: dict[str, Adapter]
    _architectures: list[str]
    _inflight: dict[str, Backend]
    _wanted_rank: int
    _lora_upgrade: bool

    def _set(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self.status, key, value)

    def _lora_options(self) -> dict[str, Any]:
        """vLLM's LoRA settings. ``auto`` enables LoRA only once an adapter is wanted, with the
        smallest rank that fits: LoRA layers cost batched throughput even for answers without
        an adapter (32 streams: 491 tok/s without, 346 at rank 16, 198 at rank 64;
        bench/vllm_variants.py). ``vllm`` asked for by name keeps LoRA on at the default rank."""
        ranks = [self._wanted_rank, *(a.rank for a in self._adapters.values())]
        if max(ranks) > 0:
            return {"enable_lora": True, "max_lora_rank": fitting_lora_rank(max(ranks))}
        return {"enable_lora": self.requested == "vllm"}

    def _vllm_backend(self, upgrade: bool = False) -> Any:
        from garden.engine.serving.vllm import VllmBackend
        from garden.engine.serving.vllm_host import WARM_UP_NICE

        options = {
            # auto: vLLM warms up while transformers (or the ONNX copy) answers; it yields to them
            "nice": WARM_UP_NICE if self.requested == "auto" else 0,
            "max_num_seqs": self.settings.vllm_max_num_seqs,
            "gpu_memory_utilization": self.settings.vllm_gpu_memory_utilization,
            "parallel": ParallelSizes.of(self.settings),
            "architectures": self._architectures,
            **self._lora_options(),
            **self.vllm_options,
        }
        if upgrade:
            options.update(self._lora_options(), enable_lora=True)
        return VllmBackend(self.base_path, **options)

    def _launch_vllm(self) -> Any:
        """A vLLM backend whose host is spawned already, or None (then the start reports why)."""
        backend = self._vllm_backend()
        try:
            backend.launch()
        except Exception as exc:
            log.debug("Launching the vLLM host early failed: %s", exc)
            backend.shutdown()
            return None
        return backend

    def _start_vllm(self, upgrade: bool = False, launched: Any = None) -> None:
        """Start vLLM (or finish starting ``launched``) and hand answers over to it; ``upgrade``
        replaces a running vLLM that has no LoRA support by one that has."""
        from garden.engine.serving.vllm import transient_install_error

        t0 = time.time()
        for attempt in (1, 2):
            if self.status.state == "unloaded":  # unloaded (or the app stopping) meanwhile
                if launched is not None:
                    launched.shutdown()
                return
            backend, launched = launched or self._vllm_backend(upgrade), None
            try:
                backend.start()
                break
            except BaseException as exc:
                backend.shutdown()
                if self.status.state == "unloaded":
                    return
                if attempt == 1 and transient_install_error(exc):
                    log.warning("vLLM start hit a half-installed package, retrying: %s", exc)
                    time.sleep(5)
                    continue
                if upgrade:
                    self._lora_upgrade = False
                    message = getattr(exc, "message", exc)
                    self._set(
                        reason=f"vLLM with LoRA failed to start ({message}); adapters use transformers"
                    )
                    return
                self._vllm_failed(exc)
                return
        self._take_over(backend, upgrade, round(time.time() - t0, 2))

    def _take_over(self, backend: Any, upgrade: bool, seconds: float) -> None:
        with self._lock:
            if self.status.state == "unloaded":
                backend.shutdown()
                return
            previous, self._backend = self._backend, backend
            spare = None
            if upgrade or backend.enable_lora:
                spare, self._spare = self._spare, None
                self._lora_upgrade = False
            elif self._adapters and previous is not None:
                # Adapters were asked for while this vLLM (without LoRA) started: keep
                # transformers for them and start one with LoRA.
                self._spare, previous = previous, None
                self._begin_lora_upgrade()
            if upgrade:
                reason = "vLLM with LoRA took over, for the adapters"
            elif previous is not None:
                reason = "vLLM (continuous batching) took over from transformers"
            else:
                reason = "vLLM serves this model"
            self._set(
                state="ready",
                backend="vllm",
                vllm_state="ready",
                error=None,
                reason=reason,
                load_seconds=seconds,
            )
        for old in (previous, spare):
            if old is not None:
                self._retire(old)

    def _begin_lora_upgrade(self) -> None:
        """Start a LoRA-enabled vLLM in the background (once); the caller holds the lock."""
        if self._lora_upgrade:
            return
        self._lora_upgrade = True
        self._set(reason="vLLM restarts with LoRA for the adapter; transformers answers meanwhile")
        threading.Thread(
            target=self._start_vllm, kwargs={"upgrade": True}, name="vllm-lora", daemon=True
        ).start()

    def _answering_backend(
        self, lora: Adapter | None, request_id: str, wanted: str | None = None
    ) -> Backend:
        """The backend for one answer, registered as in flight.

        ``wanted`` (a backend named by the caller, not ``auto``) answers or the answer is
        refused with the reason. Otherwise an adapter answer that lands on a vLLM without LoRA
        support goes to transformers (loaded once, on demand) while a LoRA-enabled vLLM starts
        to take over.
        """
        with self._lock:
            if self.status.state == "unloaded":
                raise ServingError(
                    f"{self.model_name} is not loaded.", hint="Load the model again."
                )
            if wanted not in (None, "auto"):
                backend = self._named_backend(str(wanted), lora)
            else:
                backend = self._auto_backend(lora)
            self._inflight[request_id] = backend
            return backend

    def _auto_backend(self, lora: Adapter | None) -> Backend:
        run_copy = self._run_copy(lora) if lora is not None else None
        backend = route(
            self.requested, self._fast, self._backend, self.status, lora, self._inflight, run_copy
        )
        if backend is None:
            raise ServingError(f"{self.model_name} is not loaded.", hint="Load the model again.")
        if lora is not None and lacks_lora(backend, lora):
            if lora.rank <= VLLM_LORA_RANKS[-1]:  # else transformers serves it for good
                self._begin_lora_upgrade()
            backend = self._spare or self._load_spare()
        return backend

    def _run_copy(self, lora: Adapter) -> Backend | None:
        """The int4 copy of the LoRA run ``lora`` once it is loaded. Its first answer starts
        the copy's build in the background (at most ``MAX_RUN_COPIES`` runs an engine); the
        caller holds the lock."""
        if self.requested != "auto" or not self.settings.onnx_chat_enabled:
            return None
        if lora.path not in self._run_copies and len(self._run_copies) < MAX_RUN_COPIES:
            self._run_copies[lora.path] = None
            self._start_fast(lora)
        return self._run_copies.get(lora.path)

    def _start_fast(self, lora: Adapter | None = None) -> None:
        raise NotImplementedError  # ChatEngine's

    def _named_backend(self, wanted: str, lora: Adapter | None) -> Backend:
        """The engine's ``wanted`` backend for one answer, or a ``ServingError`` saying why it
        cannot answer now; the caller holds the lock."""
        other = "Pick auto (it answers from whichever backend is ready)"
        if lora is not None and wanted == "onnx":
            raise ServingError(
                f"The onnx backend does not apply LoRA adapters ({lora.name}).",
                hint="Pick auto, transformers or vllm for a fine-tuned run.",
            )
        found = [b for b in (self._backend, self._fast, self._spare) if b and b.name == wanted]
        if not found:
            raise ServingError(self._missing(wanted), hint=f"{other}, or ask again later.")
        backend = found[0]
        if lora is not None and lacks_lora(backend, lora):
            if lora.rank <= VLLM_LORA_RANKS[-1]:
                self._begin_lora_upgrade()
                raise ServingError(
                    f"vLLM is restarting with LoRA layers for {lora.name}.",
                    hint=f"Ask again when the status says it took over. {other}.",
                )
            raise ServingError(
                f"vLLM serves LoRA ranks up to {VLLM_LORA_RANKS[-1]}; {lora.name} has rank "
                f"{lora.rank}.",
                hint="Pick transformers (or auto) for this run.",
            )
        return backend

    def _missing(self, wanted: str) -> str:
        """Why ``wanted`` is not serving this engine's model now."""
        status = self.status
        if wanted == "vllm" and status.vllm_state == "starting":
            return f"vLLM is still starting for {self.model_name}."
        if wanted == "vllm" and status.vllm_state == "failed":
            return f"vLLM is not serving {self.model_name}: {status.reason}."
        if wanted == "onnx" and self.requested == "auto":
            return f"The int4 ONNX copy of {self.model_name} is not loaded (yet)."
        return f"The {wanted} backend does not serve {self.model_name} in this engine."

    def _load_spare(self) -> Backend:
        """Transformers beside a vLLM without LoRA, for adapter answers; the caller holds the lock
        (a 135M model loads in about a second)."""
        from garden.engine.serving.hf import TransformersBackend

        backend = TransformersBackend(self.base_path)
        backend.start()
        self._spare = backend
        return backend

    def _vllm_failed(self, exc: BaseException) -> None:
        if self.requested == "auto" and self._backend is not None:
            self._set(
                vllm_state="failed",
                reason=f"vLLM failed to start ({getattr(exc, 'message', exc)}); using transformers",
            )
            return
        raise exc

    def _retire(self, backend: Backend) -> None:
        """Shut a replaced backend down once its in-flight answers have finished."""

        def wait_and_stop() -> None:
            deadline = time.time() + 600
            while time.time() < deadline:
                with self._lock:
                    busy = any(b is backend for b in self._inflight.values())
                if not busy:
                    break
                time.sleep(0.2)
            backend.shutdown()

        threading.Thread(target=wait_and_stop, name="retire-backend", daemon=True).start()
