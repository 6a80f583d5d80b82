"""Padding-free packed batches: each sequence attends only to itself, as if it were alone."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from garden.engine.training.packed_attention import register_packed_attention


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
