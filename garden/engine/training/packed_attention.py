"""Causal attention computed per packed sequence, for padding-free training with SDPA.

TRL's padding-free collator concatenates a batch into one row and passes the sequence
boundaries (``cu_seq_lens_q``), which only flash-attention-2 reads. Transformers' SDPA attention
ignores them and attends causally over the whole row: each sequence also sees the ones packed
before it, and on a CPU that was over half of a training step (docs/benchmarks.md). This
attention runs SDPA's causal kernel on each sequence alone, so every sequence sees only itself
and the cost is the sum of the squared lengths instead of the square of their sum. Anything
else (padded batches, generation with a KV cache) goes to transformers' own SDPA attention
unchanged.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

from garden.engine.cpu_flags import cpu_flags, parse_flags

NAME = "garden_packed_sdpa"
# bf16 sequences shorter than ``plain_kernels_below()`` run in three plain kernels, longer ones
# and fp32 in SDPA's flash kernel. Measured fwd+bwd per layer (bench/attention_kernels.py): on a
# 2-core AMX Xeon, in bf16 the plain kernels take 0.4-0.6x the flash kernel's time up to 512
# tokens, tie at 1024 and lose at 2048; on a 2-core AVX-512 BF16 EPYC without AMX they take
# 0.3-0.8x flash's time at every length up to 1024 and lose at 2048. In fp32 flash ties or wins
# at every length, and SDPA's math path loses to one or the other everywhere.
PLAIN_KERNELS_BELOW = 640  # tokens, where the CPU has AMX
PLAIN_KERNELS_BELOW_WITHOUT_AMX = 1025  # tokens, AVX-512 BF16 without AMX


def plain_kernels_limit(cpuinfo: str) -> int:
    """The length from which bf16 sequences take the flash kernel, on the CPU ``cpuinfo``
    describes (``/proc/cpuinfo``'s text)."""
    return limit_for_flags(parse_flags(cpuinfo))


def limit_for_flags(flags: frozenset[str]) -> int:
    """``plain_kernels_limit`` of a CPU with these flags."""
    if "avx512_bf16" in flags and "amx_bf16" not in flags:
        return PLAIN_KERNELS_BELOW_WITHOUT_AMX
    return PLAIN_KERNELS_BELOW


@functools.cache
def plain_kernels_below() -> int:
    """``plain_kernels_limit`` of this machine's CPU."""
    return limit_for_flags(cpu_flags())


def packed_sdpa_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: Any = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if cu_seq_lens_q is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    bounds: list[int] = cu_seq_lens_q.tolist()
    if bounds[0] != 0 or bounds[-1] != query.shape[2]:
        bounds = [0, *bounds, query.shape[2]]
    lengths = [end - start for start, end in itertools.pairwise(bounds)]
    # One split per tensor, not a slice per sequence: the backward of each slice fills a zero
    # tensor the size of the whole row, so slicing cost a fill and an add per sequence and layer.
    pieces = zip(
        torch.split(query, lengths, dim=2),
        torch.split(key, lengths, dim=2),
        torch.split(value, lengths, dim=2),
        strict=True,
    )
    plain_kernels_fit = (
        query.dtype == torch.bfloat16 and query.device.type == "cpu" and dropout == 0.0
    )
    parts = []
    for length, (q, k, v) in zip(lengths, pieces, strict=True):
        if length == 0:
            continue
        if plain_kernels_fit and length < plain_kernels_below():
            parts.append(short_causal_attention(q, k, v, scaling))
            continue
        parts.append(
            torch.nn.functional.scaled_dot_product_attention(
                q, k, v, dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=gqa
            )
        )
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


@functools.lru_cache(maxsize=4)
def _causal_mask(dtype: Any) -> Any:
    """Additive causal mask of the longest plain-kernel sequence; its top-left n x n corner is
    the mask of n tokens. One per dtype keeps the cache at a few megabytes."""
    import torch

    size = plain_kernels_below()
    blocked = torch.ones(size, size, dtype=torch.bool).triu(1)
    return torch.zeros(size, size, dtype=dtype).masked_fill(blocked, float("-inf"))


def short_causal_attention(query: Any, key: Any, value: Any, scaling: float | None) -> Any:
    """Causal attention of one sequence, ``[1, heads, n, dim]`` with n < ``plain_kernels_below()``,
    in three kernels.

    SDPA's math path runs about twenty small ops per sequence (scaling q and k, repeating the
    key heads, a NaN-safe softmax), and at a few dozen tokens those ops, not the arithmetic,
    are the cost. The query heads that share a key head are stacked instead of repeating keys.
    """
    import torch

    _, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    scale = scaling if scaling is not None else 1 / math.sqrt(dim)
    stacked = query[0].reshape(kv_heads, groups * length, dim)
    mask = _causal_mask(query.dtype)[:length, :length].repeat(groups, 1)
    scores = torch.baddbmm(mask, stacked, key[0].transpose(1, 2), alpha=scale)
    weights = torch.softmax(scores, dim=-1)
    return torch.bmm(weights, value[0]).view(1, heads, length, dim)


def register_packed_attention() -> str:
    """Make ``NAME`` a valid ``attn_implementation`` (with SDPA's masks); returns ``NAME``.

    torch.compile does not trace into it (its per-sequence loop reads the boundaries as Python
    numbers, so every new batch layout would recompile): compiled layers call it eagerly."""
    import torch
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, torch.compiler.disable(packed_sdpa_attention))
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
