"""Unsloth backend (CUDA only): ``FastLanguageModel`` + the same SFTTrainer loop as ``trl_peft``.

``unsloth`` must be imported before transformers and trl in the process, so the worker calls
this module before anything else loads them. It is never imported on a machine without CUDA.
"""

from __future__ import annotations

from garden.engine.training.backends.context import TrainContext, TrainOutcome


def train(ctx: TrainContext) -> TrainOutcome:
    import unsloth  # noqa: F401 - must come first: it patches transformers and trl
    from unsloth import FastLanguageModel

    from garden.engine.training.backends import trl_peft

    spec = ctx.spec
    ctx.log(f"Loading model {ctx.model_path} with Unsloth")
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=ctx.model_path,
        max_seq_length=spec.max_seq_len,
        load_in_4bit=spec.method == "qlora",
        full_finetuning=spec.method == "full",
        dtype=None,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if spec.method in ("lora", "qlora"):
        targets = spec.lora_target_modules
        if targets == ["all-linear"]:
            targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        model = FastLanguageModel.get_peft_model(
            model,
            r=spec.lora_r,
            lora_alpha=spec.lora_alpha,
            lora_dropout=spec.lora_dropout,
            target_modules=targets,
            use_gradient_checkpointing=False,
            random_state=spec.seed,
        )
    if spec.objective == "grpo":
        from garden.engine.training.backends import grpo

        return grpo.train(ctx, model=model, tokenizer=tokenizer)
    if spec.objective != "sft":
        from garden.engine.training.backends import preference

        return preference.train(ctx, model=model, tokenizer=tokenizer)
    return trl_peft.train(ctx, model=model, tokenizer=tokenizer)
