"""TRL's fused LM head, rewritten for CPU training: whole-vocabulary tiles, one matmul each way.

TRL's ``ChunkedLogProbFunction`` keeps GPU memory flat by projecting the vocabulary in 32k-wide
tiles and, off Triton devices, folds each tile with a dozen torch ops and accumulates the hidden
gradient with fp32 matmuls (the bf16 tiles upcast first). On a CPU the labelled positions of a
micro-batch are a few hundred, so tiles of a few rows across the whole vocabulary serve: this
computes the same outputs with one bf16 (or fp32) matmul per row tile each way, and the
element-wise work in place, in fp32 as TRL does: a training step keeps each tile's exponentials
for its backward pass (up to ``KEPT_BYTES``) instead of projecting the tile again. It serves the
outputs SFT asks for (log-probs, entropy, top-1); any other request, a logit soft-cap or a
non-CPU device goes to TRL's own function.
"""

from __future__ import annotations

from typing import Any

SUPPORTED_OUTPUTS = frozenset({"log_probs", "entropy", "is_top1"})
# Row tiles stay under glibc's 32 MB mmap ceiling, so after the first tile malloc serves them
# from its heap: a larger tile is mapped and unmapped every time, and page faults then cost
# more than the arithmetic (3x on a 67 MB softmax, measured on a 2-core AMX Xeon).
TILE_BYTES = 16 * 1024 * 1024  # of fp32 logits per row tile
# The forward pass's exponentials kept for the backward pass, at most (a micro-batch's labelled
# rows times the vocabulary, in fp32: 98 MB for 500 rows of the default model). Beyond it, or
# when the entropy takes a gradient, the backward pass projects each tile again.
KEPT_BYTES = 512 * 1024 * 1024


def _row_tiles(rows: int, vocab: int) -> list[slice]:
    step = max(1, TILE_BYTES // (4 * vocab))
    return [slice(start, start + step) for start in range(0, rows, step)]


def _logits(hidden: Any, weight: Any, bias: Any, scale: float) -> Any:
    """fp32 logits of one row tile; ``weight`` and ``bias`` are already in the compute dtype."""
    tile = hidden.to(weight.dtype) @ weight.t()
    if bias is not None:
        tile += bias
    logits = tile.float()
    if scale != 1.0:
        logits *= scale
    return logits


def make_cpu_logprob_function(fallback: Any) -> Any:
    """An autograd function with the signature of TRL's ``ChunkedLogProbFunction``.

    ``fallback`` (TRL's function) answers whatever this one does not serve."""
    import torch

    def compute_dtype(hidden: Any) -> Any:
        return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else hidden.dtype

    def cast(tensor: Any, dtype: Any) -> Any:
        return None if tensor is None else tensor.to(dtype)

    def logprob_function(keeps_exponentials: bool) -> Any:
        """The function; ``keeps_exponentials`` where a backward pass will follow (grad mode)."""

        class CpuLogProbFunction(torch.autograd.Function):
            @staticmethod
            def forward(
                ctx: Any,
                hidden: Any,
                weight: Any,
                bias: Any,
                targets: Any,
                temperature: float,
                chunk_size: int,
                final_logit_softcapping: float | None = None,
                logit_scale: float = 1.0,
                outputs: tuple[str, ...] = ("log_probs",),
            ) -> tuple[Any, Any, None, None, Any]:
                ctx.set_materialize_grads(False)
                dtype = compute_dtype(hidden)
                scale = logit_scale / temperature
                w, b = weight.to(dtype), cast(bias, dtype)
                rows, vocab = hidden.shape[0], weight.shape[0]
                log_z = torch.empty(rows)
                totals = torch.empty(rows)
                logprobs = torch.empty(rows)
                entropy = torch.empty(rows) if "entropy" in outputs else None
                is_top1 = torch.empty(rows, dtype=torch.bool) if "is_top1" in outputs else None
                keep = keeps_exponentials and rows * vocab * 4 <= KEPT_BYTES
                kept: list[Any] = []
                for tile in _row_tiles(rows, vocab):
                    z = _logits(hidden[tile], w, b, scale)
                    top, top_index = z.max(-1)
                    target_z = z.gather(-1, targets[tile].unsqueeze(-1)).squeeze(-1)
                    z -= top.unsqueeze(-1)
                    exps = torch.exp(z)
                    total = exps.sum(-1)
                    log_total = total.log()
                    totals[tile] = total
                    log_z[tile] = top + log_total
                    logprobs[tile] = target_z - log_z[tile]
                    if entropy is not None:  # log Z - E[z], with both shifted by the max
                        entropy[tile] = log_total - z.mul_(exps).sum(-1) / total
                    if is_top1 is not None:  # ``max`` gives the first maximum, as TRL counts it
                        is_top1[tile] = top_index == targets[tile]
                    if keep:
                        kept.append(exps)
                ctx.save_for_backward(
                    hidden,
                    weight,
                    bias,
                    targets,
                    log_z,
                    log_z if entropy is None else entropy,
                    totals,
                )
                ctx.dtype, ctx.scale, ctx.kept = dtype, scale, kept if keep else None
                if is_top1 is not None:
                    ctx.mark_non_differentiable(is_top1)
                return logprobs, entropy, None, None, is_top1

            @staticmethod
            def backward(
                ctx: Any, grad_logprobs: Any, grad_entropy: Any, *_: Any
            ) -> tuple[Any, ...]:
                hidden, weight, bias, targets, log_z, entropy, totals = ctx.saved_tensors
                # The kept exponentials become the gradient in place: a second backward pass
                # (a retained graph) projects again. So does an entropy gradient, which needs
                # log p where exp underflowed to 0.
                kept, ctx.kept = ctx.kept, None
                if grad_entropy is not None or grad_logprobs is None:
                    kept = None
                needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
                w, b = weight.to(ctx.dtype), cast(bias, ctx.dtype)
                grad_hidden = torch.empty_like(hidden) if needs_hidden else None
                grad_weight = torch.zeros(weight.shape) if needs_weight else None
                grad_bias = torch.zeros(bias.shape) if needs_bias else None
                for index, tile in enumerate(_row_tiles(hidden.shape[0], weight.shape[0])):
                    if kept is not None:
                        # d log p_target / dz = onehot(target) - exps / total
                        weighted = grad_logprobs[tile].float().unsqueeze(-1)
                        grad_z = kept[index].mul_(-weighted / totals[tile].unsqueeze(-1))
                        kept[index] = None
                        grad_z.scatter_add_(-1, targets[tile].unsqueeze(-1), weighted)
                    else:
                        grad_z = recomputed_gradient(
                            hidden[tile],
                            w,
                            b,
                            ctx.scale,
                            targets[tile],
                            log_z[tile],
                            entropy[tile],
                            grad_logprobs=None if grad_logprobs is None else grad_logprobs[tile],
                            grad_entropy=None if grad_entropy is None else grad_entropy[tile],
                        )
                    if ctx.scale != 1.0:
                        grad_z *= ctx.scale
                    if grad_hidden is not None:
                        grad_hidden[tile] = grad_z.to(ctx.dtype) @ w
                    if grad_weight is not None:
                        grad_weight.addmm_(grad_z.t(), hidden[tile].float())
                    if grad_bias is not None:
                        grad_bias += grad_z.sum(0)
                return (
                    grad_hidden,
                    cast(grad_weight, weight.dtype),
                    None if grad_bias is None else grad_bias.to(bias.dtype),
                    *([None] * 6),
                )

        return CpuLogProbFunction

    def recomputed_gradient(
        hidden: Any,
        w: Any,
        b: Any,
        scale: float,
        targets: Any,
        log_z: Any,
        entropy: Any,
        *,
        grad_logprobs: Any,
        grad_entropy: Any,
    ) -> Any:
        """d loss / d logits of one row tile, from its logits projected again."""
        log_p = _logits(hidden, w, b, scale)
        log_p -= log_z.unsqueeze(-1)
        probs = torch.exp(log_p)
        # d log p_target / dz = onehot(target) - p; d entropy / dz = -p (log p + entropy)
        grad_z = None
        if grad_entropy is not None:
            weighted = grad_entropy.float().unsqueeze(-1)
            grad_z = probs * (log_p + entropy.unsqueeze(-1)) * -weighted
        if grad_logprobs is not None:
            weighted = grad_logprobs.float().unsqueeze(-1)
            from_logprobs = probs.mul_(-weighted)
            grad_z = from_logprobs if grad_z is None else grad_z.add_(from_logprobs)
            grad_z.scatter_add_(-1, targets.unsqueeze(-1), weighted)
        return torch.zeros_like(probs) if grad_z is None else grad_z

    training, inference = logprob_function(True), logprob_function(False)

    class CpuOrFallback:
        """Dispatches ``apply`` to the CPU function where it serves the call, else to TRL's."""

        @staticmethod
        def apply(*args: Any) -> Any:
            """``args`` in TRL's order: hidden, weight, bias, targets, temperature, chunk_size,
            final_logit_softcapping, logit_scale, outputs (the last three optional)."""
            softcap = args[6] if len(args) > 6 else None
            outputs = args[8] if len(args) > 8 else ("log_probs",)
            serves = (
                args[0].device.type == "cpu"
                and softcap is None
                and set(outputs) <= SUPPORTED_OUTPUTS
            )
            if not serves:
                return fallback.apply(*args)
            return (training if torch.is_grad_enabled() else inference).apply(*args)

    return CpuOrFallback
