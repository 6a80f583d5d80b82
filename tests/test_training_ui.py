"""The Fine-tune tab driven through a launched Gradio app with gradio_client."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

FACTS = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "garden_facts.jsonl"


def test_tab_module_stays_torch_free() -> None:
    code = (
        "import sys, garden.ui.finetune_tab, garden.engine.training, garden.cli; "
        "print('torch' in sys.modules, 'transformers' in sys.modules, 'trl' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


@pytest.fixture
def tab_app(isolated_settings):
    import gradio as gr

    from garden.ui import finetune_tab

    with gr.Blocks() as demo:
        finetune_tab.build(isolated_settings)
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        yield url, isolated_settings
    finally:
        demo.close()


def _form(**values):
    from garden.ui.finetune_tab import FORM_FIELDS

    defaults = {
        "base_model": "",
        "dataset": "",
        "name": "",
        "method": "lora",
        "epochs": 1,
        "max_steps": 0,
        "learning_rate": 1e-3,
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.0,
        "batch_size": 2,
        "gradient_accumulation": 1,
        "max_seq_len": 128,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "lora_target_modules": "all-linear",
        "assistant_only_loss": True,
        "packing": True,
        "torch_compile": False,
        "int8_matmuls": "auto",
        "eval_steps": 0,
        "seed": 42,
        "precision": "auto",
        "backend": "auto",
        "checkpoint_interval": 0,
        "num_processes": 1,
        "strategy": "auto",
    }
    defaults.update(values)
    return [defaults[field] for field in FORM_FIELDS]


def test_the_plan_button_shows_what_start_would_do_and_starts_nothing(tab_app):
    from gradio_client import Client

    from garden.data import import_dataset
    from garden.services import training

    url, settings = tab_app
    dataset = import_dataset(FACTS, "facts-plan-ui", settings=settings)
    client = Client(url, verbose=False)
    assert "Cannot plan" in client.predict(*_form(), api_name="/plan_training")
    refused = client.predict(
        *_form(dataset=dataset.id, learning_rate=-1), api_name="/plan_training"
    )
    assert "Cannot plan" in refused and "learning_rate" in refused
    shown = client.predict(
        *_form(dataset=dataset.id, name="planned-ui", batch_size=8, max_seq_len=512),
        api_name="/plan_training",
    )
    assert shown.startswith("**The plan** (nothing was started)"), shown
    assert "planned-ui" in shown and "facts-plan-ui" in shown
    assert "Memory: about" in shown and "GB per process" in shown, shown
    assert "gradient checkpointing off" in shown
    assert training.list_jobs(settings=settings) == []


@pytest.mark.slow
def test_start_a_run_from_the_tab_and_see_metrics_arrive(tab_app):
    from gradio_client import Client

    from garden.data import import_dataset
    from garden.services import training

    url, settings = tab_app
    dataset = import_dataset(FACTS, "facts-ui", settings=settings)
    client = Client(url, verbose=False)

    refused = client.predict(*_form(), api_name="/start_training")
    assert "Cannot start" in refused[0]
    refused = client.predict(
        *_form(dataset=dataset.id, learning_rate=-1), api_name="/start_training"
    )
    assert "Cannot start" in refused[0] and "learning_rate" in refused[0]

    started = client.predict(
        *_form(dataset=dataset.id, name="ui-run", max_steps=3), api_name="/start_training"
    )
    job_id = training.list_jobs(limit=1, settings=settings)[0].id
    assert job_id in started[0]

    other_browser = Client(url, verbose=False)
    deadline = time.monotonic() + 600
    seen_running = False
    while time.monotonic() < deadline:
        status, _loss, _lr, _samples, log_tail, _runs, _pick = other_browser.predict(
            "", api_name="/refresh_training"
        )
        assert job_id in status
        seen_running = seen_running or "`running`" in status
        if "`completed`" in status:
            break
        time.sleep(1.0)
    assert "`completed`" in status, status
    assert "step **3/3**" in status and "Worker process" in log_tail
    metrics = training.metrics(job_id, settings=settings)
    assert [m.step for m in metrics if m.loss is not None] == [1, 2, 3]
    assert seen_running, "a second browser never saw the run while it was running"


@pytest.mark.slow
def test_start_while_the_default_model_is_prepared_says_so_at_once(tmp_path: Path) -> None:
    """A fresh install: Start pressed while the embedded model is converted gets an immediate
    "preparing" state with its progress, then goes on by itself once the model is ready."""
    import fcntl

    import gradio as gr
    from gradio_client import Client

    from garden.config import Settings
    from garden.services import models
    from garden.ui import finetune_tab

    fresh = Settings(_env_file=None, storage_root=tmp_path / "storage")
    fresh.ensure_storage()
    assert models.default_model_status(settings=fresh).state == "not_started"
    with gr.Blocks() as demo:
        finetune_tab.build(fresh)
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    lock = (fresh.temp_path / ".prepare-default.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as if another start were still converting it
        job = Client(url, verbose=False).submit(
            *_form(dataset="not-imported"), api_name="/start_training"
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not job.outputs():
            time.sleep(0.2)
        first = job.outputs()[0][0]
        assert "Preparing the default model" in first and "so far" in first, first
        assert models.default_model_status(settings=fresh).state == "preparing"
        fcntl.flock(lock, fcntl.LOCK_UN)
        final = job.result(timeout=600)[0]
        assert "Cannot start" in final and "not-imported" in final, final
        assert models.default_model_status(settings=fresh).state == "ready"
    finally:
        lock.close()
        demo.close()


@pytest.mark.slow
def test_a_dpo_run_started_from_the_tab_shows_its_reward_margin(tab_app):
    """Issue 13: a preference run goes through the tab end to end (bundled pairs, DPO preset)."""
    from gradio_client import Client

    from garden.data import import_dataset
    from garden.services import training

    url, settings = tab_app
    prefs = FACTS.with_name("garden_prefs.jsonl")
    dataset = import_dataset(prefs, "prefs-ui", settings=settings)
    assert training.objectives_for(dataset.id, settings=settings).objectives == ["dpo", "orpo"]
    client = Client(url, verbose=False)
    form = _form(dataset=dataset.id, name="ui-dpo", max_steps=2, learning_rate=5e-4)
    started = client.predict(*form, "dpo", 0.1, "", api_name="/start_training")
    job_id = training.list_jobs(limit=1, settings=settings)[0].id
    assert job_id in started[0]
    job = training.wait(job_id, timeout=900, settings=settings)
    assert job.status == "completed" and job.objective == "dpo", job.error
    status = client.predict(job_id, api_name="/refresh_training")[0]
    assert "`completed`" in status and "reward margin" in status, status
    margins = [m.reward_margin for m in training.metrics(job_id, settings=settings)]
    assert any(margin is not None for margin in margins)


def test_the_tracker_choice_opens_as_report_to_and_submits_only_a_change(tmp_path: Path) -> None:
    """Checked as REPORT_TO sets them, the trackers leave the spec as the preset's (the app's
    setting applies); another choice, none included, is the run's own. On a public demo the
    choice is the owner's: shown, not editable."""
    import gradio as gr
    from conftest import private_settings

    from garden.ui import finetune_tab, run_view

    model = tmp_path / "model"
    model.mkdir()
    for public in (False, True):
        settings = private_settings(
            tmp_path / f"public-{public}", model, report_to="tensorboard", public_demo=public
        )
        with gr.Blocks():
            form = finetune_tab.RunForm(settings)
            view = run_view.run_view()
        tab = finetune_tab.FineTuneTab(settings, form, view)
        assert form.report_to.value == ["tensorboard"]
        assert form.report_to.interactive is (not public)
        values = {name: form.component(name).value for name in finetune_tab.START_FIELDS}
        values["dataset"] = "facts"

        def submitted(trackers: list[str], values: dict = values, tab: Any = tab) -> dict:
            form_values = {**values, "report_to": trackers}
            return tab.submission(*(form_values[name] for name in finetune_tab.START_FIELDS))

        assert "report_to" not in submitted(["tensorboard"])
        assert submitted([])["report_to"] == []
        assert submitted(["mlflow", "tensorboard"])["report_to"] == ["mlflow", "tensorboard"]
    # A run's own choice shows again when its settings are filled in (None leaves the form).
    assert finetune_tab.form_values({"report_to": ["mlflow"]}) == {"report_to": ["mlflow"]}
    assert finetune_tab.form_values({"report_to": None}) == {}
