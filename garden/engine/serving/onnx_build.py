"""The int4 ONNX copy of a base model (or of a LoRA run, merged) that the ``onnx`` backend serves.

onnxruntime-genai's model builder turns a local Hugging Face folder into an ONNX graph with
weight-only ``MatMulNBits`` offline (run through ``onnx_kquant``, which spreads its k-quant
search over the cores: 53 instead of 78 s on a slow 2-core host, the same bytes): 4-bit k-quant
blocks for most matmuls and 8-bit ones for the (tied) lm_head and the most
quantization-sensitive layers, llama.cpp's "mixed" recipe. Plain 4-bit round-to-nearest
everywhere decoded faster (184 vs 143 tok/s on two cores) but changed the default model's greedy
answers (it did not stop after "Paris."); on the AVX2-only class ``algo_config=rtn`` was
1.25-1.8x faster but still not the model's answer, so both classes get this recipe
(docs/benchmarks.md, "one stream on AVX2"). The copy is cached under ``MODELS_DIR/onnx-int4/``
keyed by the base folder and its weights, built once in a subprocess (so the builder's memory
and log noise stay out of the app) and renamed into place when complete, so an interrupted build
is never served.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from garden.config import Settings
from garden.engine.export.gguf import byte_level_tokenizer
from garden.engine.serving.targets import adapter_run_name
from garden.engine.training.procs import die_with_parent
from garden.errors import ModelLoadError

log = logging.getLogger(__name__)

CACHE_FOLDER = "onnx-int4"
COPY_VERSION = 3  # bumped when a copy built by older code must be rebuilt
BUILD_TIMEOUT_S = 900
# The builder runs in the background (the auto backend's warm-up) while another backend answers:
# at the lowest CPU priority, so a live answer keeps nearly all of its speed.
BUILD_NICE = 19
# Block-wise int4/int8 weights with int8 activations in the matmuls (the fastest CPU kernels).
BUILDER_OPTIONS = (
    "-p",
    "int4",
    "-e",
    "cpu",
    "--extra_options",
    "accuracy_level=4",
    "algo_config=k_quant_mixed",
)
_build_lock = threading.Lock()


def _background_process() -> None:
    """In the builder before it runs: it ends with the app (never outlives it) and yields the
    CPU to everything else."""
    die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(BUILD_NICE)


def onnx_installed() -> bool:
    return importlib.util.find_spec("onnxruntime_genai") is not None


def onnx_copy_path(
    base_path: str | Path, settings: Settings, adapter_path: str | Path | None = None
) -> Path:
    """Where the int4 copy of ``base_path`` lives (whether or not it is built yet); with
    ``adapter_path``, the copy of that LoRA run, merged."""
    base = Path(base_path).resolve()
    fingerprint = hashlib.sha256(f"{base}:{COPY_VERSION}".encode())
    folders = [base]
    if adapter_path is not None:  # the base's own key stays as it was before run copies
        adapter = Path(adapter_path).resolve()
        fingerprint.update(f"adapter:{adapter}".encode())
        folders.append(adapter)
    for folder in folders:
        for weights in sorted(folder.glob("*.safetensors")):
            stat = weights.stat()
            fingerprint.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    name = base.name if adapter_path is None else adapter_run_name(Path(adapter_path).resolve())
    return settings.models_path / CACHE_FOLDER / f"{name}-{fingerprint.hexdigest()[:12]}"


def ensure_onnx_copy(
    base_path: str | Path,
    settings: Settings,
    *,
    background: bool = False,
    adapter_path: str | Path | None = None,
) -> Path:
    """The folder of the int4 copy of ``base_path`` (with ``adapter_path``: of that LoRA run,
    its adapter merged first), building it when missing; a ``background`` build (the ``auto``
    backend's warm-up, while another backend answers) runs at the lowest CPU priority, one that
    a person waits for does not."""
    target = onnx_copy_path(base_path, settings, adapter_path)
    merge = [] if adapter_path is None else ["--merge-adapter", str(Path(adapter_path).resolve())]
    with _build_lock:
        if (target / "genai_config.json").is_file():
            return target
        partial = target.with_name(f".partial-{target.name}-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "garden.engine.serving.onnx_kquant",  # the builder, its k-quant on every core
            *merge,
            "-i",
            str(Path(base_path).resolve()),
            "-o",
            str(partial),
            "-c",
            str(partial / "cache"),
            *BUILDER_OPTIONS,
        ]
        log.info("Building the int4 ONNX copy of %s in %s", adapter_path or base_path, target)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=env,
                timeout=BUILD_TIMEOUT_S,
                preexec_fn=_background_process if background else die_with_parent,
            )
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise ModelLoadError(
                f"Building the int4 ONNX copy of {Path(base_path).name} took over "
                f"{BUILD_TIMEOUT_S} s.",
                hint="Use the transformers or vLLM backend, or retry on a less busy machine.",
            ) from exc
        if done.returncode != 0 or not (partial / "genai_config.json").is_file():
            shutil.rmtree(partial, ignore_errors=True)
            log.error("onnxruntime-genai builder failed:\n%s", done.stderr[-4000:])
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelLoadError(
                f"Could not build the int4 ONNX copy of {Path(base_path).name}: {last[:300]}",
                hint="The onnx backend serves llama-style models only; use transformers or vLLM.",
            )
        shutil.rmtree(partial / "cache", ignore_errors=True)
        byte_level_tokenizer(partial)  # else its decoder prints "Ġ" for every space
        try:
            partial.rename(target)
        except OSError:  # another process finished the same copy first
            shutil.rmtree(partial, ignore_errors=True)
            if not (target / "genai_config.json").is_file():
                raise
        return target
