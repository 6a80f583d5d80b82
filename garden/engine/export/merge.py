"""Merged safetensors: the base model with the LoRA adapter folded in (PEFT merge_and_unload)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

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
        model = merged_model(source.base_model_dir, source.adapter_dir)
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


def merged_model(base_dir: Path, adapter_dir: Path) -> Any:
    """The base model in fp32 with the LoRA adapter in ``adapter_dir`` folded into its weights."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype="float32")
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()


def save_merged_adapter(base_dir: Path, adapter_dir: Path, out_dir: Path) -> None:
    """A standalone model folder (safetensors, tokenizer, chat template) of a LoRA run: what
    the int4 chat copy of a run is built from."""
    from transformers import AutoTokenizer

    merged_model(base_dir, adapter_dir).save_pretrained(out_dir, safe_serialization=True)
    tokenizer_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out_dir)
    for name in TOKENIZER_FILES:
        extra = base_dir / name
        if extra.is_file() and not (out_dir / name).exists():
            shutil.copy2(extra, out_dir / name)
