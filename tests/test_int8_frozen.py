"""``int8_matmuls``: a fp32 LoRA run's frozen weights multiply in int8, exactly on every CPU
class, close to fp32, only where a gradient is taken; the tab, the CLI and REST offer it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import FACTS, private_settings
from peft import LoraConfig, get_peft_model

from garden.engine.training import JobSpec, fused_lora, int8_frozen
from garden.services import training


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def test_seven_bit_weights_make_the_int8_product_exact() -> None:
    """AVX2 without VNNI sums pairs of u8 x s8 products in int16: 8-bit weights can saturate
    there, 7-bit ones cannot. Whatever this CPU is, the product equals the integer one."""
    torch.manual_seed(0)
    rows = torch.randint(-127, 128, (64, 576), dtype=torch.int8)
    extremes = torch.full((8, 576), 127, dtype=torch.int8)
    levels = int(int8_frozen.WEIGHT_LEVELS)
    weights = torch.randint(-levels, levels + 1, (576, 96), dtype=torch.int8)
    for a in (rows, extremes, extremes.neg()):
        for b in (weights, torch.full((576, 32), levels, dtype=torch.int8)):
            assert torch.equal(torch._int_mm(a, b), a.int() @ b.int())


def test_the_layer_is_fp32s_to_about_one_percent_and_takes_no_weight_gradient() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 160)
    linear.requires_grad_(False)
    x = torch.randn(3, 40, 96, requires_grad=True)
    got = int8_frozen.frozen_linear(linear, x)
    want = linear(x)
    assert got.shape == want.shape and _relative_error(got, want) < 0.03
    upstream = torch.randn_like(want)
    (grad_got,) = torch.autograd.grad(got, x, upstream)
    (grad_want,) = torch.autograd.grad(want, x, upstream)
    assert _relative_error(grad_got, grad_want) < 0.03
    assert linear.weight.grad is None
    assert int8_frozen.packed_weight(linear) is int8_frozen.packed_weight(linear)  # packed once


def test_it_applies_only_to_a_frozen_fp32_weight_under_a_gradient() -> None:
    linear = torch.nn.Linear(8, 8)
    x = torch.randn(2, 8)
    assert not int8_frozen.applies(linear, x)  # a trainable weight
    linear.requires_grad_(False)
    assert int8_frozen.applies(linear, x)
    with torch.no_grad():
        assert not int8_frozen.applies(linear, x)  # evaluation and generation stay fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not int8_frozen.applies(linear, x)
    assert not int8_frozen.applies(linear, x.to(torch.bfloat16))


@pytest.mark.parametrize(
    ("values", "device", "precision", "chosen"),
    [
        ({}, "cpu", "fp32", True),
        ({"int8_matmuls": True}, "cpu", "fp32", True),
        ({"int8_matmuls": False}, "cpu", "fp32", False),
        ({}, "cpu", "bf16", False),
        ({}, "cuda", "fp32", False),
        ({"objective": "dpo"}, "cpu", "fp32", False),
        ({"method": "full"}, "cpu", "fp32", False),
    ],
)
def test_which_runs_take_int8(values, device, precision, chosen) -> None:
    spec = JobSpec(dataset="x", **values)
    assert int8_frozen.chosen(spec, device, precision) is chosen


def test_a_marked_lora_layer_trains_through_int8_and_evaluates_in_fp32() -> None:
    fused_lora.install()
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(64, 64, bias=False))
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["0"], lora_dropout=0.0))
    x = torch.randn(5, 64)
    fp32 = model(x)
    assert int8_frozen.mark(model) == 1
    trained = model(x)
    assert not torch.equal(trained, fp32) and _relative_error(trained, fp32) < 0.03
    trained.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)
    with torch.no_grad():
        assert torch.equal(model(x), fp32)


def test_the_tab_and_the_cli_offer_the_switch() -> None:
    from garden.cli.train import train
    from garden.ui.finetune_tab import form_values, spec_values

    assert form_values(training.preset_values("Quick CPU demo"))["int8_matmuls"] == "auto"
    for shown, meant in (("auto", None), ("on", True), ("off", False)):
        given = spec_values({"dataset": "x", "int8_matmuls": shown})
        assert training.build_spec(given).int8_matmuls is meant
    shown = CliRunner().invoke(train, ["--help"], terminal_width=200).output
    assert "--int8-matmuls [auto|on|off]" in shown


@pytest.mark.slow
def test_an_fp32_run_trains_its_frozen_weights_in_int8(
    tmp_path: Path, default_model_path: Path
) -> None:
    """A real 3-step fp32 LoRA run of the default model, through the service, on any CPU."""
    settings = private_settings(tmp_path, default_model_path)
    values = {"dataset": str(FACTS), "name": "int8", "precision": "fp32", "max_steps": 3}
    values |= {"batch_size": 2, "max_seq_len": 96, "warmup_ratio": 0.0}
    job = training.submit(training.build_spec(values), settings=settings)
    job = training.wait(job.id, timeout=900, settings=settings)
    logs = [line.message for line in training.logs(job.id, settings=settings)]
    assert job.status == "completed", (job.error, logs[-5:])
    assert "Frozen weights multiply in int8 in 210 LoRA layers (int8_matmuls)" in logs
    assert job.step == 3 and job.loss is not None and job.loss == job.loss
    assert (Path(job.output_dir or "") / "adapter" / "adapter_model.safetensors").is_file()
