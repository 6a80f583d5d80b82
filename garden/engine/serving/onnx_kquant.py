"""onnxruntime-genai's model builder with its k-quant step spread over the CPU's cores.

The builder's ``k_quant_mixed`` recipe quantizes each weight with onnxruntime's
``quant_tensor_k_quant_cpu``: a numpy search of 20 candidate scales for every block of 32
values, on one thread. For the default model that was 78 % of the build in a profile on two
cores. Each block is quantized independently of every other, so this runner hands the
library's own function cache-sized slices of blocks on a thread pool (numpy releases the GIL in
its loops) and joins the results: the same bytes, 2-3x sooner on two cores.

Run as ``python -m garden.engine.serving.onnx_kquant <the builder's arguments>``, with
``--merge-adapter PATH`` to build the copy of a LoRA run: its adapter merged into the base first.
"""

from __future__ import annotations

import runpy
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from onnxruntime.quantization.neural_compressor import weight_only

from garden.engine.export.merge import save_merged_adapter
from garden.engine.serving.parallel import usable_cpus

# 4,096 blocks of 32 values: each temporary is 512 KB, which stays in a core's L2 cache.
BLOCKS_PER_SLICE = 4096


def parallel_k_quant(
    data: np.ndarray, num_bits: int = 4, group_size: int = 32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``quant_tensor_k_quant_cpu``'s result for ``data``, computed slice by slice in threads."""
    blocks = np.reshape(data, (-1, group_size)).astype(np.float32)
    slices = [blocks[i : i + BLOCKS_PER_SLICE] for i in range(0, len(blocks), BLOCKS_PER_SLICE)]
    with ThreadPoolExecutor(max_workers=min(usable_cpus(), len(slices))) as pool:
        parts = list(
            pool.map(
                lambda part: weight_only.quant_tensor_k_quant_cpu(part, num_bits, group_size),
                slices,
            )
        )
    q_weight, scale, zero_point = (np.concatenate(pieces) for pieces in zip(*parts, strict=True))
    return q_weight, scale, zero_point


def merge_first(arguments: list[str]) -> list[str]:
    """The builder's arguments, its input made a merged copy of the LoRA run named by
    ``--merge-adapter PATH`` (written under the builder's ``-c`` cache folder), if any."""
    if "--merge-adapter" not in arguments:
        return arguments
    at = arguments.index("--merge-adapter")
    adapter = Path(arguments[at + 1])
    rest = arguments[:at] + arguments[at + 2 :]
    source, cache = rest.index("-i") + 1, rest.index("-c") + 1
    merged = Path(rest[cache]) / "merged"
    save_merged_adapter(Path(rest[source]), adapter, merged)
    rest[source] = str(merged)
    return rest


def main(arguments: list[str]) -> None:
    arguments = merge_first(arguments)
    # The builder calls the "cuda" entry, which tries cupy and falls back to the numpy search.
    weight_only.quant_tensor_k_quant_cuda = parallel_k_quant
    sys.argv = ["onnxruntime_genai.models.builder", *arguments]
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
