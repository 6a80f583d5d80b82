"""One export: check the request, write the folder (the exact repository a push sends),
add the model card and the download, then push when asked."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from garden.config import Settings
from garden.engine.export.card import card_facts, model_card
from garden.engine.export.folders import folder_size, staged_folder, zip_folder
from garden.engine.export.gguf import byte_level_tokenizer, convert_to_gguf
from garden.engine.export.gguf_rewrite import NUMPY_QUANTS, end_of_turn_token, rewrite_gguf
from garden.engine.export.hub import check_push, push_folder
from garden.engine.export.merge import write_merged
from garden.engine.export.ollama import run_commands, run_note, write_modelfile
from garden.engine.export.source import ExportSource
from garden.errors import ExportError

EXPORT_FORMATS = ("adapter", "merged", "gguf", "ollama")
GGUF_QUANTS = ("f16", "q8_0", *NUMPY_QUANTS)
GGUF_FORMATS = ("gguf", "ollama")
# The quantisation when none is asked for: f16 for GGUF (the lossless copy), q8_0 for Ollama
# (why: garden/engine/export/ollama.py's docstring).
DEFAULT_QUANTS = {"gguf": "f16", "ollama": "q8_0"}
ADAPTER_SKIPPED = {"README.md"}


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    download: Path | None
    files: list[str]
    size_bytes: int
    card: dict[str, Any]
    pushed_url: str | None = None
    notes: list[str] = field(default_factory=list)
    quant: str | None = None


def check_request(source: ExportSource, export_format: str, quant: str | None) -> str | None:
    """Refuse an impossible export before any work; the GGUF quantisation to use."""
    if export_format not in EXPORT_FORMATS:
        raise ExportError(
            f"Unknown export format {export_format!r}.",
            hint=f"Use one of: {', '.join(EXPORT_FORMATS)}.",
        )
    if export_format == "adapter" and source.adapter_dir is None:
        raise ExportError(
            f"{source.name} has no LoRA adapter (it is a {source.kind} model).",
            hint="Export a LoRA fine-tuned run's adapter, or use --format merged or gguf.",
        )
    if export_format not in GGUF_FORMATS:
        if quant is not None:
            raise ExportError(
                f"--quant applies to GGUF and Ollama exports only, not to {export_format}.",
                hint="Drop --quant, or use --format gguf or ollama.",
            )
        return None
    quant = quant or DEFAULT_QUANTS[export_format]
    if quant not in GGUF_QUANTS:
        raise ExportError(
            f"Unknown GGUF quantisation {quant!r}.", hint=f"Use one of: {', '.join(GGUF_QUANTS)}."
        )
    return quant


def default_folder(source: ExportSource, export_format: str, quant: str | None, root: Path) -> Path:
    suffix = f"-{quant}" if quant else ""
    return root / f"{source.slug}-{export_format}{suffix}"


def export_source(
    source: ExportSource,
    export_format: str,
    *,
    settings: Settings,
    quant: str | None = None,
    out_dir: Path | None = None,
    push_to: str | None = None,
    dry_run: bool = False,
    private: bool = True,
    bundle: bool = False,
    energy_kwh: float | None = None,
    emissions_kg: float | None = None,
) -> ExportResult:
    """Export ``source``; with ``push_to`` (and no ``dry_run``) also upload the folder."""
    quant = check_request(source, export_format, quant)
    token = settings.hf_token.get_secret_value()
    if push_to and not dry_run:
        check_push(push_to, token)
    folder = (
        out_dir or default_folder(source, export_format, quant, settings.exports_root)
    ).resolve()
    _check_target(folder)
    facts = card_facts(source, energy_kwh, emissions_kg, settings)
    with staged_folder(folder) as staging:
        note = _write_payload(source, export_format, quant, staging, settings)
        (staging / "README.md").write_text(
            model_card(source, export_format, facts, note), encoding="utf-8"
        )
    download = _download(source, export_format, quant, folder, bundle)
    pushed = push_folder(str(folder), push_to, token, private) if push_to and not dry_run else None
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return ExportResult(
        folder=folder,
        download=download,
        files=files,
        size_bytes=folder_size(folder),
        card=facts,
        pushed_url=pushed,
        notes=run_commands(source.slug) if export_format == "ollama" else [],
        quant=quant,
    )


def _check_target(folder: Path) -> None:
    """Replace only an earlier export, never a folder of someone's own files."""
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return
    card = folder / "README.md"
    if folder.is_dir() and card.is_file() and "- model-garden" in card.read_text(errors="replace"):
        return
    raise ExportError(
        f"{folder} already exists and is not an earlier export.",
        hint="Choose a new or empty folder with --out, or leave it out.",
    )


def _write_payload(
    source: ExportSource, export_format: str, quant: str | None, staging: Path, settings: Settings
) -> str:
    if export_format == "adapter":
        assert source.adapter_dir is not None
        for path in sorted(source.adapter_dir.iterdir()):
            if path.is_file() and path.name not in ADAPTER_SKIPPED:
                shutil.copy2(path, staging / path.name)
        return (
            "Files: a PEFT LoRA adapter. Load it with "
            f"`PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('{source.base_model_id}'), "
            "'<this repo>')`."
        )
    if export_format == "merged":
        write_merged(source, staging)
        return "Files: merged safetensors weights and the tokenizer (transformers, vLLM)."
    assert quant is not None
    return _write_gguf(source, quant, staging, settings, ollama=export_format == "ollama")


def _write_gguf(
    source: ExportSource, quant: str, staging: Path, settings: Settings, *, ollama: bool
) -> str:
    """The GGUF (through a merged copy in the temporary folder); with ``ollama`` also its
    Modelfile, derived from the merged copy's chat template before the slow conversion."""
    settings.temp_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="export-merged-", dir=settings.temp_path) as merged:
        merged_dir = Path(merged)
        write_merged(source, merged_dir)
        byte_level_tokenizer(merged_dir)
        gguf_file = staging / f"{source.slug}-{quant}.gguf"
        if ollama:
            system = source.meta.get("system_prompt")
            write_modelfile(
                merged_dir, staging, gguf_file.name, source.name, str(system) if system else None
            )
        numpy_quant = quant if quant in NUMPY_QUANTS else None
        converted = merged_dir / "converted.gguf"
        convert_to_gguf(
            merged_dir,
            converted,
            "f32" if numpy_quant else quant,
            settings.logs_path / "export.log",
        )
        rewrite_gguf(converted, gguf_file, numpy_quant, end_of_turn_token(merged_dir))
        made_with = "llama.cpp's convert_hf_to_gguf" + (
            " (f32), then gguf-py's block quantiser" if numpy_quant else ""
        )
    if ollama:
        return (
            run_note(gguf_file.name, source.slug)
            + f"\nThe GGUF ({quant}) was made with {made_with}."
        )
    return (
        f"Files: `{gguf_file.name}` ({quant}), made with {made_with}. "
        "Run it with llama.cpp or Ollama, or load it with transformers (`gguf_file=`)."
    )


def _download(
    source: ExportSource, export_format: str, quant: str | None, folder: Path, bundle: bool
) -> Path | None:
    if export_format == "gguf":
        return folder / f"{source.slug}-{quant}.gguf"
    if export_format == "adapter" or bundle:
        archive = folder.parent / f"{folder.name}.zip"
        # GGUF and safetensors weights barely compress: stored, they zip in seconds
        return zip_folder(folder, archive, compress=export_format == "adapter")
    return None
