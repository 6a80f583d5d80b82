"""The fused LoRA forward gives what PEFT's gives: outputs and every gradient, and it steps
aside wherever it does not apply (adapters disabled, merged, a bias on B, mixed dtypes)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.layer import Linear

from garden.engine.training import fused_lora


class TwoLayers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(48, 80)
        self.down = torch.nn.Linear(80, 48, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


def _model(dtype: torch.dtype, **lora: object) -> torch.nn.Module:
    torch.manual_seed(0)
    base = TwoLayers().to(dtype)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["up", "down"], **lora)  # type: ignore[arg-type]
    model = get_peft_model(base, config, autocast_adapter_dtype=True)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero; a nonzero B tests the update's path
            torch.nn.init.normal_(param, std=0.5)
    return model


def _run(
    model: torch.nn.Module, x: torch.Tensor, autocast: bool
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    cast = torch.autocast("cpu", torch.bfloat16) if autocast else contextlib.nullcontext()
    with cast:
        out = model(x)
    out.float().pow(2).sum().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    return out.detach(), [x.grad.clone(), *grads]


def _peft_and_fused(
    model: torch.nn.Module, x: torch.Tensor, autocast: bool
) -> tuple[tuple[torch.Tensor, list[torch.Tensor]], tuple[torch.Tensor, list[torch.Tensor]]]:
    fused_forward = Linear.forward
    original = fused_forward.__closure__[0].cell_contents  # type: ignore[union-attr]
    assert getattr(fused_forward, "garden_fused", False)
    Linear.forward = original  # type: ignore[method-assign]
    try:
        expected = _run(model, x, autocast)
    finally:
        Linear.forward = fused_forward  # type: ignore[method-assign]
    return expected, _run(model, x, autocast)


@pytest.fixture(autouse=True)
def _installed() -> None:
    fused_lora.install()
    fused_lora.install()  # idempotent


@pytest.mark.parametrize(
    ("dtype", "autocast", "tolerance"),
    [(torch.float32, False, 1e-5), (torch.bfloat16, True, 3e-2)],
    ids=["fp32", "bf16-autocast"],
)
def test_matches_peft_outputs_and_gradients(
    dtype: torch.dtype, autocast: bool, tolerance: float
) -> None:
    model = _model(dtype)
    x = torch.randn(3, 5, 48).to(dtype)
    (out, grads), (fused_out, fused_grads) = _peft_and_fused(model, x, autocast)
    assert fused_out.dtype == out.dtype
    torch.testing.assert_close(fused_out.float(), out.float(), rtol=tolerance, atol=tolerance)
    for got, want in zip(fused_grads, grads, strict=True):
        scale = want.float().abs().max().item() or 1.0
        torch.testing.assert_close(
            got.float() / scale, want.float() / scale, rtol=0, atol=tolerance
        )


def test_falls_back_to_peft_where_it_does_not_apply() -> None:
    x = torch.randn(2, 4, 48)
    with_bias = _model(torch.float32, lora_bias=True)
    (out, _), (fused_out, _) = _peft_and_fused(with_bias, x, False)
    torch.testing.assert_close(fused_out, out)
    model = _model(torch.float32)
    with model.disable_adapter():  # type: ignore[attr-defined]
        plain = model(x)
    layers = model.get_base_model()  # type: ignore[operator]
    assert torch.equal(plain, layers.down.base_layer(torch.relu(layers.up.base_layer(x))))
    model.merge_adapter()  # type: ignore[operator]
    merged = model(x)
    model.unmerge_adapter()  # type: ignore[operator]
    torch.testing.assert_close(merged, model(x), rtol=1e-4, atol=1e-4)
    mixed = _model(torch.bfloat16)  # bf16 base, fp32 adapters, no autocast: PEFT's casts
    (out, _), (fused_out, _) = _peft_and_fused(mixed, x.bfloat16(), False)
    torch.testing.assert_close(fused_out, out)


def test_dropped_positions_are_a_bernoulli_draw_per_value() -> None:
    torch.manual_seed(3)
    positions = fused_lora.dropped_positions(2_000_000, 0.05)
    assert positions.dtype == torch.int64 and int(positions[0]) >= 0
    assert int(positions[-1]) < 2_000_000 and bool((positions.diff() > 0).all())  # distinct
    assert abs(len(positions) / 2_000_000 - 0.05) < 0.001  # 2M draws: sd 0.00015
    # the gaps are geometric: P(gap = 1) = p, P(gap = 2) = p (1 - p)
    gaps = positions.diff()
    assert abs((gaps == 1).float().mean().item() - 0.05) < 0.003
    assert abs((gaps == 2).float().mean().item() - 0.05 * 0.95) < 0.003
    # every part of the range is reached as often: a quarter of the drops in each quarter
    quarters = torch.bucketize(positions, torch.tensor([500_000, 1_000_000, 1_500_000]))
    assert (torch.bincount(quarters).float() / len(positions) - 0.25).abs().max() < 0.01
    torch.manual_seed(3)
    assert torch.equal(fused_lora.dropped_positions(2_000_000, 0.05), positions)  # seeded
    assert fused_lora.dropped_positions(10, 0.999_999).tolist() == list(range(10))


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_dropped_down_is_the_masked_product_and_its_gradients(autocast: bool) -> None:
    """``dropped_down`` equals ``(x * keep) @ A^T`` and its two gradients, for the positions
    ``dropped_positions`` draws from the same seed."""
    dtype = torch.bfloat16 if autocast else torch.float32
    x = torch.randn(3, 40, 96).to(dtype).requires_grad_()
    weight = (torch.randn(8, 96) * 0.1).requires_grad_()
    cast = torch.autocast("cpu", torch.bfloat16) if autocast else contextlib.nullcontext()
    torch.manual_seed(4)
    with cast:
        down = fused_lora.dropped_down(x, weight, 0.3)
    grad = torch.randn_like(down)
    down.backward(grad)
    torch.manual_seed(4)
    keep = torch.ones(x.numel())
    keep[fused_lora.dropped_positions(x.numel(), 0.3)] = 0
    x_ref = x.detach().clone().requires_grad_()
    weight_ref = weight.detach().clone().requires_grad_()
    with cast:
        expected = (x_ref * keep.view(x.shape).to(dtype)) @ weight_ref.t()
    expected.backward(grad)
    assert down.dtype == expected.dtype and x.grad is not None and weight.grad is not None
    assert (x.grad.dtype, weight.grad.dtype) == (dtype, torch.float32)
    tolerance = 2e-2 if autocast else 1e-5  # bf16: one rounding of a value near 1
    torch.testing.assert_close(down.float(), expected.float(), rtol=0, atol=tolerance)
    assert x_ref.grad is not None and weight_ref.grad is not None
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(weight.grad, weight_ref.grad)


def test_lora_dropout_goes_through_dropped_down_in_training_only() -> None:
    model = _model(torch.float32, lora_dropout=0.3)
    up = model.get_base_model().up  # type: ignore[operator]
    x = torch.randn(4, 6, 48)
    torch.manual_seed(11)
    trained = up(x)
    torch.manual_seed(11)
    keep = torch.ones(x.numel())
    keep[fused_lora.dropped_positions(x.numel(), 0.3)] = 0
    dropped = x * keep.view(x.shape) / 0.7
    update = up.lora_B["default"](up.lora_A["default"](dropped)) * up.scaling["default"]
    torch.testing.assert_close(trained, up.base_layer(x) + update, rtol=1e-5, atol=1e-5)
    model.eval()
    (out, _), (fused_out, _) = _peft_and_fused(model, x, False)
    torch.testing.assert_close(fused_out, out, rtol=1e-5, atol=1e-5)  # no dropout in eval


def test_a_compiled_layer_keeps_torch_s_dropout_in_one_graph() -> None:
    """The sampled positions would break a dynamo graph: compiled, the module's dropout stays
    (inductor's)."""
    model = _model(torch.float32, lora_dropout=0.3)
    explained = torch._dynamo.explain(model)(torch.randn(4, 6, 48))
    assert explained.graph_break_count == 0, explained.break_reasons
