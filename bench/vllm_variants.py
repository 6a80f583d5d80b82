"""vLLM start-up variants on the default model: cold start and 32-stream throughput.

Each variant runs in a fresh interpreter (so the cold start includes every import): vLLM's
``AsyncLLM`` (engine core in a second, spawned process) or an ``LLMEngine`` stepped in the same
process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, what ``garden/engine/serving/vllm_host.py``
does), each with LoRA layers off or on. Then the same 32 chat prompts × 64 greedy tokens, EOS
ignored. The last line is one JSON object of the figures (docs/benchmarks.md).

    uv run python bench/vllm_variants.py [--variants async,inproc,inproc-lora16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import benchenv

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("async", "async-lora64", "inproc", "inproc-lora64", "inproc-lora16")

ONE_VARIANT = r"""
import asyncio, json, os, sys, time
t0 = time.perf_counter()
variant = sys.argv[1]
inproc = variant.startswith("inproc")
rank = int(variant.split("lora")[1]) if "lora" in variant else 0
if inproc:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def main():
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    from garden.models import prepare_default_model

    model = str(prepare_default_model())
    tokenizer = AutoTokenizer.from_pretrained(model)
    ids = []
    for i in range(32):
        chat = [{"role": "user", "content": f"Tell me something about the number {i}."}]
        out = tokenizer.apply_chat_template(chat, add_generation_prompt=True)
        ids.append(list(out["input_ids"] if hasattr(out, "keys") else out))
    kwargs = dict(
        model=model, enforce_eager=True, max_num_seqs=256, disable_log_stats=True,
        enable_prefix_caching=True,
        distributed_executor_backend="vllm.v1.executor.uniproc_executor.UniProcExecutor",
    )
    if rank:
        kwargs.update(enable_lora=True, max_lora_rank=rank, max_loras=4)
    params = SamplingParams(max_tokens=64, temperature=0.0, ignore_eos=True)
    warm = SamplingParams(max_tokens=2)
    if inproc:
        from vllm.engine.arg_utils import EngineArgs
        from vllm.v1.engine.llm_engine import LLMEngine

        engine = LLMEngine.from_engine_args(EngineArgs(**kwargs))
        engine.add_request("warm", {"prompt_token_ids": [1, 2, 3]}, warm)
        while engine.has_unfinished_requests():
            engine.step()
        cold = time.perf_counter() - t0
        start = time.perf_counter()
        for i, prompt in enumerate(ids):
            engine.add_request(str(i), {"prompt_token_ids": prompt}, params)
        made = 0
        while engine.has_unfinished_requests():
            made += sum(len(o.outputs[0].token_ids) for o in engine.step() if o.finished)
        wall = time.perf_counter() - start
    else:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        async def run():
            llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
            async for _ in llm.generate({"prompt_token_ids": [1, 2, 3]}, warm, "warm"):
                pass
            cold = time.perf_counter() - t0

            async def one(i, prompt):
                last = None
                async for out in llm.generate({"prompt_token_ids": prompt}, params, str(i)):
                    last = out
                return len(last.outputs[0].token_ids)

            start = time.perf_counter()
            counts = await asyncio.gather(*(one(i, p) for i, p in enumerate(ids)))
            wall = time.perf_counter() - start
            llm.shutdown()
            return cold, sum(counts), wall

        cold, made, wall = asyncio.run(run())
    print(json.dumps({"cold_start_s": round(cold, 1), "tok_s": round(made / wall, 1)}), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
"""


def run_variant(variant: str, script: Path) -> dict[str, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    out = subprocess.run(
        [sys.executable, str(script), variant],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{variant} failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    load_before = benchenv.load_now()
    script = Path(os.environ.get("TMPDIR", "/tmp")) / f"garden_vllm_variant_{os.getpid()}.py"
    script.write_text(ONE_VARIANT, encoding="utf-8")
    figures: dict[str, dict[str, float]] = {}
    try:
        for variant in args.variants.split(","):
            started = time.perf_counter()
            figures[variant] = run_variant(variant, script)
            print(
                f"{variant:16} cold start {figures[variant]['cold_start_s']:5.1f} s   "
                f"32 streams {figures[variant]['tok_s']:6.1f} tok/s   "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    finally:
        script.unlink(missing_ok=True)
    print(json.dumps({"variants": figures, **benchenv.conditions(load_before)}))


if __name__ == "__main__":
    main()
