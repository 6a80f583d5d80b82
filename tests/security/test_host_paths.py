"""No host path from the web: every free-text field of the UI, driven through the real app.

Host paths (absolute, relative, a symlink planted in ``datasets/raw``, a hub id that names a
local folder) typed into the Data, Fine-tune and Chat tabs read nothing of the file, show no
absolute server path and start no job. The CLI keeps reading local paths (its user owns the
machine); that is tested in ``tests/test_data_cli.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from garden.config import get_settings
from garden.errors import DatasetError, GardenError
from garden.services import datasets, training, web
from garden.services.datasets import DatasetSource
from garden.ui import data_tab

from .web_calls import call, inspect_args

SECRET = "root:x:0:0"
MARKER = "top-secret-marker-7"


@pytest.fixture(scope="module")
def planted(app: Any) -> dict[str, str]:
    """A symlink to /etc/passwd in ``datasets/raw`` and a local folder named like a hub id."""
    raw = get_settings().raw_datasets_path
    raw.mkdir(parents=True, exist_ok=True)
    link = raw / "passwd.jsonl"
    if not link.is_symlink():
        link.symlink_to("/etc/passwd")
    workdir = Path(app.log).parent  # the app's working directory
    local = workdir / "acme" / "secrets"
    local.mkdir(parents=True, exist_ok=True)
    (local / "train.jsonl").write_text(json.dumps({"text": MARKER}) + "\n")
    return {"link": str(link), "hub_like": "acme/secrets"}


def host_paths(planted: dict[str, str]) -> list[str]:
    return [
        "/etc/passwd",
        "../../../../etc/passwd",
        "/etc",
        planted["link"],
        "datasets/raw/passwd.jsonl",
        "storage/..",
        "..",
        planted["hub_like"],
        f"{planted['hub_like']}/train.jsonl",
    ]


def assert_clean(text: str, typed: str = "") -> None:
    """Nothing of a file, no server path (beyond what was typed, which Gradio may echo)."""
    text = text.replace(typed, "<typed>") if typed else text
    assert SECRET not in text and MARKER not in text, text[:500]
    assert str(get_settings().storage_root.resolve()) not in text, text[:500]
    assert "Traceback" not in text, text[:500]


def start_args(**values: Any) -> list[Any]:
    from garden.ui.finetune_tab import FORM_FIELDS

    form = {
        "base_model": "", "dataset": "", "name": "", "method": "lora", "epochs": 1,
        "max_steps": 1, "learning_rate": 1e-3, "lr_scheduler": "cosine", "warmup_ratio": 0.0,
        "batch_size": 2, "gradient_accumulation": 1, "max_seq_len": 128, "lora_r": 8,
        "lora_alpha": 16, "lora_dropout": 0.05, "lora_target_modules": "all-linear",
        "assistant_only_loss": True, "packing": True, "torch_compile": False, "eval_steps": 0,
        "seed": 42, "int8_matmuls": "auto",
        "precision": "auto", "backend": "auto", "checkpoint_interval": 0, "num_processes": 1,
        "strategy": "auto", **values,
    }  # fmt: skip
    return [form[name] for name in FORM_FIELDS]


@pytest.mark.slow
def test_data_tab_reads_no_host_path(app: Any, planted: dict[str, str]) -> None:
    client = Client(app.url, verbose=False)
    before = len(datasets.list_datasets())
    for path in host_paths(planted):
        for field, kind in (
            ("hub_value", data_tab.HUB),
            ("imported_value", data_tab.IMPORTED),
            ("model_value", data_tab.BUNDLED),
        ):
            extra = {"bundled_value": "garden_facts"} if kind == data_tab.BUNDLED else {}
            args = inspect_args(kind, **{field: path, **extra})
            text = call(client, **args, api_name="/data_inspect")
            assert_clean(text, path)
            if kind != data_tab.BUNDLED:
                assert "Usable" not in text, (path, field, text[:300])
            saved = call(client, **args, name_value="stolen", fraction=0.1, seed_value=1,
                         drop=True, api_name="/data_save")  # fmt: skip
            assert_clean(saved, path)
        mapping = json.dumps({"format": "text", "text": path})
        args = inspect_args(data_tab.BUNDLED, bundled_value="garden_facts", mapping_value=mapping)
        assert_clean(call(client, **args, api_name="/data_inspect"), path)
    assert len(datasets.list_datasets()) == before
    client.close()


def test_upload_source_takes_only_what_gradio_saved(planted: dict[str, str]) -> None:
    for path in host_paths(planted):
        form = data_tab.SourceForm(data_tab.UPLOAD, path, *[None] * 7)
        with pytest.raises(DatasetError) as refused:
            form.source  # noqa: B018
        assert SECRET not in str(refused.value)
        with pytest.raises(DatasetError):
            datasets.inspect(DatasetSource(kind="upload", value=path))
    with pytest.raises(DatasetError):  # the planted link, even given as an absolute path
        datasets.inspect(DatasetSource(kind="upload", value=planted["link"]))


@pytest.mark.slow
def test_finetune_tab_starts_nothing_from_a_host_path(app: Any, planted: dict[str, str]) -> None:
    client = Client(app.url, verbose=False)
    before = len(training.list_jobs(limit=1000))
    facts = "garden_facts.jsonl"
    for path in [*host_paths(planted), facts]:
        for values in (
            {"dataset": path},
            {"dataset": path, "base_model": "SmolLM2-135M-Instruct"},
            {"dataset": "no-such-dataset", "base_model": path},
            {"dataset": path, "name": path},
            {"dataset": path, "lora_target_modules": path},
        ):
            text = call(client, *start_args(**values), api_name="/start_training")
            assert_clean(text, path)
            assert "Cannot start" in text or "Error" in text, (values, text[:300])
    assert len(training.list_jobs(limit=1000)) == before
    client.close()


def test_web_checks_refuse_what_the_cli_accepts(planted: dict[str, str]) -> None:
    for path in host_paths(planted):
        with pytest.raises(GardenError):
            web.check_dataset(path)
        with pytest.raises(GardenError):
            training.submit_from_web({"dataset": path})
        if path != planted["hub_like"]:
            with pytest.raises(GardenError):
                web.check_model(path)
    for bad_hub in ("storage/..", "/etc/passwd", "../x/y", ".x/y", "a/b/c", "a/b@../c"):
        with pytest.raises(DatasetError):
            web.check_hub_dataset(bad_hub)
    assert (
        web.check_hub_dataset("tatsu-lab/alpaca@default:train") == "tatsu-lab/alpaca@default:train"
    )


def test_hub_loader_never_opens_a_local_folder(tmp_path: Path, monkeypatch: Any) -> None:
    """``datasets.load_dataset`` opens a local folder of the same name first: refused before."""
    from garden.data.hub import check_remote
    from garden.data.sources import Source

    (tmp_path / "acme" / "secrets").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for hub_id in ("acme/secrets", "storage/..", "../etc/passwd"):
        with pytest.raises(DatasetError, match="not a hub dataset id"):
            check_remote(Source(kind="hub", ref=hub_id, hub_id=hub_id))
    check_remote(Source(kind="hub", ref="tatsu-lab/alpaca", hub_id="tatsu-lab/alpaca"))


def test_messages_show_no_absolute_server_path() -> None:
    settings = get_settings()
    inside = settings.storage_root.resolve() / "models" / "finetuned" / "run-1"
    text = web.safe_text(f"Model saved to {inside}. Upload /tmp/gradio/abc/my.jsonl: line 3")
    assert text == "Model saved to models/finetuned/run-1. Upload my.jsonl: line 3"
    assert web.relative_path(inside) == "models/finetuned/run-1"


def test_ui_boundary_turns_any_exception_into_one_line(caplog: Any) -> None:
    from garden.ui.boundary import guard

    @guard("reading the file", lambda message: f"shown: {message}")
    def handler() -> str:
        raise PermissionError(13, "Permission denied", "/etc/shadow")

    with pytest.warns(UserWarning), caplog.at_level("ERROR", logger="garden.ui"):
        shown_text = handler()
    assert "\n" not in shown_text and "/etc/shadow" not in shown_text
    assert "PermissionError" in shown_text and "log" in shown_text  # what, and where to look
    assert "Traceback" in caplog.text or caplog.records[0].exc_info  # the trace: log only


def test_a_public_demo_caps_the_steps_of_a_web_run() -> None:
    from garden.config import Settings

    spec = training.build_spec({"dataset": "facts", "max_steps": 500})
    demo = Settings(_env_file=None, public_demo=True, public_demo_max_steps=20)
    assert training.capped_for_demo(spec, demo).max_steps == 20
    assert (
        training.capped_for_demo(spec.model_copy(update={"max_steps": None}), demo).max_steps == 20
    )
    assert training.capped_for_demo(spec, Settings(_env_file=None)).max_steps == 500
