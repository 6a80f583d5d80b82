"""The matmul FLOPs one training step really does, per trained token (torch's FlopCounterMode).

``train_throughput.py``'s ceiling divides a matmul's GFLOP/s by 6 FLOPs per parameter per
token, the count for training every weight. A LoRA step does less: frozen weights get no
weight gradient (2 FLOPs forward and 2 for the input gradient per parameter), and our LM head
projects only the labelled positions; a plain TRL step projects every position. Counting the
step's matmuls says how much of the machine's matmul speed each side turns into work, where
the 6-per-parameter figure flatters any path that skips work.

Counted: every matmul torch's counter knows (``mm``, ``addmm``, ``bmm``, ``baddbmm``, SDPA's
kernels), and two it does not know: the CPU flash attention kernel, with its SDPA formula
(causal attention counted as full, as torch counts it), and ``_int_mm``, the int8 products of
frozen weights in an fp32 run (``int8_matmuls``), 2 operations per multiply-add like a float
matmul, so such a run's fraction of the fp32 matmul can pass 100 %. Element-wise work and the
optimizer are not matmuls and are not counted.
"""

from __future__ import annotations

from typing import Any

COUNTED_STEP = 2  # the second optimizer step: the first carries one-off set-up work


def cpu_flash_attention_formulas() -> dict[Any, Any]:
    """FlopCounterMode formulas for SDPA's CPU flash kernel (forward and backward) and for
    ``_int_mm``."""
    import torch
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out, query, key, value)

    def int_mm(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]

    aten = torch.ops.aten
    return {
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
        aten._int_mm: int_mm,
    }


def make_flop_counter() -> Any:
    """A trainer callback that counts the matmul FLOPs of step ``COUNTED_STEP`` and the tokens
    it trained (``gflop_per_token`` once that step ended, else None)."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import TrainerCallback

    class StepFlopCounter(TrainerCallback):
        def __init__(self) -> None:
            self.mode: Any = None
            self.tokens_before = 0
            self.gflop_per_token: float | None = None
            self.by_operator: dict[str, float] = {}

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == COUNTED_STEP - 1:
                self.mode = FlopCounterMode(
                    display=False, custom_mapping=cpu_flash_attention_formulas()
                )
                self.mode.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == COUNTED_STEP - 1:
                self.tokens_before = int(state.num_input_tokens_seen)
            if self.mode is None or state.global_step != COUNTED_STEP:
                return
            self.mode.__exit__(None, None, None)
            tokens = int(state.num_input_tokens_seen) - self.tokens_before
            flops = self.mode.get_flop_counts().get("Global", {})
            if tokens > 0:
                self.gflop_per_token = sum(flops.values()) / tokens / 1e9
                self.by_operator = {
                    str(op).removeprefix("aten."): round(count / tokens / 1e9, 4)
                    for op, count in sorted(flops.items(), key=lambda item: -item[1])
                }
            self.mode = None

    return StepFlopCounter()
