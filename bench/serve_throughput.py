"""Serving throughput, side by side in one run, on the embedded default model.

For every chat backend (``onnx``: the int4 ONNX copy, ``transformers``, ``vllm``): one stream of
``--single-tokens`` greedy tokens (decode tok/s after the first token, and TTFT), then the same
32 chat prompts × 64 new tokens at once (EOS ignored, so every path makes the same tokens).
Our vLLM path runs as ``auto`` serves a base model (no LoRA layers); ``vllm_lora_tok_s`` is the
same 32 streams on an engine started with LoRA. Also (d) vLLM's AsyncLLM called directly with
the same engine arguments, (c) plain batched
``transformers.generate`` as the baseline, the cold start of our vLLM path (fresh process,
imports included), TTFT (p50/p95) of 8 concurrent vLLM streams, and llama.cpp's figures on the
shipped GGUF when ``LLAMA_CPP_BIN`` is set. The last line is one JSON object of the figures.

    uv run python bench/serve_throughput.py [--prompts 32] [--tokens 64] [--skip-direct]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import benchenv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TOPICS = [
    "gardens",
    "rivers",
    "the moon",
    "bread",
    "bicycles",
    "owls",
    "libraries",
    "rain",
    "mountains",
    "tea",
    "clocks",
    "bees",
    "lighthouses",
    "maps",
    "violins",
    "deserts",
]


def prompts(n: int) -> list[list[dict[str, str]]]:
    kinds = ["Write a short story about {}.", "Explain how {} work, simply."]
    return [
        [{"role": "user", "content": kinds[i % 2].format(TOPICS[i % len(TOPICS)])}]
        for i in range(n)
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run_engine(engine, chats, config) -> tuple[float, int, list[float]]:
    """All chats at once, one thread each; returns (wall seconds, tokens, ttfts)."""
    results: list[tuple[int, float | None]] = []
    lock = threading.Lock()

    def one(messages) -> None:
        answer = engine.chat(messages, config)
        with lock:
            results.append((answer.stats.tokens, answer.stats.ttft_s))

    threads = [threading.Thread(target=one, args=(m,)) for m in chats]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return wall, sum(t for t, _ in results), [f for _, f in results if f is not None]


def single_stream(engine, tokens: int) -> tuple[float, float]:
    """One greedy answer of exactly ``tokens`` tokens: (decode tok/s after the first, TTFT s)."""
    from garden.engine.serving import GenerationConfig

    config = GenerationConfig(temperature=0.0, max_new_tokens=tokens, ignore_eos=True)
    stats = engine.chat(prompts(1)[0], config).stats
    decode_s = stats.duration_s - stats.ttft_s
    return round((stats.tokens - 1) / decode_s, 1), round(stats.ttft_s, 3)


def measure_backend(name: str, engine, chats, config, tokens: int, figures: dict) -> None:
    """Single-stream decode and TTFT, then all ``chats`` at once, into ``figures``."""
    from garden.engine.serving import GenerationConfig

    run_engine(engine, chats[:1], GenerationConfig(temperature=0.0, max_new_tokens=4))
    decode, ttft = single_stream(engine, tokens)
    figures[f"{name}_single_decode_tok_s"] = decode
    figures[f"{name}_single_ttft_s"] = ttft
    print(f"{name}: one stream decodes {decode} tok/s, TTFT {ttft} s", flush=True)
    wall, made, _ = run_engine(engine, chats, config)
    figures[f"{name}_tok_s"] = round(made / wall, 1)
    print(
        f"{name}: {len(chats)} streams, {made} tokens in {wall:.2f} s = {figures[f'{name}_tok_s']} tok/s",
        flush=True,
    )


def direct_vllm(
    model_path: str, prompt_ids: list[list[int]], tokens: int, options: dict
) -> tuple[float, int]:
    """vLLM's AsyncLLM with the same engine arguments as our wrapper, no wrapper at all."""
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    from garden.engine.serving.vllm import _engine_threads

    async def main() -> tuple[float, int]:
        with _engine_threads("cpu"):  # the same thread setting as our wrapper
            llm = AsyncLLM.from_engine_args(AsyncEngineArgs(model=model_path, **options))
        params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)

        async def one(i: int, ids: list[int]) -> int:
            count = 0
            async for out in llm.generate({"prompt_token_ids": ids}, params, f"d{i}"):
                count = len(out.outputs[0].token_ids)
            return count

        await one(-1, prompt_ids[0][:4])
        start = time.perf_counter()
        counts = await asyncio.gather(*(one(i, ids) for i, ids in enumerate(prompt_ids)))
        wall = time.perf_counter() - start
        llm.shutdown()
        return wall, sum(counts)

    return asyncio.run(main())


def baseline_generate(
    model_path: str, prompt_ids: list[list[int]], tokens: int
) -> tuple[float, int]:
    """Plain batched ``generate`` (left padding, greedy, same dtype choice as our backend)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from garden.engine.serving.hf import pick_dtype

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=pick_dtype("cpu")).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p) for p in prompt_ids)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
    with torch.inference_mode():
        model.generate(input_ids=ids[:1, -4:], max_new_tokens=2, do_sample=False, pad_token_id=pad)
        start = time.perf_counter()
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=pad,
        )
        wall = time.perf_counter() - start
    return wall, int((out.shape[1] - width) * out.shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8, help="concurrent streams for TTFT")
    parser.add_argument("--skip-direct", action="store_true", help="skip the direct-vLLM run")
    parser.add_argument(
        "--hf-prompts",
        type=int,
        default=None,
        help="prompts for our transformers path (it answers one at a time; default: all)",
    )
    parser.add_argument(
        "--single-tokens", type=int, default=128, help="tokens of the single-stream answer"
    )
    args = parser.parse_args()
    load_before = benchenv.load_now()

    from garden.engine.serving import GenerationConfig, get_engine, shutdown_all
    from garden.engine.serving.vllm import UNIPROC_EXECUTOR
    from garden.models import prepare_default_model

    model_path = str(prepare_default_model())
    chats = prompts(args.prompts)
    config = GenerationConfig(temperature=0.0, max_new_tokens=args.tokens, ignore_eos=True)
    figures: dict[str, float | None] = {}

    print(f"model {model_path}; {args.prompts} prompts × {args.tokens} new tokens", flush=True)
    start = time.perf_counter()
    # What ``auto`` serves the base model with: vLLM without LoRA layers (they halve batched
    # throughput); a LoRA-enabled engine is measured below.
    engine = get_engine(model_path, "vllm", vllm_options={"enable_lora": False})
    engine.wait_loaded(timeout=900)
    figures["cold_start_s"] = round(time.perf_counter() - start, 2)
    print(
        f"(a) our vLLM path: cold start {figures['cold_start_s']} s (fresh process, imports included)",
        flush=True,
    )
    prompt_ids = [engine.build_prompt(c) for c in chats]
    measure_backend("vllm", engine, chats, config, args.single_tokens, figures)
    _, _, ttfts = run_engine(engine, chats[: args.streams], config)
    figures["ttft_p50_s"] = round(statistics.median(ttfts), 3)
    figures["ttft_p95_s"] = round(percentile(ttfts, 0.95), 3)
    print(
        f"    TTFT over {args.streams} concurrent streams: p50 {figures['ttft_p50_s']} s, p95 {figures['ttft_p95_s']} s",
        flush=True,
    )
    options = {
        "enforce_eager": True,
        "disable_log_stats": True,
        "enable_prefix_caching": True,
        "max_num_seqs": engine.settings.vllm_max_num_seqs,
        "distributed_executor_backend": UNIPROC_EXECUTOR,
    }
    shutdown_all()

    # The int4 copy next, in a process that has not yet run transformers or the other vLLM
    # engines (in the app it answers single streams from the start).
    start = time.perf_counter()
    engine = get_engine(model_path, "onnx")
    engine.wait_ready(timeout=900)
    figures["onnx_load_s"] = round(time.perf_counter() - start, 2)
    print(f"onnx: loaded in {figures['onnx_load_s']} s (int4 copy built when missing)", flush=True)
    measure_backend("onnx", engine, chats, config, args.single_tokens, figures)
    shutdown_all()

    engine = get_engine(model_path, "vllm")  # LoRA layers on, as for fine-tuned runs' adapters
    engine.wait_loaded(timeout=900)
    wall, made, _ = run_engine(engine, chats, config)
    figures["vllm_lora_tok_s"] = round(made / wall, 1)
    print(f"(a') our vLLM path with LoRA enabled: {figures['vllm_lora_tok_s']} tok/s", flush=True)
    shutdown_all()

    if not args.skip_direct:
        wall, tokens = direct_vllm(model_path, prompt_ids, args.tokens, options)
        direct = tokens / wall
        figures["direct_vllm_tok_s"] = round(direct, 1)
        figures["wrapper_overhead"] = round(1 - figures["vllm_tok_s"] / direct, 3)
        print(
            f"(d) vLLM directly: {tokens} tokens in {wall:.2f} s = {direct:.1f} tok/s; "
            f"wrapper overhead {figures['wrapper_overhead'] * 100:.1f} %",
            flush=True,
        )
    else:
        figures["wrapper_overhead"] = None

    engine = get_engine(model_path, "transformers")
    engine.wait_ready(timeout=300)
    hf_chats = chats[: args.hf_prompts or len(chats)]
    measure_backend("transformers", engine, hf_chats, config, args.single_tokens, figures)
    shutdown_all()

    wall, tokens = baseline_generate(model_path, prompt_ids, args.tokens)
    figures["baseline_tok_s"] = round(tokens / wall, 1)
    print(
        f"(c) plain batched transformers.generate: {tokens} tokens in {wall:.2f} s = {figures['baseline_tok_s']} tok/s",
        flush=True,
    )
    figures["ratio_vllm_vs_baseline"] = round(figures["vllm_tok_s"] / figures["baseline_tok_s"], 2)
    print(
        f"ratio vLLM path / baseline: {figures['ratio_vllm_vs_baseline']}×  "
        f"(target ≥2×); wrapper overhead target ≤10 %; cold start target ≤30 s",
        flush=True,
    )
    keys = [
        "onnx_single_decode_tok_s",
        "onnx_single_ttft_s",
        "onnx_tok_s",
        "onnx_load_s",
        "vllm_single_decode_tok_s",
        "vllm_single_ttft_s",
        "transformers_single_decode_tok_s",
        "transformers_single_ttft_s",
        "vllm_tok_s",
        "vllm_lora_tok_s",
        "transformers_tok_s",
        "baseline_tok_s",
        "ratio_vllm_vs_baseline",
        "wrapper_overhead",
        "cold_start_s",
        "ttft_p50_s",
        "ttft_p95_s",
    ]
    line = {key: figures.get(key) for key in keys}
    line["direct_vllm_tok_s"] = figures.get("direct_vllm_tok_s")
    from garden.models import bundled_gguf_path

    llama = benchenv.llama_cpp_figures(bundled_gguf_path(), tokens=args.tokens)
    print(f"llama.cpp on the shipped GGUF: {llama}", flush=True)
    print(json.dumps({**line, **llama, **benchenv.conditions(load_before)}))


if __name__ == "__main__":
    main()
