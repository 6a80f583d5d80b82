"""The ``onnx`` backend: the int4 ONNX copy of a base model on onnxruntime-genai.

Decoding runs in onnxruntime-genai's C++ loop over 4-bit weights, so a single chat stream on a
CPU is several times faster than the bf16 transformers path (docs/benchmarks.md). A copy serves
one model: the base model's copy refuses a request with a LoRA adapter, and the copy of a LoRA
run (built from the run's adapter merged into its base: ``adapter_path``) serves that run's
requests only; until a run's copy is built, the ``auto`` backend sends its answers to
transformers or vLLM (``auto.choose_backend``). Each answer has its own generator, run in the
caller's thread; an abort stops it before the next token.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from garden.config import Settings
from garden.engine.cpu_flags import cpu_flags
from garden.engine.serving.onnx_build import ensure_onnx_copy, onnx_installed
from garden.engine.serving.parallel import usable_cpus
from garden.engine.serving.types import Adapter, BackendChunk, GenerationRequest
from garden.errors import GardenError, ModelLoadError, ServingError

log = logging.getLogger(__name__)


def cpu_has_avx512() -> bool:
    """True when the CPU lists AVX-512 (False where its flags cannot be read)."""
    return "avx512f" in cpu_flags()


class OnnxBackend:
    name = "onnx"

    def __init__(
        self,
        base_path: str,
        settings: Settings,
        *,
        warm_up: bool = False,
        adapter_path: str | None = None,
    ) -> None:
        self.base_path = base_path
        self.adapter_path = adapter_path  # the LoRA run this copy is merged from, if any
        self.settings = settings
        self.warm_up = warm_up  # built behind another backend: the build yields the CPU
        self.max_model_len = 2048
        self._model: Any = None
        self._tokenizer: Any = None
        self._eos: set[int] = set()
        self._vocab_size = 0
        self._aborts: dict[str, threading.Event] = {}

    @classmethod
    def started(cls, base_path: str, settings: Settings) -> OnnxBackend:
        backend = cls(base_path, settings)
        backend.start()
        return backend

    def start(self) -> None:
        if not onnx_installed():
            raise ModelLoadError(
                "The onnx backend needs onnxruntime-genai, which is not installed.",
                hint="Run `uv sync` (it is in the cpu group), or pick transformers or vLLM.",
            )
        import onnxruntime_genai as og

        folder = ensure_onnx_copy(
            self.base_path, self.settings, background=self.warm_up, adapter_path=self.adapter_path
        )
        config = og.Config(str(folder))
        # onnxruntime's own default used one of two cores here (86 vs 143 tok/s): name them all.
        options: dict[str, Any] = {
            "intra_op_num_threads": self.settings.onnx_threads or usable_cpus(),
        }
        if not cpu_has_avx512():
            # On the AVX2 class an idle worker that spins between ops takes a core from the
            # decode loop whenever anything else runs on the two cores: 1.7x tok/s without it
            # on a loaded machine (bench/onnx_variants.py). Unmeasured on AVX-512: kept there.
            options["session.intra_op.allow_spinning"] = "0"
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        try:
            self._model = og.Model(config)
        except Exception as exc:
            raise ModelLoadError(
                f"onnxruntime-genai could not load {folder}: {exc}",
                hint=f"Delete {folder} so that it is rebuilt, or pick transformers or vLLM.",
            ) from exc
        self._tokenizer = og.Tokenizer(self._model)
        model_config = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))[
            "model"
        ]
        eos = model_config.get("eos_token_id")
        self._eos = set(eos if isinstance(eos, list) else [eos])
        self._vocab_size = int(model_config.get("vocab_size") or 0)
        self.max_model_len = int(min(model_config.get("context_length") or 2048, 8192))
        for _ in self._tokens([1, 2, 3], {"max_length": 5, "do_sample": False}, threading.Event()):
            pass  # first-call set-up, not paid by the first answer

    def _search_options(self, request: GenerationRequest) -> dict[str, Any]:
        config = request.config
        total = len(request.prompt_ids) + config.max_new_tokens
        options: dict[str, Any] = {
            "max_length": total,
            "do_sample": not config.greedy,
            "repetition_penalty": config.repetition_penalty,
        }
        if config.ignore_eos:
            options["min_length"] = total
        if not config.greedy:
            options.update(
                temperature=config.temperature,
                top_p=config.top_p,
                top_k=config.top_k or self._vocab_size,
            )
        if config.seed is not None:
            options["random_seed"] = config.seed
        return options

    def _tokens(
        self, prompt_ids: list[int], options: dict[str, Any], abort: threading.Event
    ) -> Iterator[int]:
        import onnxruntime_genai as og

        params = og.GeneratorParams(self._model)
        params.set_search_options(**options)
        generator = og.Generator(self._model, params)
        generator.append_tokens(prompt_ids)
        while not generator.is_done() and not abort.is_set():
            generator.generate_next_token()
            yield int(generator.get_next_tokens()[0])

    def serves(self, adapter: Adapter | None) -> bool:
        """Whether this copy is the model a request with ``adapter`` (None: the base) asks for."""
        if adapter is None or self.adapter_path is None:
            return adapter is None and self.adapter_path is None
        return Path(adapter.path).resolve() == Path(self.adapter_path).resolve()

    def stream(self, request: GenerationRequest) -> Iterator[BackendChunk]:
        if request.adapter is not None and not self.serves(request.adapter):
            raise ServingError(
                f"The onnx backend serves base models only; it cannot apply the LoRA adapter "
                f"{request.adapter.name}.",
                hint="Pick the auto or transformers backend, or chat with the run's merged model.",
            )
        if not self.serves(request.adapter):
            raise ServingError(
                f"This int4 copy is of the LoRA run in {self.adapter_path}, not of its base.",
                hint="Pick the auto backend.",
            )
        if self._model is None:
            raise ServingError("The onnx engine is not running.", hint="Load the model again.")
        abort = self._aborts.setdefault(request.request_id, threading.Event())
        decoder = self._tokenizer.create_stream()
        count = 0
        try:
            for token in self._tokens(request.prompt_ids, self._search_options(request), abort):
                if token in self._eos and not request.config.ignore_eos:
                    break
                count += 1
                yield BackendChunk(delta=decoder.decode(token), tokens=count)
        except GardenError:
            raise
        except Exception as exc:
            raise ServingError(f"onnxruntime-genai could not generate: {exc}") from exc
        finally:
            self._aborts.pop(request.request_id, None)
        if abort.is_set():
            reason = "abort"
        else:
            reason = "length" if count >= request.config.max_new_tokens else "stop"
        yield BackendChunk(delta="", tokens=count, finish_reason=reason)

    def abort(self, request_id: str) -> None:
        self._aborts.get(request_id, threading.Event()).set()

    def shutdown(self) -> None:
        self._model = self._tokenizer = None
        for event in list(self._aborts.values()):
            event.set()


def start_fast_backend(
    base_path: str, settings: Settings, adapter_path: str | None = None
) -> OnnxBackend | None:
    """The ``auto`` backend's single-stream engine for the base model (or for the LoRA run in
    ``adapter_path``), or None when it is off or cannot start."""
    if not settings.onnx_chat_enabled or not onnx_installed():
        return None
    backend = OnnxBackend(base_path, settings, warm_up=True, adapter_path=adapter_path)
    try:
        backend.start()
    except Exception as exc:
        log.warning("The int4 ONNX copy of %s is not used: %s", adapter_path or base_path, exc)
        return None
    return backend
