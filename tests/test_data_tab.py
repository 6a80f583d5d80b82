"""The Data tab driven through a running Gradio app with gradio_client: upload to saved dataset."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client, handle_file

from garden.services import datasets
from garden.ui import data_tab


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def data_app(isolated_settings):
    with gr.Blocks() as demo:
        data_tab.build(isolated_settings)
    demo.queue()
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield client, isolated_settings
    client.close()
    demo.close()


def inspect_args(kind: str, upload=None, bundled=None, hub="", imported=None, mapping=""):
    return {
        "kind_value": kind,
        "upload_value": upload,
        "bundled_value": bundled,
        "hub_value": hub,
        "imported_value": imported,
        "model_value": "SmolLM2-135M-Instruct",
        "seq_value": 2048,
        "mapping_value": mapping,
    }


def test_upload_inspect_save_delete(data_app, tmp_path: Path) -> None:
    client, settings = data_app
    upload = tmp_path / "my data (1).jsonl"
    rows = [{"ask": f"Q{i}?", "reply": f"A{i}."} for i in range(20)]
    upload.write_text("\n".join(json.dumps(r) for r in rows) + "\n{bad line\n")

    # Unknown field names: a clear error box, no traceback.
    summary, *_ = client.predict(
        **inspect_args(data_tab.UPLOAD, upload=handle_file(str(upload))), api_name="/data_inspect"
    )
    assert "format was not recognised" in summary and "Traceback" not in summary

    # With a mapping override the file is usable; the bad line is reported with its number.
    mapping = json.dumps({"prompt": "ask", "completion": "reply"})
    summary, validation, plot, raw_rows, rendered, page, *_ = client.predict(
        **inspect_args(data_tab.UPLOAD, upload=handle_file(str(upload)), mapping=mapping),
        api_name="/data_inspect",
    )
    assert "prompt_completion" in summary and "20 usable" in summary
    assert "line 21" in validation and "not valid JSON" in validation
    assert plot is not None
    assert raw_rows["headers"] == ["ask", "reply"] and len(raw_rows["data"]) == 5
    assert "<|im_start|>user\nQ0?<|im_end|>" in rendered
    assert page == "Page 1 of 5"
    raw_next, _, page_next = client.predict(api_name="/data_next_page")
    assert page_next == "Page 2 of 5" and raw_next["data"][0][0] == "Q5?"

    # Saving without dropping the bad row fails clearly; with it, the dataset is saved.
    save = dict(
        **inspect_args(data_tab.UPLOAD, upload=handle_file(str(upload)), mapping=mapping),
        name_value="ui-qa",
        fraction=0.2,
        seed_value=1,
    )
    result, *_ = client.predict(**save, drop=False, api_name="/data_save")
    assert "1 of 21 rows cannot be used" in result
    result, table, *_ = client.predict(**save, drop=True, api_name="/data_save")
    assert "Saved **ui-qa**" in result
    assert table["data"][0][1] == "ui-qa"

    record = datasets.get_dataset("ui-qa", settings=settings)
    assert record.rows == 20 and record.train_rows + record.eval_rows == 20
    raw_files = list(settings.raw_datasets_path.iterdir())
    assert [p.name for p in raw_files] == ["my_data_1_.jsonl"]  # sanitised, inside raw/

    # The imported dataset can be inspected again, then deleted.
    summary, *_ = client.predict(
        **inspect_args(data_tab.IMPORTED, imported=record.id), api_name="/data_inspect"
    )
    assert "openai" in summary
    result, table, *_ = client.predict(record.id, api_name="/data_delete")
    assert "Deleted **ui-qa**" in result and table["data"] == []
    assert not Path(record.path).exists()


def test_bundled_and_hub_errors(data_app) -> None:
    client, _ = data_app
    summary, validation, *_ = client.predict(
        **inspect_args(data_tab.BUNDLED, bundled="garden_facts"), api_name="/data_inspect"
    )
    assert "`openai`" in summary and "No problems found" in validation
    summary, *_ = client.predict(
        **inspect_args(data_tab.HUB, hub="tatsu-lab/alpaca"), api_name="/data_inspect"
    )
    assert "hub is unreachable" in summary
    summary, *_ = client.predict(**inspect_args(data_tab.UPLOAD), api_name="/data_inspect")
    assert "No file uploaded yet" in summary


def test_ui_module_stays_torch_free() -> None:
    import subprocess

    code = "import sys, garden.ui.data_tab; print('torch' in sys.modules or 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
