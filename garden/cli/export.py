"""`model-garden export MODEL --format adapter|merged|gguf|ollama`: export a run or a model."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from garden import present
from garden.cli.output import console, print_json
from garden.services import export as export_service


@click.command("export")
@click.argument("model")
@click.option(
    "--format",
    "export_format",
    type=click.Choice(export_service.EXPORT_FORMATS),
    required=True,
    help="adapter (LoRA, zipped), merged (safetensors), gguf, or ollama (GGUF + Modelfile).",
)
@click.option(
    "--quant",
    type=click.Choice(export_service.GGUF_QUANTS),
    default=None,
    help=f"GGUF quantisation (default {export_service.DEFAULT_QUANTS['gguf']}; "
    f"{export_service.DEFAULT_QUANTS['ollama']} for ollama).",
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write (default STORAGE_ROOT/exports/NAME-FORMAT).")  # fmt: skip
@click.option("--push", "push_to", default=None, help="Hugging Face repo id to push to.")
@click.option("--public", is_flag=True, help="Create the Hub repository as public.")
@click.option("--dry-run", is_flag=True, help="Write the folder that would be pushed; no push.")
@click.option(
    "--check-quality",
    is_flag=True,
    help="GGUF/Ollama of a run: answer its held-out prompts with the unquantized model and the "
    "GGUF and print both ROUGE-L.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def export(
    model: str,
    export_format: str,
    quant: str | None,
    out_dir: Path | None,
    push_to: str | None,
    public: bool,
    dry_run: bool,
    check_quality: bool,
    as_json: bool,
) -> None:
    """Export MODEL (a fine-tuned run or any listed model) as an adapter, merged model, GGUF or
    a folder Ollama runs (`ollama create NAME -f Modelfile` in it)."""
    request = export_service.ExportRequest.model_validate(
        {
            "model": model,
            "format": export_format,
            "quant": quant,
            "push_to": push_to,
            "dry_run": dry_run,
            "private": not public,
            "check_quality": check_quality,
        }
    )
    if as_json:
        print_json(export_service.export(request, out_dir=out_dir))
        return
    with console.status(f"Exporting {model} ({export_format})…"):
        view = export_service.export(request, out_dir=out_dir)
    console.print(
        f"[green]{view.model}[/] exported as {view.format} "
        f"({present.file_size(view.size_bytes)}) to {view.folder_abs}",
        highlight=False,
    )
    if view.quality is not None:
        console.print(escape(present.quant_cost(view.quality)), highlight=False)
    if view.download_abs:
        console.print(f"Download: {escape(str(view.download_abs))}", highlight=False)
    if view.commands:
        console.print(f"Run it with Ollama, in {escape(view.folder_abs)}:", highlight=False)
        for command in view.commands:
            console.print(f"  {escape(command)}", highlight=False)
    if view.pushed_url:
        console.print(f"Pushed to {escape(str(view.pushed_url))}", highlight=False)
    elif view.dry_run:
        console.print(f"Dry run: the folder that would be pushed is {escape(str(view.folder_abs))}")
