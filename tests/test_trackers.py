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


def _logged_losses(short_run) -> dict[int, float]:
    """The train losses the run logged, as the training service recorded them."""
    points = training.metrics(short_run.job.id, settings=short_run.settings)
    losses = {point.step: point.loss for point in points if point.loss is not None}
    assert len(losses) >= 3
    return losses


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
    losses = {event.step: event.value for event in events.Scalars("train/loss")}
    assert losses == pytest.approx(_logged_losses(short_run))
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
    assert {point.step: point.value for point in history} == pytest.approx(
        _logged_losses(short_run)
    )
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


def test_wandb_runs_offline_in_the_run_folder(tmp_path, monkeypatch):
    """W&B is not in the dev group (CI skips this); with the `tracking` extra it runs here."""
    pytest.importorskip("wandb")
    from garden.engine.training import trackers

    names = ("WANDB_API_KEY", "WANDB_DIR", "WANDB_MODE", "WANDB_RUN_ID", "WANDB_RESUME")
    for name in (*names, "WANDB_PROJECT"):
        monkeypatch.setenv(name, "")  # start() sets them: the test restores them as they were
        monkeypatch.delenv(name)
    spec = training.build_spec({"dataset": "facts", "name": "wb", "report_to": "wandb"})
    plan = _plan()
    logs: list[tuple[str, str]] = []
    run = trackers.start(
        "job", spec, plan, Settings(_env_file=None), tmp_path, lambda *line: logs.append(line)
    )
    assert run is not None and run.wandb_run_id
    trackers.finish(run, step=4, energy_kwh=0.001, emissions_kg=0.0004)
    assert logs == [("INFO", f"Reporting to W&B (offline, run {run.wandb_run_id})")]
    (offline,) = (tmp_path / "wandb").glob(f"offline-run-*-{run.wandb_run_id}")
    assert (offline / f"run-{run.wandb_run_id}.wandb").is_file()


def test_a_resumed_run_continues_its_tracker_files_and_mlflow_run(tmp_path, monkeypatch):
    """Each run of a job starts in a fresh worker: the first is stopped and published, the
    resumed one continues its TensorBoard folder and its MLflow run (no training needed here)."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from garden.engine.training import trackers

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE")
    spec = training.build_spec({"dataset": "facts", "name": "r", "report_to": "tensorboard,mlflow"})
    plan = _plan()
    settings = Settings(_env_file=None)
    runs = []
    for number, previous in ((1, None), (2, tmp_path / "run-1")):
        for name in (*names, "TENSORBOARD_LOGGING_DIR", trackers.RUN_ID_ENV):
            monkeypatch.setenv(name, "")  # a fresh worker's environment, restored afterwards
            monkeypatch.delenv(name)
        folder = tmp_path / f"run-{number}"
        run = trackers.start("job", spec, plan, settings, folder, print, previous=previous)
        assert run is not None
        trackers.finish(run, step=2 * number, energy_kwh=number / 1000, emissions_kg=None)
        runs.append(run)
    assert runs[0].mlflow_run_id == runs[1].mlflow_run_id
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(tmp_path / "run-2" / "mlruns").as_uri())
    history = client.get_metric_history(runs[1].mlflow_run_id, "energy_kwh")
    assert [(point.step, point.value) for point in history] == [(2, 0.001), (4, 0.002)]
    events = EventAccumulator(str(tmp_path / "run-2" / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("energy_kwh")] == [2, 4]


def _plan():
    """The plan of a run the tracker tests start and finish without training."""
    from garden.engine.training.records import PlannedRun

    return PlannedRun(
        model_id="m",
        model_path="m",
        train_path="t",
        dataset_id="d",
        dataset_name="facts",
        data_format="chat",
    )
