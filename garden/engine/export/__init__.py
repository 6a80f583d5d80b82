"""Export a fine-tuned run or a listed model: LoRA adapter, merged safetensors, GGUF, Hub push."""

from garden.engine.export.run import EXPORT_FORMATS, GGUF_QUANTS, ExportResult, export_source
from garden.engine.export.source import ExportSource, find_source

__all__ = [
    "EXPORT_FORMATS",
    "GGUF_QUANTS",
    "ExportResult",
    "ExportSource",
    "export_source",
    "find_source",
]
