"""Export a fine-tuned run or a listed model: LoRA adapter, merged safetensors, GGUF,
Ollama (GGUF + Modelfile), Hub push."""

from garden.engine.export.run import (
    DEFAULT_QUANTS,
    EXPORT_FORMATS,
    GGUF_FORMATS,
    GGUF_QUANTS,
    ExportResult,
    export_source,
)
from garden.engine.export.source import ExportSource, find_source

__all__ = [
    "DEFAULT_QUANTS",
    "EXPORT_FORMATS",
    "GGUF_FORMATS",
    "GGUF_QUANTS",
    "ExportResult",
    "ExportSource",
    "export_source",
    "find_source",
]
