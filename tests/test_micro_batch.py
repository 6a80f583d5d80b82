"""CPU batches split into micro-batches that bound activation memory (same rows per step)."""

from __future__ import annotations

import json
from pathlib import Path

from garden.engine.training.micro_batch import (
    activation_bytes_per_token,
    micro_batch_size,
    model_config,
)


def test_the_default_model_s_cost_per_token_matches_what_was_measured(default_model_path: Path):
    per_token = activation_bytes_per_token(model_config(str(default_model_path)))
    assert 1.1e6 < per_token < 1.4e6  # bench/train_memory.py: ≈1.23 MB a token


def test_micro_batches_divide_the_batch_and_fit_the_budget() -> None:
    per_token = 1.26e6
    assert micro_batch_size(8, 512, per_token) == 2  # the CLI's defaults: 8 GB -> 2.5 GB
    assert micro_batch_size(8, 1024, per_token) == 1  # the LoRA preset
    assert micro_batch_size(8, 256, per_token) == 4
    assert micro_batch_size(4, 128, per_token) == 4  # small batches are left whole
    assert micro_batch_size(1, 4096, per_token) == 1
    assert micro_batch_size(6, 256, per_token) == 3  # a divisor, so no row is dropped
    assert micro_batch_size(8, 512, 0.0) == 8  # unknown cost: the batch as asked


def test_an_unreadable_config_leaves_the_batch_whole(tmp_path: Path) -> None:
    assert model_config(str(tmp_path)) == {}
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    assert activation_bytes_per_token(model_config(str(tmp_path))) == 0.0
    assert activation_bytes_per_token(model_config("HuggingFaceTB/SmolLM2-135M")) == 0.0
