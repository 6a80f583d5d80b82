"""CPU batches split into micro-batches that bound activation memory (same rows per step)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from garden.engine.training.micro_batch import (
    GB,
    activation_bytes_per_token,
    micro_batch_size,
    model_config,
    plan_cpu_memory,
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


def test_gradient_checkpointing_is_planned_only_where_the_run_would_not_fit(
    default_model_path: Path,
) -> None:
    config = model_config(str(default_model_path))
    weights = (default_model_path / "model.safetensors").stat().st_size
    cli = {"batch_size": 8, "max_seq_len": 512, "config": config, "weight_bytes": weights}

    def plan(processes: int, limit_gb: float, choice: bool | None = None):
        return plan_cpu_memory(
            **cli, processes=processes, limit_bytes=limit_gb * GB, checkpointing=choice
        )

    roomy, tight = plan(2, 18), plan(2, 7)
    assert not roomy.checkpointing and roomy.fits  # bench: 3.7 + 3.3 GB without
    assert tight.checkpointing and tight.fits  # bench: 2.6 + 2.3 GB with
    assert tight.rank_bytes < roomy.rank_bytes
    assert "7.0 GB limit; gradient checkpointing on" in tight.line()
    assert not plan(1, 18).checkpointing
    assert plan(1, 2).checkpointing and not plan(1, 2).fits  # too small either way: a warning
    assert not plan(2, 1, choice=False).checkpointing  # the spec's choice stands
    unknown = plan_cpu_memory(
        **{**cli, "config": {}}, processes=2, limit_bytes=GB, checkpointing=None
    )
    assert not unknown.checkpointing  # a hub model's cost is unknown: trained as asked


def test_fp32_runs_plan_their_measured_peaks(default_model_path: Path) -> None:
    """bench/train_memory.py, 2026-12-07, the default model in fp32 with the frozen weights'
    int8 copy: 2.42 GB peak at 512 tokens a micro-batch, 3.96 GB at 1,024 (the *LoRA* preset)."""
    config = model_config(str(default_model_path))
    weights = (default_model_path / "model.safetensors").stat().st_size

    def peak_gb(batch_size: int, **precision: bool) -> float:
        plan = plan_cpu_memory(
            batch_size=batch_size,
            max_seq_len=512,
            processes=1,
            config=config,
            weight_bytes=weights,
            limit_bytes=24 * GB,
            checkpointing=False,
            **precision,
        )
        return plan.rank_bytes / GB

    assert peak_gb(1, fp32=True, int8_copy=True) >= 2.42
    assert peak_gb(2, fp32=True, int8_copy=True) >= 3.96
    copy = peak_gb(2, fp32=True, int8_copy=True) - peak_gb(2, fp32=True)
    assert copy * GB == pytest.approx(weights / 4)
    assert peak_gb(2) >= 2.81  # bf16: the same runs peaked at 1.68-2.81 GB
