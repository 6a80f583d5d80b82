"""The CPU fused LM head gives what TRL's chunked one gives: outputs and every gradient."""

from __future__ import annotations

import pytest
import torch
from trl.kernels import ChunkedLogProbFunction

from garden.engine.training import cpu_lm_head
from garden.engine.training.cpu_lm_head import make_cpu_logprob_function

OUTPUTS = ("log_probs", "entropy", "is_top1")


def _run(
    function: object,
    dtype: torch.dtype,
    *,
    bias: bool,
    weight_grad: bool,
    entropy_grad: bool,
    temperature: float = 1.0,
    logit_scale: float = 1.0,
    softcap: float | None = None,
) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    rows, vocab, width = 37, 3000, 64
    hidden = torch.randn(rows, width, generator=generator).to(dtype).requires_grad_(True)
    weight = (torch.randn(vocab, width, generator=generator) * 0.2).to(dtype)
    weight.requires_grad_(weight_grad)
    head_bias = torch.randn(vocab, generator=generator).to(dtype).requires_grad_(True)
    targets = torch.randint(0, vocab, (rows,), generator=generator)
    log_probs, entropy, _, _, is_top1 = function.apply(  # type: ignore[attr-defined]
        hidden,
        weight,
        head_bias if bias else None,
        targets,
        temperature,
        1024,
        softcap,
        logit_scale,
        OUTPUTS,
    )
    loss = -log_probs.sum() + (0.3 * entropy.sum() if entropy_grad else 0.0)
    loss.backward()
    found = [log_probs, entropy, is_top1, hidden.grad]
    if weight_grad:
        found.append(weight.grad)
    if bias:
        found.append(head_bias.grad)
    return found


@pytest.mark.parametrize(
    ("dtype", "bias", "weight_grad", "entropy_grad", "temperature", "logit_scale"),
    [
        (torch.bfloat16, False, False, False, 1.0, 1.0),  # LoRA SFT in bf16, as it runs
        (torch.float32, True, True, True, 0.7, 1.5),  # full fine-tuning, every option
        (torch.bfloat16, False, True, False, 1.0, 1.0),
    ],
)
def test_the_cpu_head_matches_trls_outputs_and_gradients(
    monkeypatch: pytest.MonkeyPatch,
    dtype: torch.dtype,
    bias: bool,
    weight_grad: bool,
    entropy_grad: bool,
    temperature: float,
    logit_scale: float,
) -> None:
    monkeypatch.setattr(cpu_lm_head, "TILE_BYTES", 10 * 3000 * 4)  # four row tiles
    options = {
        "bias": bias,
        "weight_grad": weight_grad,
        "entropy_grad": entropy_grad,
        "temperature": temperature,
        "logit_scale": logit_scale,
    }
    expected = _run(ChunkedLogProbFunction, dtype, **options)
    found = _run(make_cpu_logprob_function(ChunkedLogProbFunction), dtype, **options)
    tolerance = 4e-3 if dtype == torch.bfloat16 else 1e-5  # bf16 keeps 8 bits
    assert torch.equal(found[2], expected[2])  # is_top1
    for got, want in zip(found, expected, strict=True):
        assert got.dtype == want.dtype
        error = (got.float() - want.float()).norm() / want.float().norm().clamp(min=1e-12)
        assert error <= tolerance


def test_what_the_cpu_head_does_not_serve_goes_to_trl() -> None:
    calls: list[str] = []

    class Recorder:
        @staticmethod
        def apply(*args: object) -> object:
            calls.append("trl")
            return ChunkedLogProbFunction.apply(*args)

    head = make_cpu_logprob_function(Recorder)
    _run(head, torch.float32, bias=False, weight_grad=False, entropy_grad=False, softcap=30.0)
    assert calls == ["trl"]
    _run(head, torch.float32, bias=False, weight_grad=False, entropy_grad=False)
    assert calls == ["trl"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kept_exponentials_give_the_gradient_of_a_projection_again(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    """A training step keeps each tile's exponentials for its backward pass; past
    ``KEPT_BYTES`` it projects the tile again. Both give one gradient, twice over a retained
    graph too (the first backward pass turns the kept tiles into gradients in place)."""
    monkeypatch.setattr(cpu_lm_head, "TILE_BYTES", 10 * 3000 * 4)
    head = make_cpu_logprob_function(ChunkedLogProbFunction)
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(37, 64, generator=generator).to(dtype).requires_grad_(True)
    weight = (torch.randn(3000, 64, generator=generator) * 0.2).to(dtype)
    targets = torch.randint(0, 3000, (37,), generator=generator)

    def gradients(kept_bytes: int) -> list[torch.Tensor]:
        monkeypatch.setattr(cpu_lm_head, "KEPT_BYTES", kept_bytes)
        log_probs = head.apply(hidden, weight, None, targets, 1.0, 1024, None, 1.0, OUTPUTS)[0]
        found = []
        for _ in range(2):
            (-log_probs.sum()).backward(retain_graph=True)
            assert hidden.grad is not None
            found.append(hidden.grad.clone())
            hidden.grad = None
        return found

    kept, projected = gradients(2**30), gradients(0)
    tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-6
    for got in [*kept, projected[1]]:
        error = (got.float() - projected[0].float()).norm() / projected[0].float().norm()
        assert error <= tolerance
