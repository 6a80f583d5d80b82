"""The first answer's TTFT and tok/s while the ``auto`` backend warms up, and on an idle engine.

On two cores the first answer after picking a model runs while vLLM's host starts and the int4
ONNX copy is built. This script answers the same greedy question (EOS ignored, so both make the
same tokens) on a ready transformers engine twice: idle, then with that warm-up running (the
ONNX builder and a vLLM host launched as ``auto`` launches them, niced unless ``--no-nice``).
The last line is one JSON object with both figures side by side and the load averages; a load
above 0.5 at the start (other work on the machine) makes the figures noisy.

    uv run python bench/first_answer.py [--tokens 64] [--settle 8] [--no-nice]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import benchenv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

QUESTION = [{"role": "user", "content": "Describe a small garden in spring."}]


def answer(engine: Any, tokens: int) -> dict[str, Any]:
    from garden.engine.serving import GenerationConfig

    config = GenerationConfig(temperature=0, max_new_tokens=tokens, ignore_eos=True)
    stats = engine.chat(QUESTION, config).stats
    decode_s = stats.duration_s - (stats.ttft_s or 0)
    return {
        "backend": stats.backend,
        "tokens": stats.tokens,
        "ttft_s": stats.ttft_s,
        "tok_s": stats.tokens_per_second,
        "decode_tok_s": round((stats.tokens - 1) / decode_s, 2) if decode_s > 0 else None,
        "load": benchenv.load_now(),
    }


def start_warm_up(base: Path, nice: bool) -> tuple[Any, Path]:
    """The auto backend's background work, launched as ``auto`` launches it (a background
    build, at ``BUILD_NICE``): the ONNX copy built into a throw-away folder and a vLLM host
    spawned (it imports vLLM and loads the model)."""
    from garden.config import Settings
    from garden.engine.serving import onnx_build, vllm_host
    from garden.engine.serving.vllm import VllmBackend
    from garden.errors import GardenError

    if not nice:
        onnx_build.BUILD_NICE = 0
    scratch = Path(tempfile.mkdtemp(prefix="first-answer-"))
    settings = Settings(_env_file=None, storage_root=scratch, models_dir=scratch / "models")

    def build() -> None:
        with contextlib.suppress(GardenError):  # stopped by stop_builder after the answer
            onnx_build.ensure_onnx_copy(base, settings, background=True)

    builder = threading.Thread(target=build, daemon=True)
    builder.start()
    host = VllmBackend(str(base), enable_lora=False, nice=vllm_host.WARM_UP_NICE if nice else 0)
    host.launch()
    return host, scratch


def stop_builder(scratch: Path) -> None:
    """End this script's own ONNX builder (a child of this process) and remove its folder."""
    import shutil

    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if "onnxruntime_genai.models.builder" in " ".join(child.cmdline()):
                child.terminate()
                child.wait(timeout=10)
        except (psutil.Error, psutil.TimeoutExpired):
            pass
    shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of warm-up first")
    parser.add_argument("--no-nice", action="store_true", help="warm up at normal priority")
    args = parser.parse_args()
    load_before = benchenv.load_now()

    from garden.engine.serving import get_engine, shutdown_all
    from garden.models import prepare_default_model

    base = prepare_default_model()
    engine = get_engine(None, "transformers")
    engine.wait_ready(900)
    answer(engine, 8)  # the engine's own first-call costs, paid before either measurement
    idle = answer(engine, args.tokens)
    host, scratch = start_warm_up(base, nice=not args.no_nice)
    try:
        time.sleep(args.settle)
        busy = answer(engine, args.tokens)
    finally:
        host.shutdown()
        shutdown_all()
        stop_builder(scratch)
    figures = {
        "bench": "first_answer",
        "warm_up_niced": not args.no_nice,
        "idle": idle,
        "warm_up": busy,
        "ttft_ratio": round(busy["ttft_s"] / idle["ttft_s"], 2) if idle["ttft_s"] else None,
        "tok_s_ratio": round(busy["tok_s"] / idle["tok_s"], 2) if idle["tok_s"] else None,
        **benchenv.conditions(load_before),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
