"""TRL ``SFTTrainer`` + PEFT backend: LoRA, QLoRA (CUDA) or full fine-tuning, on CPU or GPU.

The CPU path is tuned for throughput: data is tokenised here once (with an assistant-token mask
built from the chat template's character offsets), packed best-fit into padding-free batches
whose sequences attend only to themselves (``packed_attention``),
trained under bf16 autocast where the CPU has native bf16, without gradient checkpointing, with
one torch thread per physical core.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from garden.engine.training import fused_lora, int8_frozen, trackers
from garden.engine.training.backends.context import TrainContext, TrainOutcome
from garden.engine.training.budget import make_budget_callback
from garden.engine.training.chat_pause import paused_seconds
from garden.engine.training.compiled_layers import (
    LayerCompiler,
    auto_compile_callback,
    auto_compiles,
)
from garden.engine.training.encoding import read_jsonl, tokenize_rows
from garden.engine.training.micro_batch import (
    activation_bytes_per_token,
    micro_batch_size,
    model_config,
)
from garden.engine.training.packed_attention import register_packed_attention
from garden.engine.training.records import MetricsEvent, StepMetrics, reward_metrics
from garden.engine.training.spec import JobSpec

DEFAULT_SAVE_STEPS = 500


def torch_dtype_for(precision: str, device: str, method: str = "lora") -> Any:
    """The dtype of the base weights: bf16 wherever they stay frozen under bf16 (LoRA on a CPU).

    Frozen bf16 weights spare autocast a full fp32-to-bf16 copy of every linear layer on every
    step; PEFT keeps the trainable LoRA weights in fp32 (``autocast_adapter_dtype``).
    """
    import torch

    if precision == "bf16" and (device == "cuda" or method == "lora"):
        return torch.bfloat16
    return torch.float32


def load_model(ctx: TrainContext) -> tuple[Any, Any]:
    """Model and tokenizer from ``ctx.model_path`` (4-bit on CUDA for QLoRA)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": torch_dtype_for(ctx.precision, ctx.device, ctx.spec.method)}
    if ctx.spec.packing:
        kwargs["attn_implementation"] = register_packed_attention()
    if ctx.spec.method == "qlora":
        import torch
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    tokenizer = AutoTokenizer.from_pretrained(ctx.model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(ctx.model_path, **kwargs)
    if ctx.spec.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model, tokenizer


def lora_config(spec: JobSpec) -> Any:
    from peft import LoraConfig

    targets: str | list[str] = spec.lora_target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def sft_config(ctx: TrainContext, has_eval: bool) -> Any:
    from trl import SFTConfig

    spec = ctx.spec
    return SFTConfig(
        **trainer_arguments(ctx, has_eval),
        max_length=spec.max_seq_len,
        packing=spec.packing,
        packing_strategy="bfd",
        eval_packing=False,
        completion_only_loss=False,
    )


def trainer_arguments(ctx: TrainContext, has_eval: bool) -> dict[str, Any]:
    """The ``TrainingArguments`` every objective shares (SFT and the preference trainers)."""
    spec = ctx.spec
    eval_steps = spec.eval_steps if has_eval else None
    batch = spec.batch_size
    checkpointing = bool(spec.gradient_checkpointing)  # the plan decides (plan_cpu_memory)
    if checkpointing:
        ctx.log("Gradient checkpointing: activations are recomputed in the backward pass")
    if ctx.device == "cpu" and spec.objective != "grpo":  # GRPO batches whole groups
        per_token = activation_bytes_per_token(model_config(ctx.model_path))
        batch = micro_batch_size(spec.batch_size, spec.max_seq_len, per_token)
        if batch < spec.batch_size:
            ctx.log(
                f"Batch of {spec.batch_size} rows trained as micro-batches of {batch} "
                f"(×{spec.batch_size // batch} accumulation) to bound memory: "
                f"≈{batch * spec.max_seq_len * per_token / 2**30:.1f} GB of activations"
            )
    return dict(
        output_dir=str(ctx.checkpoint_dir),
        max_steps=spec.max_steps or -1,
        num_train_epochs=spec.epochs,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch,
        gradient_accumulation_steps=spec.gradient_accumulation * (spec.batch_size // batch),
        learning_rate=spec.learning_rate,
        lr_scheduler_type=spec.lr_scheduler,
        optim="adamw_torch_fused",
        warmup_steps=spec.warmup_ratio,  # TRL reads a value below 1 as a ratio
        weight_decay=spec.weight_decay,
        logging_first_step=True,
        logging_steps=spec.logging_steps,
        save_strategy="steps",
        save_steps=spec.checkpoint_interval or DEFAULT_SAVE_STEPS,
        save_total_limit=spec.save_total_limit,
        eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps,
        bf16=ctx.precision == "bf16",
        fp16=ctx.precision == "fp16",
        use_cpu=ctx.device == "cpu",
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        seed=spec.seed,
        data_seed=spec.seed,
        report_to=list(ctx.extra.get("report_to") or ()) or "none",
        run_name=spec.name or ctx.job_id,
        disable_tqdm=True,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        save_only_model=False,
        save_on_each_node=bool(ctx.extra.get("save_on_each_node")),
        ddp_find_unused_parameters=False if spec.distributed else None,
    )


def make_callback(ctx: TrainContext) -> Any:
    from transformers import TrainerCallback

    class GardenCallback(TrainerCallback):
        """Streams metrics to the supervisor and turns a stop request into save + stop."""

        def __init__(self) -> None:
            self.stopped = False
            self.t_begin = time.monotonic()
            self.last_t = self.t_begin
            self.last_tokens = self.start_tokens = 0
            self.start_step = 0
            self.history: list[StepMetrics] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.t_begin = self.last_t = time.monotonic()
            self.last_tokens = self.start_tokens = int(state.num_input_tokens_seen or 0)
            self.start_step = state.global_step
            start = StepMetrics(step=state.global_step, total_steps=state.max_steps)
            ctx.emit(MetricsEvent(metrics=start, logged=False))

        def on_step_end(self, args, state, control, **kwargs):
            if ctx.should_stop() and not self.stopped:
                self.stopped = True
                control.should_save = True
                control.should_training_stop = True
                ctx.log(f"Stop requested: saving a checkpoint at step {state.global_step}")

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" not in logs and "eval_loss" not in logs:
                return
            t = time.monotonic()
            tokens = int(state.num_input_tokens_seen or 0)
            tokens_per_second = eta_s = None
            if "loss" in logs and t > self.last_t:
                tokens_per_second = (tokens - self.last_tokens) / (t - self.last_t)
                self.last_t, self.last_tokens = t, tokens
            done = state.global_step - self.start_step
            if done > 0 and state.max_steps:
                rate = (t - self.t_begin) / done
                eta_s = max(0.0, (state.max_steps - state.global_step) * rate)
            energy, emissions = ctx.carbon()
            metrics = StepMetrics(
                step=state.global_step,
                total_steps=state.max_steps,
                epoch=state.epoch,
                loss=logs.get("loss"),
                eval_loss=logs.get("eval_loss"),
                learning_rate=logs.get("learning_rate"),
                train_tokens=tokens,
                grad_norm=logs.get("grad_norm"),
                tokens_per_second=tokens_per_second,
                eta_s=eta_s,
                energy_kwh=energy,
                emissions_kg=emissions,
                **reward_metrics(logs),
            )
            self.history.append(metrics)
            ctx.emit(MetricsEvent(metrics=metrics))

    return GardenCallback()


def use_cpu_lm_head() -> None:
    """On the CPU, make TRL's fused LM head project only the positions that carry loss, and
    project them with ``cpu_lm_head``'s whole-vocabulary tiles.

    TRL scores only labelled positions on Triton devices and every position elsewhere, to keep
    tile shapes fixed for graph compilers. Eager CPU training has no such constraint, and with
    loss on assistant turns only most positions carry none, so this skips much of the 49k-wide
    LM head.
    """
    import trl.trainer.utils as trl_utils

    from garden.engine.training.cpu_lm_head import make_cpu_logprob_function

    original = trl_utils._use_triton
    if getattr(original, "garden_patched", False):
        return

    def compact(device: Any) -> bool:
        return device.type == "cpu" or original(device)

    compact.garden_patched = True  # type: ignore[attr-defined]
    trl_utils._use_triton = compact
    cpu_head = make_cpu_logprob_function(trl_utils._ChunkedLogProbFunction)
    trl_utils._ChunkedLogProbFunction = cpu_head  # type: ignore[misc]


def train(ctx: TrainContext, model: Any = None, tokenizer: Any = None) -> TrainOutcome:
    """Train one job with SFTTrainer; ``model``/``tokenizer`` may come pre-built (Unsloth)."""
    from trl import SFTTrainer

    spec = ctx.spec
    if model is None or tokenizer is None:
        ctx.log(f"Loading model {ctx.model_path}")
        model, tokenizer = load_model(ctx)
    assistant_only = bool(spec.assistant_only_loss)
    if ctx.data_format == "text":
        assistant_only = False
    train_rows = tokenize_rows(
        read_jsonl(ctx.train_path), tokenizer, spec.max_seq_len, assistant_only
    )
    eval_rows = tokenize_rows(
        read_jsonl(ctx.eval_path), tokenizer, spec.max_seq_len, assistant_only
    )
    if not train_rows:
        from garden.errors import DatasetError

        raise DatasetError(
            f"No usable training examples in {ctx.train_path}.",
            hint="Check that the dataset has assistant answers, or import it again.",
        )
    ctx.log(
        f"Tokenised {len(train_rows)} train / {len(eval_rows)} eval examples "
        f"({sum(len(r['input_ids']) for r in train_rows)} train tokens per epoch)"
    )
    if ctx.device == "cpu":
        use_cpu_lm_head()
        fused_lora.install()
    args = sft_config(ctx, has_eval=bool(eval_rows))
    return run_trainer(SFTTrainer, ctx, model, tokenizer, args, train_rows, eval_rows)


def run_trainer(
    trainer_class: Any,
    ctx: TrainContext,
    model: Any,
    tokenizer: Any,
    args: Any,
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Build a TRL trainer (a new LoRA adapter unless the model has one) and run it to the end;
    ``extra`` goes to the trainer as it is (GRPO's ``reward_funcs``)."""
    from datasets import Dataset

    trackers.attach(ctx.extra.get("report_to") or ())
    peft_config = None
    if ctx.spec.method in ("lora", "qlora") and not hasattr(model, "peft_config"):
        peft_config = lora_config(ctx.spec)
    callback = make_callback(ctx)
    budget = make_budget_callback(ctx)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[callback, *([budget] if budget else []), *ctx.extra.get("callbacks", [])],
        **(extra or {}),
    )
    if int8_frozen.chosen(ctx.spec, ctx.device, ctx.precision):
        layers = int8_frozen.mark(trainer.model)
        ctx.log(f"Frozen weights multiply in int8 in {layers} LoRA layers (int8_matmuls)")
    return finish_training(ctx, trainer, tokenizer, callback, has_eval=bool(eval_rows))


def lora_inputs_stay_bf16(model: Any, ctx: TrainContext) -> Any:
    """While training under bf16 autocast on a CPU: PEFT's fp32 LoRA layers take their bf16
    inputs as they are (autocast runs the matmuls in bf16 anyway) instead of copying every
    input to fp32 first, about 8 % of a step (docs/benchmarks.md)."""
    from peft.helpers import disable_input_dtype_casting

    if ctx.precision != "bf16" or ctx.device != "cpu" or not hasattr(model, "peft_config"):
        return contextlib.nullcontext()
    if ctx.spec.objective == "grpo":  # its rollouts run outside autocast: the casts are needed
        return contextlib.nullcontext()
    return disable_input_dtype_casting(model)


def layer_compiler(trainer: Any, ctx: TrainContext) -> LayerCompiler | None:
    """Compile the decoder layers now (``torch_compile`` on), or once the run proves long
    (unset, where ``auto_compiles``); None when the run stays eager."""
    spec = ctx.spec
    if spec.torch_compile and ctx.device != "cpu":
        ctx.log(f"torch_compile applies to CPU training; this run trains on {ctx.device} without")
        return None
    compiler = LayerCompiler(trainer.model, ctx.log)
    if spec.torch_compile:
        compiler.compile("asked")
    elif spec.torch_compile is None and auto_compiles(spec, ctx.device, ctx.precision):
        trainer.add_callback(auto_compile_callback(compiler))
    else:
        return None
    return compiler


def finish_training(
    ctx: TrainContext, trainer: Any, tokenizer: Any, callback: Any, has_eval: bool
) -> TrainOutcome:
    """Run ``trainer`` (resuming when asked), then evaluate, save and sum up the run."""
    import torch

    resume = None
    if ctx.resume_from is not None:
        resume = str(ctx.resume_from)
        ctx.log(f"Resuming from {ctx.resume_from.name}")
    t0 = ctx.extra["train_started"] = time.monotonic()  # a budget counts from here too
    paused0 = paused_seconds(ctx.checkpoint_dir)
    compiler = layer_compiler(trainer, ctx)
    try:
        with lora_inputs_stay_bf16(trainer.model, ctx):
            trainer.train(resume_from_checkpoint=resume)
    finally:
        if compiler is not None:
            compiler.restore()
    # Seconds suspended for chat answers are not training seconds (nor a budget's).
    seconds = time.monotonic() - t0 - max(0.0, paused_seconds(ctx.checkpoint_dir) - paused0)
    state = trainer.state
    stopped = callback.stopped
    final_eval_loss = None
    evaluated_steps = [entry.get("step") for entry in state.log_history if "eval_loss" in entry]
    if has_eval and not stopped and state.global_step not in evaluated_steps:
        ctx.log("Final evaluation")
        final_eval_loss = trainer.evaluate().get("eval_loss")
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    evals = [entry["eval_loss"] for entry in state.log_history if "eval_loss" in entry]
    if final_eval_loss is None and evals:
        final_eval_loss = evals[-1]
    run_tokens = int(state.num_input_tokens_seen or 0) - callback.start_tokens
    adapter_dir = merged_dir = None
    if not ctx.extra.get("skip_outputs"):
        adapter_dir, merged_dir = save_outputs(ctx, trainer, tokenizer, stopped)
        (ctx.output_dir / "metrics.jsonl").write_text(
            "".join(json.dumps(entry) + "\n" for entry in state.log_history), encoding="utf-8"
        )
    del trainer
    if ctx.device == "cuda":
        torch.cuda.empty_cache()
    return TrainOutcome(
        stopped=stopped,
        steps=state.global_step,
        first_loss=losses[0] if losses else None,
        final_loss=losses[-1] if losses else None,
        final_eval_loss=_finite(final_eval_loss),
        train_tokens=run_tokens,
        train_seconds=seconds,
        adapter_dir=adapter_dir,
        merged_dir=merged_dir,
        history=callback.history,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def save_outputs(
    ctx: TrainContext, trainer: Any, tokenizer: Any, stopped: bool
) -> tuple[Path | None, Path | None]:
    """Adapter under ``<out>/adapter``; the merged model directly in ``<out>`` (not when stopped)."""
    out = ctx.output_dir
    out.mkdir(parents=True, exist_ok=True)
    if ctx.spec.method == "full":
        if stopped:
            return None, None
        ctx.log(f"Saving the fine-tuned model to {out}")
        trainer.save_model(str(out))
        tokenizer.save_pretrained(str(out))
        return None, out
    adapter_dir = out / "adapter"
    ctx.log(f"Saving the LoRA adapter to {adapter_dir}")
    trainer.model.save_pretrained(str(adapter_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(adapter_dir))
    if stopped:
        return adapter_dir, None
    ctx.log("Merging the adapter into the base model")
    merged = merge_adapter(ctx, trainer.model, adapter_dir)
    merged.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return adapter_dir, out


def merge_adapter(ctx: TrainContext, peft_model: Any, adapter_dir: Path) -> Any:
    import torch

    if ctx.spec.method != "qlora":
        if ctx.device == "cpu":
            peft_model = peft_model.to(torch.float32)  # LoRA deltas survive the merge unrounded
        return peft_model.merge_and_unload()
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(ctx.model_path, dtype=torch.bfloat16)
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
