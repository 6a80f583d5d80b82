"""The training bench's counted matmul work (``bench/flop_count.py``): the CPU flash attention
kernel and the int8 products, which torch's counter does not know, count as their formulas say."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import flop_count


def test_cpu_flash_attention_counts_forward_and_backward() -> None:
    query = torch.randn(1, 9, 48, 64, requires_grad=True)
    key = torch.randn(1, 3, 48, 64, requires_grad=True)
    value = torch.randn(1, 3, 48, 64, requires_grad=True)
    counter = FlopCounterMode(
        display=False, custom_mapping=flop_count.cpu_flash_attention_formulas()
    )
    with counter:
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, is_causal=True, enable_gqa=True
        )
        out.sum().backward()
    counts = counter.get_flop_counts()["Global"]
    aten = torch.ops.aten
    shapes = (query.shape, key.shape, value.shape)
    assert counts[aten._scaled_dot_product_flash_attention_for_cpu] == sdpa_flop_count(*shapes)
    assert counts[aten._scaled_dot_product_flash_attention_for_cpu_backward] == (
        sdpa_backward_flop_count(out.shape, *shapes)
    )


def test_int8_products_count_two_operations_per_multiply_add() -> None:
    a = torch.randint(-127, 128, (40, 64), dtype=torch.int8)
    b = torch.randint(-63, 64, (64, 24), dtype=torch.int8)
    counter = FlopCounterMode(
        display=False, custom_mapping=flop_count.cpu_flash_attention_formulas()
    )
    with counter:
        torch._int_mm(a, b)
    assert counter.get_flop_counts()["Global"][torch.ops.aten._int_mm] == 2 * 40 * 64 * 24
