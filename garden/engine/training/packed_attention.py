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

import contextlib
import itertools
from typing import Any

NAME = "garden_packed_sdpa"
MATH_KERNEL_BELOW = 192  # tokens


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
    from torch.nn.attention import SDPBackend, sdpa_kernel

    gqa = getattr(module, "num_key_value_groups", 1) > 1
    bounds: list[int] = cu_seq_lens_q.tolist()
    parts = []
    for start, end in itertools.pairwise(bounds):
        if end <= start:
            continue
        # Short sequences train faster on a CPU with the plain-matmul kernel, whose backward is
        # about twice as fast as the flash kernel's below ~200 tokens.
        short = end - start < MATH_KERNEL_BELOW and query.device.type == "cpu"
        with sdpa_kernel(SDPBackend.MATH) if short else contextlib.nullcontext():
            parts.append(
                torch.nn.functional.scaled_dot_product_attention(
                    query[:, :, start:end],
                    key[:, :, start:end],
                    value[:, :, start:end],
                    dropout_p=dropout,
                    scale=scaling,
                    is_causal=True,
                    enable_gqa=gqa,
                )
            )
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


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
