"""Padding-free packed batches: each sequence attends only to itself, as if it were alone."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from garden.engine.training.packed_attention import (
    PLAIN_KERNELS_BELOW,
    PLAIN_KERNELS_BELOW_WITHOUT_AMX,
    plain_kernels_limit,
    register_packed_attention,
    short_causal_attention,
)


def test_a_packed_row_gives_each_sequence_the_logits_it_has_alone(
    default_model_path: Path,
) -> None:
    name = register_packed_attention()
    model = AutoModelForCausalLM.from_pretrained(
        default_model_path, dtype=torch.float32, attn_implementation=name
    ).eval()
    lengths = [40, 17, 63]
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 40_000, (1, sum(lengths)), generator=generator)
    positions = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    bounds = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    packed_kwargs = {
        "position_ids": positions,
        "cu_seq_lens_q": bounds,
        "cu_seq_lens_k": bounds,
        "max_length_q": max(lengths),
        "max_length_k": max(lengths),
    }
    with torch.no_grad():
        packed = model(input_ids=ids, **packed_kwargs).logits
        alone = torch.cat(
            [
                model(input_ids=ids[:, start:end]).logits
                for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
            ],
            dim=1,
        )
        plain_sdpa = (
            AutoModelForCausalLM.from_pretrained(
                default_model_path, dtype=torch.float32, attn_implementation="sdpa"
            )
            .eval()(input_ids=ids, **packed_kwargs)
            .logits
        )
    assert torch.allclose(packed, alone, atol=1e-4)
    # what plain SDPA did with the same packed row: later sequences saw earlier ones
    assert not torch.allclose(plain_sdpa[:, lengths[0] :], alone[:, lengths[0] :], atol=1e-2)
    with torch.no_grad():  # padded batches and generation take transformers' own SDPA path
        padded = model(input_ids=ids[:, :40].repeat(2, 1)).logits
    assert torch.allclose(padded[0], alone[0, :40], atol=1e-4)


@pytest.mark.parametrize(
    ("dtype", "tolerance"),
    [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)],  # bf16 takes the plain-kernel path
)
def test_a_packed_row_gives_each_parameter_the_gradient_it_has_alone(
    default_model_path: Path, dtype: torch.dtype, tolerance: float
) -> None:
    """The backward through the per-sequence split, which slicing once made slow."""
    name = register_packed_attention()
    model = AutoModelForCausalLM.from_pretrained(
        default_model_path, dtype=dtype, attn_implementation=name
    )
    model.model.layers = model.model.layers[:2]
    lengths = [30, 9, 25]
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 40_000, (1, sum(lengths)), generator=generator)
    bounds = [0, *torch.tensor(lengths).cumsum(0).tolist()]
    weights = [model.model.layers[i].self_attn.k_proj.weight for i in (0, 1)]

    def gradients(loss: torch.Tensor) -> list[torch.Tensor]:
        return [g.clone() for g in torch.autograd.grad(loss, weights)]

    packed = model(
        input_ids=ids,
        position_ids=torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0),
        cu_seq_lens_q=torch.tensor(bounds, dtype=torch.int32),
        cu_seq_lens_k=torch.tensor(bounds, dtype=torch.int32),
        max_length_q=max(lengths),
        max_length_k=max(lengths),
    ).logits
    alone = sum(
        model(input_ids=ids[:, start:end]).logits.square().mean() * (end - start)
        for start, end in itertools.pairwise(bounds)
    )
    assert isinstance(alone, torch.Tensor)
    packed_grads = gradients(packed.square().mean() * packed.shape[1])
    for got, expected in zip(packed_grads, gradients(alone), strict=True):
        assert (got - expected).float().norm() <= tolerance * expected.float().norm()


@pytest.mark.parametrize("kv_heads", [3, 9])
def test_the_plain_kernels_give_sdpas_causal_attention_and_gradients(kv_heads: int) -> None:
    generator = torch.Generator().manual_seed(2)
    query, key, value = (
        torch.randn(1, heads, 45, 64, generator=generator).requires_grad_(True)
        for heads in (9, kv_heads, kv_heads)
    )
    found = short_causal_attention(query, key, value, 0.125)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, scale=0.125, is_causal=True, enable_gqa=kv_heads != 9
    )
    assert torch.allclose(found, expected, atol=1e-5)
    weights = torch.randn(found.shape, generator=generator)
    for got, want in zip(
        torch.autograd.grad((found * weights).sum(), (query, key, value)),
        torch.autograd.grad((expected * weights).sum(), (query, key, value)),
        strict=True,
    ):
        assert torch.allclose(got, want, atol=1e-5)


def test_the_plain_kernels_reach_further_on_avx512_bf16_without_amx() -> None:
    """Measured per class (bench/attention_kernels.py): with AMX flash catches up by 1024
    tokens, on AVX-512 BF16 alone the plain kernels still win there."""
    avx512 = "flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni\n"
    amx = avx512.replace("avx512_vnni", "avx512_vnni amx_bf16 amx_tile")
    assert plain_kernels_limit(avx512) == PLAIN_KERNELS_BELOW_WITHOUT_AMX == 1025
    assert plain_kernels_limit(amx) == PLAIN_KERNELS_BELOW == 640
    assert plain_kernels_limit("flags\t\t: fpu sse2 avx2 fma\n") == PLAIN_KERNELS_BELOW
