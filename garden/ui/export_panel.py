"""The Export section of the Fine-tune tab: pick a run or model and a format, download the result.

The web never writes where a visitor says: exports go under STORAGE_ROOT/exports only, and a
push to the Hub is left to the CLI (it uses the server's token).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from garden import present
from garden.config import Settings
from garden.services import export as export_service
from garden.services import models as model_service
from garden.ui.boundary import code, guard

FORMAT_CHOICES = [
    ("LoRA adapter (zip)", "adapter"),
    ("Merged safetensors (zip)", "merged"),
    ("GGUF (llama.cpp)", "gguf"),
    ("Ollama (GGUF + Modelfile, zip)", "ollama"),
]
GGUF_FORMATS = ("gguf", "ollama")
INTRO = (
    "#### Export\nA LoRA adapter (PEFT, zipped), merged safetensors, GGUF for llama.cpp, or a "
    "zipped folder for Ollama (the GGUF, a `Modelfile` with the chat template and stop tokens, "
    "and the two commands to run it). Every export carries a model card with the dataset, the "
    "losses and the run's energy and CO₂. To push to the Hugging Face Hub use "
    "`model-garden export MODEL --push REPO_ID`."
)


def model_choices(settings: Settings) -> list[tuple[str, str]]:
    return [(view.label, view.id) for view in model_service.chat_choices(settings=settings)]


class ExportPanel:
    """Layout and bindings of the Export section."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        with gr.Accordion("Export", open=False, elem_id="export-panel"):
            gr.Markdown(INTRO)
            with gr.Row():
                self.model = gr.Dropdown(
                    model_choices(settings), label="Run or model", scale=3, elem_id="export-model"
                )
                self.format = gr.Radio(
                    FORMAT_CHOICES,
                    value="adapter",
                    label="Format",
                    scale=3,
                    elem_id="export-format",
                )
                self.quant = gr.Radio(
                    list(export_service.GGUF_QUANTS), value="f16", label="GGUF type", scale=1
                )
                self.check_quality = gr.Checkbox(
                    False,
                    label="Check quality",
                    info="GGUF/Ollama of a run: ROUGE-L on its held-out prompts, quantized vs not",
                    scale=1,
                    elem_id="export-check-quality",
                )
            with gr.Row():
                self.refresh = gr.Button("↻ Refresh list", scale=1)
                self.button = gr.Button("Export", variant="primary", scale=1, elem_id="export-btn")
            self.status = gr.Markdown(elem_id="export-status")
            self.file = gr.File(label="Download", interactive=False, elem_id="export-file")
        failed = guard("exporting", lambda line: (line, None), settings)
        self.button.click(
            failed(self.run),
            [self.model, self.format, self.quant, self.check_quality],
            [self.status, self.file],
            api_name="export_model",
        )
        self.refresh.click(self.refresh_models, None, self.model)
        self.format.change(
            self.default_quant, self.format, self.quant, api_visibility="private", queue=False
        )

    def run(
        self, model: str | None, export_format: str, quant: str, check_quality: bool = False
    ) -> tuple[str, Any]:
        if not model:
            return "Pick a run or a model to export.", None
        request = export_service.WebExportRequest.model_validate(
            {
                "model": model,
                "format": export_format,
                "quant": quant if export_format in GGUF_FORMATS else None,
                "check_quality": check_quality,
            }
        )
        view = export_service.export_for_web(request, settings=self.settings)
        line = (
            f"Exported {code(view.model)} as {view.format} "
            f"({present.file_size(view.size_bytes)}) to {code(view.folder or view.format)}: "
            f"{len(view.files)} files, model card included."
        )
        if view.quality is not None:
            line += " " + present.quant_cost(view.quality) + "."
        if view.commands:
            line += " Unzip it and run " + " then ".join(code(c) for c in view.commands) + "."
        return line, view.download_abs

    def default_quant(self, export_format: str) -> Any:
        """The recommended type when the format changes (q8_0 for Ollama, f16 for GGUF)."""
        return gr.update(value=export_service.DEFAULT_QUANTS.get(export_format, "f16"))

    def refresh_models(self) -> Any:
        return gr.update(choices=model_choices(self.settings))
