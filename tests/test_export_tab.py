"""The Export section of the Fine-tune tab, through the shared app and gradio_client."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_export_panel_module_stays_torch_free() -> None:
    source = (Path(__file__).parent.parent / "garden" / "ui" / "export_panel.py").read_text()
    assert "import torch" not in source and "transformers" not in source


@pytest.mark.slow
def test_export_a_gguf_from_the_tab_and_download_it(app, default_model_path: Path) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app.url, verbose=False)
    line, file = client.predict(None, "adapter", "f16", False, api_name="/export_model")
    assert line == "Pick a run or a model to export." and file is None
    line, file = client.predict(
        "SmolLM2-135M-Instruct", "adapter", "f16", False, api_name="/export_model"
    )
    assert "has no LoRA adapter" in line and file is None
    assert "/tmp" not in line
    for host_path in (str(default_model_path), str(default_model_path.parent)):
        with pytest.raises(AppError, match="not in the list of choices"):
            client.predict(host_path, "merged", "f16", False, api_name="/export_model")

    line, file = client.predict(
        "SmolLM2-135M-Instruct", "gguf", "q8_0", False, api_name="/export_model"
    )
    assert "Exported" in line and "exports/SmolLM2-135M-Instruct-gguf-q8_0" in line, line
    downloaded = Path(file)
    assert downloaded.name == "SmolLM2-135M-Instruct-q8_0.gguf"
    assert downloaded.read_bytes()[:4] == b"GGUF"


def test_the_web_export_service_refuses_a_host_folder(
    isolated_settings, default_model_path
) -> None:
    """Behind Gradio's own list check: the tab and the REST API export listed models only."""
    from garden.errors import ModelLoadError
    from garden.services.export import WebExportRequest, export_for_web

    request = WebExportRequest(model=str(default_model_path), format="merged")
    with pytest.raises(ModelLoadError, match="not a listed model"):
        export_for_web(request, settings=isolated_settings)
