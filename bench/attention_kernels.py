"""One decoder layer's causal attention, forward + backward, per sequence length and kernel.

Decides ``plain_kernels_below()`` in ``garden/engine/training/packed_attention.py``: the length
under which a bf16 sequence takes three plain kernels (``short_causal_attention``) instead of
SDPA's flash kernel. It times, for the default model's attention shape (9 query heads, 3 key
heads, head dim 64) and each length:

- ``plain``: ``short_causal_attention`` (``baddbmm`` with a cached mask, ``softmax``, ``bmm``);
- ``flash`` and ``math``: SDPA with only that backend allowed.

Each figure is the median of ``--repeats`` forward + backward passes after two warm-ups, in ms,
with the process's torch threads (2 on the development machines). The kernels of a lesser CPU
class can be emulated: ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` keeps oneDNN's bf16 matmuls off
AMX tiles (the ``avx512-bf16`` class); the JSON's ``emulated_class`` says so. That emulation
is not the class: on an AMX Xeon it put flash ahead from 768 tokens, where a real AVX-512 BF16
EPYC keeps the plain kernels ahead up to 1024 (docs/benchmarks.md, 2026-12-06).

    uv run python bench/attention_kernels.py [--lengths 64,128,...] [--dtypes bfloat16,float32]

The last line is one JSON object: ms per kernel, dtype and length, the length from which flash
wins in bf16 (``bf16_flash_wins_from``), and the machine's conditions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import benchenv

HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64
LENGTHS = (64, 128, 256, 384, 512, 640, 768, 1024, 2048)


def _timed(run: Callable[[], Any], repeats: int) -> float:
    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


def measure(length: int, dtype_name: str, repeats: int) -> dict[str, float]:
    """ms of one forward + backward of each kernel at ``length`` tokens."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from garden.engine.training.packed_attention import short_causal_attention

    dtype = getattr(torch, dtype_name)
    generator = torch.Generator().manual_seed(length)

    def tensor(heads: int) -> Any:
        values = torch.randn(1, heads, length, HEAD_DIM, generator=generator)
        return values.to(dtype).requires_grad_()

    query, key, value = tensor(HEADS), tensor(KV_HEADS), tensor(KV_HEADS)
    upstream = torch.randn(1, HEADS, length, HEAD_DIM, generator=generator).to(dtype)

    def plain() -> None:
        short_causal_attention(query, key, value, None).backward(upstream)

    def sdpa(backend: Any) -> Callable[[], None]:
        def run() -> None:
            with sdpa_kernel(backend):
                out = torch.nn.functional.scaled_dot_product_attention(
                    query, key, value, is_causal=True, enable_gqa=True
                )
            out.backward(upstream)

        return run

    figures = {
        "flash": _timed(sdpa(SDPBackend.FLASH_ATTENTION), repeats),
        "math": _timed(sdpa(SDPBackend.MATH), repeats),
    }
    figures["plain"] = _timed(plain, repeats)
    return figures


def flash_wins_from(per_length: dict[int, dict[str, float]]) -> int | None:
    """The shortest length from which flash beats the plain kernels at every longer length."""
    winning = None
    for length in sorted(per_length, reverse=True):
        figures = per_length[length]
        if figures["flash"] < figures["plain"]:
            winning = length
        else:
            break
    return winning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    before = benchenv.load_now()
    import torch

    from garden.engine.training import packed_attention

    lengths = [int(length) for length in args.lengths.split(",")]
    threshold = packed_attention.plain_kernels_below()
    # The plain kernels' causal mask is cached at the threshold's size: time them beyond it too.
    packed_attention.plain_kernels_below = lambda: max(lengths) + 1  # type: ignore[method-assign]
    packed_attention._causal_mask.cache_clear()
    results: dict[str, dict[int, dict[str, float]]] = {}
    for dtype_name in args.dtypes.split(","):
        results[dtype_name] = {}
        for length in lengths:
            figures = measure(length, dtype_name, args.repeats)
            results[dtype_name][length] = figures
            print(
                f"{dtype_name:9} {length:5d} tokens  "
                + "  ".join(f"{name} {ms:8.2f} ms" for name, ms in sorted(figures.items())),
                flush=True,
            )
    summary = {
        "bench": "attention_kernels",
        "torch_threads": torch.get_num_threads(),
        "threshold_in_code": threshold,
        "ms": results,
        "bf16_flash_wins_from": flash_wins_from(results.get("bfloat16", {})),
        **benchenv.conditions(before),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
