"""One chat stream of a fine-tuned LoRA run: its own int4 copy against the backends that apply
its adapter, side by side in one run.

``auto`` answers a LoRA run from vLLM (or transformers) with the adapter applied until the run's
int4 copy (its adapter merged into the base, built in the background on its first answer) is
loaded. This script answers the same greedy question (EOS ignored, so each makes the same
number of tokens) from: transformers with the adapter, vLLM with LoRA layers, the run's int4
copy, and the base model's int4 copy (the speed a run's copy should reach). It also times the
run copy's build, in the foreground, and asks each the run's own question once, greedily, to
show what each answers.

    uv run python bench/run_chat.py --run RUN_FOLDER [--tokens 128] [--question "…"]

RUN_FOLDER is a fine-tuned run (``storage/models/finetuned/<run>``, holding ``adapter/``). The
copies are built in a throw-away models folder. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import benchenv

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SPEED_QUESTION = [{"role": "user", "content": "Describe a small garden in spring."}]


def one_stream(backend: Any, prompt: list[int], tokens: int, adapter: Any) -> dict[str, Any]:
    """One greedy answer of ``tokens`` tokens (EOS ignored): its first token and decode speed."""
    from garden.engine.serving import GenerationConfig
    from garden.engine.serving.types import GenerationRequest

    config = GenerationConfig(temperature=0, max_new_tokens=tokens, ignore_eos=True)
    request = GenerationRequest(prompt, config, f"bench-{time.monotonic_ns()}", adapter)
    start = time.perf_counter()
    first: float | None = None
    count = 0
    for chunk in backend.stream(request):
        if chunk.tokens and first is None:
            first = time.perf_counter() - start
        count = max(count, chunk.tokens)
    total = time.perf_counter() - start
    decode = total - (first or 0)
    return {
        "tokens": count,
        "ttft_s": round(first or 0, 3),
        "decode_tok_s": round((count - 1) / decode, 1) if decode > 0 else None,
    }


def answer_text(backend: Any, prompt: list[int], adapter: Any) -> str:
    from garden.engine.serving import GenerationConfig
    from garden.engine.serving.types import GenerationRequest

    config = GenerationConfig(temperature=0, max_new_tokens=48)
    request = GenerationRequest(prompt, config, f"bench-{time.monotonic_ns()}", adapter)
    return "".join(chunk.delta for chunk in backend.stream(request)).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a fine-tuned LoRA run's folder")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--question", default="What is the signature plant of the Moonwell Garden?")
    args = parser.parse_args()
    load_before = benchenv.load_now()

    from garden.config import Settings
    from garden.engine.serving import ChatEngine
    from garden.engine.serving.onnx_backend import OnnxBackend
    from garden.engine.serving.targets import adapter_base, adapter_rank, fitting_lora_rank

    adapter_dir = (args.run / "adapter").resolve()
    base = adapter_base(adapter_dir)
    if base is None or not Path(base).is_dir():
        raise SystemExit(f"the base model of {args.run} is not a local folder: {base}")
    scratch = Path(tempfile.mkdtemp(prefix="run-chat-"))
    settings = Settings(_env_file=None, storage_root=scratch, models_dir=scratch / "models")
    rank = adapter_rank(adapter_dir)
    results: dict[str, Any] = {}
    answers: dict[str, str] = {}
    try:
        transformers = ChatEngine(base, "transformers", settings=settings).load(wait=True)
        lora = transformers.adapter(adapter_dir)
        speed = transformers.build_prompt(SPEED_QUESTION)
        asked = transformers.build_prompt([{"role": "user", "content": args.question}])

        def measure(name: str, backend: Any, adapter: Any) -> None:
            """Its first-call costs paid (an adapter attached), then the timed stream and the
            answer to the run's question."""
            one_stream(backend, speed, 8, adapter)
            results[name] = one_stream(backend, speed, args.tokens, adapter)
            answers[name] = answer_text(backend, asked, adapter)

        measure("transformers", transformers._backend, lora)
        transformers.unload()

        start = time.perf_counter()
        run_copy = OnnxBackend(base, settings, adapter_path=str(adapter_dir))
        run_copy.start()
        build_s = round(time.perf_counter() - start, 1)
        measure("run_int4", run_copy, lora)
        run_copy.shutdown()

        base_copy = OnnxBackend(base, settings)
        base_copy.start()
        measure("base_int4", base_copy, None)
        base_copy.shutdown()

        vllm = ChatEngine(base, "vllm", settings=settings, lora_rank=fitting_lora_rank(rank))
        vllm.load(wait=True, timeout=900)
        vllm.wait_loaded(900)
        measure("vllm_lora", vllm._backend, vllm.adapter(adapter_dir))
        vllm.unload()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    run_speed = results["run_int4"]["decode_tok_s"] or 0
    for name, figures in results.items():
        print(f"{name:13} {figures['decode_tok_s']:>7} tok/s, first token {figures['ttft_s']} s")
    for name, text in answers.items():
        print(f"{name:13} {text[:100]!r}")
    ratios = {
        f"run_int4_over_{name}": round(run_speed / figures["decode_tok_s"], 2)
        for name, figures in results.items()
        if name != "run_int4" and figures["decode_tok_s"]
    }
    print(f"the run's int4 copy built in {build_s} s; {ratios}")
    figures = {
        "bench": "run_chat",
        "run": args.run.name,
        "rank": rank,
        "tokens": args.tokens,
        "build_s": build_s,
        "streams": results,
        "answers": answers,
        **ratios,
        **benchenv.conditions(load_before),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
