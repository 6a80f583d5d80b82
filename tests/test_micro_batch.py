"""CPU batches split into micro-batches that bound activation memory (same rows per step)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from garden.engine.training.memory_plan import plan_cpu_memory
from garden.engine.training.micro_batch import (
    GB,
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


SHAPES = {  # the two other models' configurations, bf16 checkpoints
    "360m": {
        "num_hidden_layers": 32,
        "hidden_size": 960,
        "intermediate_size": 2560,
        "num_attention_heads": 15,
        "vocab_size": 49152,
        "dtype": "bfloat16",
    },
    "qwen-0.5b": {
        "num_hidden_layers": 24,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_attention_heads": 14,
        "vocab_size": 151936,
        "dtype": "bfloat16",
    },
}
PARAMETERS = {"360m": 361_821_120, "qwen-0.5b": 494_032_768}
# bench/train_memory.py, 2026-12-07, on an AVX-512 BF16 EPYC (bf16) and with AVX2 emulated (fp32,
# the frozen weights' int8 copy): the largest rank's peak RSS in GB, by batch 8 of 512, 1,024 and
# 2,048 tokens, one process (the LoRA preset's recipe) ...
BY_LENGTH_GB = {
    ("default", "bf16"): (2.43, 2.83, 4.79),
    ("default", "fp32"): (3.74, 4.07, 7.01),
    ("360m", "bf16"): (3.67, 4.61, 7.55),
    ("360m", "fp32"): (4.98, 7.24, 11.49),
    ("qwen-0.5b", "bf16"): (4.40, 5.86, 8.27),
    ("qwen-0.5b", "fp32"): (5.82, 7.48, 11.23),
}
# ... and (model, precision, batch, max_seq_len, processes, gradient checkpointing, peak)
MEASURED_PEAKS_GB = [
    (model, precision, 8, length, 1, False, peak)
    for (model, precision), peaks in BY_LENGTH_GB.items()
    for length, peak in zip((512, 1024, 2048), peaks, strict=True)
] + [
    ("default", "bf16", 1, 256, 1, False, 1.46),  # the Quick CPU demo
    ("default", "fp32", 1, 256, 1, False, 1.87),
    ("360m", "fp32", 1, 256, 1, False, 3.78),
    ("default", "bf16", 8, 1024, 1, True, 1.81),  # the LoRA preset, checkpointed
    ("360m", "bf16", 8, 1024, 1, True, 3.23),
    ("default", "fp32", 8, 1024, 1, True, 2.54),
    ("360m", "fp32", 8, 1024, 1, True, 5.47),
    ("default", "bf16", 8, 512, 2, False, 3.14),  # two DDP ranks
    ("default", "fp32", 8, 512, 2, False, 4.24),
]


@pytest.mark.parametrize(
    ("model", "precision", "batch", "length", "ranks", "recompute", "peak"), MEASURED_PEAKS_GB
)
def test_the_plan_covers_every_measured_peak(
    model: str,
    precision: str,
    batch: int,
    length: int,
    ranks: int,
    recompute: bool,
    peak: float,
    default_model_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No run above its estimate, and none far below it (the fit ran 0.06-1.1 GB over)."""
    from garden.engine.training import memory_plan

    monkeypatch.setattr(memory_plan, "plain_kernels_below", lambda: 1025)  # the EPYC's limit
    if model == "default":
        config = model_config(str(default_model_path))
        weights = (default_model_path / "model.safetensors").stat().st_size
    else:
        config, weights = SHAPES[model], PARAMETERS[model] * 2
    plan = plan_cpu_memory(
        batch_size=batch,
        max_seq_len=length,
        processes=ranks,
        config=config,
        weight_bytes=weights,
        limit_bytes=64 * GB,
        checkpointing=recompute,
        fp32=precision == "fp32",
        int8_copy=precision == "fp32",
    )
    assert peak <= plan.rank_bytes / GB <= peak + 1.1, plan.line()


def test_a_full_fine_tune_plans_its_optimizer_states(default_model_path: Path) -> None:
    """bench/train_memory.py --set 'method="full"', the CLI's defaults: 4.27 GB in bf16 and
    4.42 GB in fp32 (AVX2 emulated), against 2.43 and 3.74 GB for LoRA."""
    config = model_config(str(default_model_path))
    weights = (default_model_path / "model.safetensors").stat().st_size

    def peak_gb(**options: bool) -> float:
        plan = plan_cpu_memory(
            batch_size=8,
            max_seq_len=512,
            processes=1,
            config=config,
            weight_bytes=weights,
            limit_bytes=24 * GB,
            checkpointing=False,
            **options,
        )
        return plan.rank_bytes / GB

    assert peak_gb(full=True) >= 4.27
    assert peak_gb(full=True, fp32=True) >= 4.42
    assert peak_gb(full=True) - peak_gb() == pytest.approx(3.5 * weights / GB)
    copy = peak_gb(fp32=True, int8_copy=True) - peak_gb(fp32=True)
    assert copy * GB == pytest.approx(weights / 4)
