"""Merged safetensors: the base model with the LoRA adapter folded in (PEFT merge_and_unload)."""

from __future__ import annotations

import shutil
from pathlib import Path

from garden.engine.export.source import ExportSource
from garden.errors import ExportError

TOKENIZER_FILES = ("chat_template.jinja", "generation_config.json")


def write_merged(source: ExportSource, out_dir: Path) -> None:
    """Save a standalone transformers model (safetensors) and its tokenizer into ``out_dir``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if source.adapter_dir is not None:
        if source.base_model_dir is None:
            raise ExportError(
                f"The base model of {source.name} is not available locally, so its adapter "
                "cannot be merged.",
                hint="Prepare or copy the base model named in its adapter_config.json, or "
                "export the adapter instead (--format adapter).",
            )
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(source.base_model_dir, dtype="float32")
        model = PeftModel.from_pretrained(base, source.adapter_dir).merge_and_unload()
        tokenizer_dir = source.adapter_dir
    else:
        model = AutoModelForCausalLM.from_pretrained(source.model_dir, dtype="float32")
        tokenizer_dir = source.model_dir
    model.config.name_or_path = source.name
    model.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out_dir)
    for name in TOKENIZER_FILES:
        extra = source.model_dir / name
        if extra.is_file() and not (out_dir / name).exists():
            shutil.copy2(extra, out_dir / name)
