"""Experiment trackers (REPORT_TO): the session's short run reports to TensorBoard and MLflow in
its run folder, read back here with each library's own reader; a missing package or an unknown
tracker is refused before any training starts."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient

from garden.config import TRACKERS, Settings, load_settings
from garden.errors import ConfigError, JobError
from garden.services import training

FACTS = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "garden_facts.jsonl"


@pytest.fixture
def own_settings(tmp_path: Path) -> Settings:
    settings = Settings(_env_file=None, storage_root=tmp_path / "storage")
    settings.ensure_storage()
    return settings


@pytest.mark.slow
def test_the_short_run_is_in_tensorboard(short_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    job = short_run.job
    events = EventAccumulator(
        str(Path(job.output_dir) / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0}
    )
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "eval/loss", "energy_kwh", "emissions_kg"} <= scalars, scalars
    losses = events.Scalars("train/loss")
    assert [event.step for event in losses] == [1, 2, 3, 4]
    assert all(math.isfinite(event.value) and event.value > 0 for event in losses)
    (energy,) = events.Scalars("energy_kwh")
    (emissions,) = events.Scalars("emissions_kg")
    assert energy.step == 4 and math.isclose(energy.value, job.energy_kwh, rel_tol=1e-5)
    assert math.isclose(emissions.value, job.emissions_kg, rel_tol=1e-5)
    # The evaluation after training (conftest's storage evaluates every run) is there too.
    assert "evaluation/rouge_l" in scalars and "evaluation/eval_loss" in scalars
    assert any(tag.startswith("garden/hyperparameters") for tag in events.Tags()["tensors"])


@pytest.mark.slow
def test_the_short_run_is_in_mlflow(short_run, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    job = short_run.job
    out = Path(job.output_dir)
    state = json.loads((out / "trackers.json").read_text())
    assert state["report_to"] == ["tensorboard", "mlflow"]
    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("model-garden")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])  # one run, no stray ones
    assert run.info.run_id == state["mlflow_run_id"] and run.info.status == "FINISHED"
    metrics, params = run.data.metrics, run.data.params
    assert {"loss", "eval_loss", "energy_kwh", "emissions_kg", "evaluation/rouge_l"} <= set(
        metrics
    ), metrics
    assert math.isclose(metrics["energy_kwh"], job.energy_kwh, rel_tol=1e-5)
    assert math.isclose(metrics["emissions_kg"], job.emissions_kg, rel_tol=1e-5)
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(point.step for point in history) == [1, 2, 3, 4]
    # The spec (model, dataset, LoRA settings) beside transformers' TrainingArguments.
    assert params["spec.lora_r"] == "16" and params["spec.name"] == "short-run"
    meta = json.loads((out / "garden.json").read_text())
    assert (params["base_model"], params["dataset"]) == (
        meta["base_model_id"],
        meta["dataset_name"],
    )
    assert params["max_steps"] == "4" and "learning_rate" in params


def _missing_tracker() -> str:
    missing = [name for name in TRACKERS if importlib.util.find_spec(name) is None]
    if not missing:
        pytest.skip("every tracker package is installed here")
    return missing[0]


def test_a_missing_tracker_is_one_line_naming_the_extra_and_queues_nothing(own_settings):
    name = _missing_tracker()
    spec = training.build_spec({"dataset": str(FACTS), "max_steps": 1, "report_to": name})
    with pytest.raises(ConfigError) as raised:
        training.submit(spec, settings=own_settings)
    message = raised.value.message
    assert (
        message
        == f"REPORT_TO names {name}, which is not installed: run `uv sync --extra tracking`."
    )
    # The same through the REPORT_TO setting, with a run that names none of its own.
    owner = own_settings.model_copy(update={"report_to": f"tensorboard,{name}"})
    with pytest.raises(ConfigError, match="uv sync --extra tracking"):
        training.submit(training.build_spec({"dataset": str(FACTS)}), settings=owner)
    assert training.list_jobs(settings=own_settings) == []
    # A run that reports to none starts whatever REPORT_TO names.
    spec = training.build_spec({"dataset": str(FACTS), "report_to": "none"})
    assert spec.report_to == []


def test_an_unknown_tracker_is_refused_by_the_setting_the_service_rest_and_cli(monkeypatch):
    monkeypatch.setenv("REPORT_TO", "tensorboard,comet")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "REPORT_TO: unknown tracker comet: use any of tensorboard, mlflow, wandb" in str(
        raised.value.message
    )
    monkeypatch.setenv("REPORT_TO", " MLflow , tensorboard,none")
    assert load_settings().trackers == ("tensorboard", "mlflow")

    with pytest.raises(JobError, match="report_to: unknown tracker comet"):
        training.build_spec({"dataset": str(FACTS), "report_to": "comet"})

    from garden.api.routes.training import router

    api = FastAPI()
    api.include_router(router)
    answer = TestClient(api).post(
        "/api/v1/training/jobs", json={"dataset": "facts", "report_to": ["comet"]}
    )
    assert answer.status_code == 422 and "unknown tracker comet" in answer.text

    from garden.cli.train import train

    result = CliRunner().invoke(train, ["--dataset", str(FACTS), "--report-to", "comet"])
    assert result.exit_code != 0 and "unknown tracker comet" in result.output


def test_a_public_demo_keeps_the_owners_trackers(own_settings):
    demo = own_settings.model_copy(update={"public_demo": True, "report_to": "tensorboard"})
    for asked in (None, ["tensorboard"]):
        spec = training.build_spec({"dataset": "facts", "report_to": asked})
        training.check_demo_trackers(spec, demo)
    for asked in (["tensorboard", "wandb"], []):
        spec = training.build_spec({"dataset": "facts", "report_to": asked})
        with pytest.raises(ConfigError, match="owner's experiment trackers"):
            training.check_demo_trackers(spec, demo)
    # Outside a demo a run picks its own.
    training.check_demo_trackers(spec, own_settings)
