"""Experiment trackers, offline first: a run reports to TensorBoard, MLflow and/or W&B (REPORT_TO).

Training metrics and the ``TrainingArguments`` go through transformers' own callbacks
(``report_to``). Before training, this module points them at the run's folder: TensorBoard
event files in ``<run>/tensorboard``, an MLflow file store in ``<run>/mlruns`` unless
``MLFLOW_TRACKING_URI`` is set, W&B in ``<run>/wandb``, offline unless ``WANDB_API_KEY`` is set.
It opens the MLflow and W&B runs itself, so every process of the run (and a resumed run) reports
to the same one. At the run's end, after the carbon meter stops, it logs what only the worker
knows through each library's own API: the run's energy and CO₂, the evaluation's results and the
spec (base model, dataset, LoRA settings). A tracker that fails there never fails the run.

No tracker library is imported at import time: commands that need no model never load them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from garden.config import Settings
from garden.engine.training.records import PlannedRun
from garden.engine.training.spec import JobSpec
from garden.errors import ConfigError

EXTRA_COMMAND = "uv sync --extra tracking"
MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
TENSORBOARD_DIR = "tensorboard"
MLFLOW_DIR = "mlruns"
WANDB_DIR = "wandb"
STATE_FILE = "trackers.json"
EXPERIMENT = "model-garden"
# The MLflow run that the training process attaches to (ranks inherit it from the worker).
RUN_ID_ENV = "GARDEN_MLFLOW_RUN_ID"
MAX_PARAM_CHARS = 250
EVALUATION_METRICS = (
    "eval_loss",
    "perplexity",
    "rouge_l",
    "exact_match",
    "contains_match",
    "base_rouge_l",
    "judge_win_rate",
)

Log = Callable[[str, str], None]


def chosen(spec: JobSpec, settings: Settings) -> tuple[str, ...]:
    """The trackers a run reports to: its own choice, else the REPORT_TO setting."""
    return tuple(spec.report_to) if spec.report_to is not None else settings.trackers


def check_installed(names: Iterable[str]) -> None:
    """``ConfigError`` naming the first tracker whose package is missing, and the extra."""
    for name in names:
        if importlib.util.find_spec(MODULES[name]) is None:
            raise ConfigError(
                f"REPORT_TO names {name}, which is not installed: run `{EXTRA_COMMAND}`.",
                hint="Or leave it out of REPORT_TO (or --report-to).",
            )


@dataclass
class TrackerRun:
    """The trackers of one run and where they write; ``finish`` logs its end."""

    names: tuple[str, ...]
    folder: Path
    params: dict[str, str]
    log: Log
    mlflow_uri: str | None = None
    mlflow_run_id: str | None = None
    mlflow_uri_given: str | None = None  # MLFLOW_TRACKING_URI; None: the run folder's store
    wandb_run_id: str | None = None


def run_params(job_id: str, spec: JobSpec, plan: PlannedRun) -> dict[str, str]:
    """The run's hyperparameters as tracker params: the spec, the base model and the dataset."""
    params = {
        "job_id": job_id,
        "base_model": plan.model_id,
        "dataset": plan.dataset_name,
        "dataset_id": plan.dataset_id,
    }
    for key, value in spec.model_dump(mode="json").items():
        text = value if isinstance(value, str) else json.dumps(value)
        params[f"spec.{key}"] = text[:MAX_PARAM_CHARS]
    return params


def start(
    job_id: str,
    spec: JobSpec,
    plan: PlannedRun,
    settings: Settings,
    folder: Path,
    log: Log,
    previous: Path | None = None,
) -> TrackerRun | None:
    """Check the packages and set the trackers up in ``folder`` (the run's folder), before
    training; None when the run reports to none. ``previous``: the folder of the run this one
    resumes, whose tracker files it continues."""
    names = chosen(spec, settings)
    if not names:
        return None
    check_installed(names)
    folder.mkdir(parents=True, exist_ok=True)
    if previous is not None:
        _carry_over(previous, folder)
    state = _read_state(folder)
    run = TrackerRun(names, folder, run_params(job_id, spec, plan), log)
    if "tensorboard" in names:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(folder / TENSORBOARD_DIR)
    if "mlflow" in names:
        _start_mlflow(run, spec.name or job_id, state)
    if "wandb" in names:
        _start_wandb(run, state)
    (folder / STATE_FILE).write_text(
        json.dumps(
            {
                "report_to": list(names),
                "mlflow_tracking_uri": run.mlflow_uri_given,
                "mlflow_run_id": run.mlflow_run_id,
                "wandb_run_id": run.wandb_run_id,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    where = ", ".join(_where(run, name) for name in names)
    log("INFO", f"Reporting to {where}")
    return run


def _where(run: TrackerRun, name: str) -> str:
    if name == "tensorboard":
        return f"TensorBoard ({run.folder / TENSORBOARD_DIR})"
    if name == "mlflow":
        return f"MLflow ({run.mlflow_uri}, run {run.mlflow_run_id})"
    mode = os.environ.get("WANDB_MODE", "online")
    return f"W&B ({mode}, run {run.wandb_run_id})"


def _carry_over(previous: Path, folder: Path) -> None:
    for name in (TENSORBOARD_DIR, MLFLOW_DIR, WANDB_DIR, STATE_FILE):
        source = previous / name
        if source.is_dir():
            shutil.copytree(source, folder / name, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, folder / name)


def _read_state(folder: Path) -> dict[str, Any]:
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _start_mlflow(run: TrackerRun, run_name: str, state: Mapping[str, Any]) -> None:
    """An MLflow run in the file store under the run folder (or at MLFLOW_TRACKING_URI)."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    given = uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        uri = (run.folder / MLFLOW_DIR).resolve().as_uri()
        os.environ["MLFLOW_TRACKING_URI"] = uri
        # MLflow 3 keeps its file store in maintenance mode behind this opt-in.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    experiment = os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    client = MlflowClient(tracking_uri=uri)
    # A resumed run continues its MLflow run where it logs to the same store as before.
    run_id = state.get("mlflow_run_id") if state.get("mlflow_tracking_uri") == given else None
    if run_id:
        try:
            client.get_run(run_id)
        except Exception:
            run_id = None
    if not run_id:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        created = client.create_run(experiment_id, run_name=run_name)
        run_id = created.info.run_id
        params = [Param(key, value) for key, value in run.params.items()]
        for first in range(0, len(params), 100):
            client.log_batch(run_id, params=params[first : first + 100])
    run.mlflow_uri, run.mlflow_run_id, run.mlflow_uri_given = uri, run_id, given
    os.environ[RUN_ID_ENV] = run_id


def _start_wandb(run: TrackerRun, state: Mapping[str, Any]) -> None:
    """W&B offline in the run folder unless WANDB_API_KEY is set; the run resumes by id."""
    os.environ["WANDB_DIR"] = str(run.folder)
    (run.folder / WANDB_DIR).mkdir(exist_ok=True)
    if not os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE") != "disabled":
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_PROJECT", EXPERIMENT)
    run.wandb_run_id = str(state.get("wandb_run_id") or uuid.uuid4().hex[:12])
    os.environ["WANDB_RUN_ID"] = run.wandb_run_id
    os.environ["WANDB_RESUME"] = "allow"


def attach(report_to: Iterable[str]) -> None:
    """In the training process, before the trainer is built: make the run's MLflow run the
    active one, so transformers' callback logs to it and leaves it open for the evaluations
    that follow training."""
    run_id = os.environ.get(RUN_ID_ENV)
    if "mlflow" not in report_to or not run_id:
        return
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        return
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.start_run(run_id=run_id)


def finish(
    run: TrackerRun | None,
    *,
    step: int,
    energy_kwh: float | None,
    emissions_kg: float | None,
    evaluation: Mapping[str, Any] | None = None,
    stopped: bool = False,
) -> None:
    """Log the run's energy, CO₂ and evaluation results to each tracker, and close its run."""
    if run is None:
        return
    metrics = {"energy_kwh": energy_kwh, "emissions_kg": emissions_kg}
    for key in EVALUATION_METRICS:
        metrics[f"evaluation/{key}"] = (evaluation or {}).get(key)
    values = {key: float(value) for key, value in metrics.items() if value is not None}
    for name, log_to in (
        ("tensorboard", _finish_tensorboard),
        ("mlflow", _finish_mlflow),
        ("wandb", _finish_wandb),
    ):
        if name not in run.names:
            continue
        try:
            log_to(run, step, values, stopped)
        except Exception as exc:
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            run.log("WARNING", f"Could not log the run's end to {name}: {reason}")


def _finish_tensorboard(run: TrackerRun, step: int, values: dict[str, float], _: bool) -> None:
    from torch.utils.tensorboard import SummaryWriter

    rows = "\n".join(f"| {key} | {value} |" for key, value in run.params.items())
    with closing(SummaryWriter(log_dir=str(run.folder / TENSORBOARD_DIR))) as writer:
        for key, value in values.items():
            writer.add_scalar(key, value, step)
        writer.add_text("garden/hyperparameters", "| param | value |\n|---|---|\n" + rows, step)


def _finish_mlflow(run: TrackerRun, step: int, values: dict[str, float], stopped: bool) -> None:
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    status = "KILLED" if stopped else "FINISHED"
    if mlflow.active_run() is not None:  # this process trained: its queued metrics go first
        mlflow.flush_async_logging()
        mlflow.end_run(status)
    assert run.mlflow_run_id is not None
    client = MlflowClient(tracking_uri=run.mlflow_uri)
    now_ms = int(time.time() * 1000)
    metrics = [Metric(key, value, now_ms, step) for key, value in values.items()]
    client.log_batch(run.mlflow_run_id, metrics=metrics)
    client.set_terminated(run.mlflow_run_id, status)


def _finish_wandb(run: TrackerRun, step: int, values: dict[str, float], stopped: bool) -> None:
    import wandb

    active = wandb.run
    if active is None or active.id != run.wandb_run_id:
        active = wandb.init(
            id=run.wandb_run_id,
            resume="allow",
            dir=str(run.folder),
            project=os.environ.get("WANDB_PROJECT", EXPERIMENT),
        )
    active.config.update(run.params, allow_val_change=True)
    active.summary.update(values)
    active.finish(exit_code=1 if stopped else 0)
