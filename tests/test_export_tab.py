"""The Export section of the Fine-tune tab, through the shared app and gradio_client."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_export_panel_module_stays_torch_free() -> None:
    source = (Path(__file__).parent.parent / "garden" / "ui" / "export_panel.py").read_text()
    assert "import torch" not in source and "transformers" not in source


@pytest.mark.slow
def test_export_a_gguf_from_the_tab_and_download_it(app) -> None:
    from gradio_client import Client

    client = Client(app.url, verbose=False)
    line, file = client.predict(None, "adapter", "f16", api_name="/export_model")
    assert line == "Pick a run or a model to export." and file is None
    line, file = client.predict("SmolLM2-135M-Instruct", "adapter", "f16", api_name="/export_model")
    assert "has no LoRA adapter" in line and file is None
    assert "/tmp" not in line

    line, file = client.predict("SmolLM2-135M-Instruct", "gguf", "q8_0", api_name="/export_model")
    assert "Exported" in line and "exports/SmolLM2-135M-Instruct-gguf-q8_0" in line, line
    downloaded = Path(file)
    assert downloaded.name == "SmolLM2-135M-Instruct-q8_0.gguf"
    assert downloaded.read_bytes()[:4] == b"GGUF"
