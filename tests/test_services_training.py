"""The training service: real short LoRA runs of the default model, seen through typed views."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import SHORT_RUN

from garden import present
from garden.errors import DatasetError, JobError
from garden.services import training

# The view's fields read from the run's newest evaluation, which later evaluations replace.
NEWEST_EVALUATION = {"eval_perplexity", "eval_rouge_l", "eval_exact_match", "eval_judge_win_rate"}
FACTS = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "garden_facts.jsonl"
TINY = {
    "dataset": str(FACTS),
    "batch_size": 4,
    "max_seq_len": 128,
    "lora_r": 8,
    "lora_alpha": 16,
    "warmup_ratio": 0.0,
}


@pytest.mark.slow
def test_a_finished_run_reads_back_as_a_job_view(short_run):
    """The session's short run (conftest), read back through the service."""
    settings, finished = short_run.settings, short_run.job
    job = training.get(finished.id, settings=settings)
    # An evaluation on demand (test_evaluation) changes its newest scores, nothing else.
    assert job.model_dump(exclude=NEWEST_EVALUATION) == finished.model_dump(
        exclude=NEWEST_EVALUATION
    )
    assert job.name == SHORT_RUN
    assert job.terminal and not job.active and not job.resumable
    assert (job.step, job.total_steps, job.progress_fraction) == (4, 4, 1.0)
    assert job.loss is not None and job.first_loss is not None and job.eval_loss is not None
    assert job.train_tokens > 0 and job.tokens_per_second and job.tokens_per_second > 0
    assert job.energy_kwh and job.energy_kwh > 0 and job.emissions_kg and job.emissions_kg > 0
    assert job.eta_s == 0.0 and job.error is None and job.error_kind is None
    assert job.backend == "trl_peft" and "no CUDA" in (job.backend_reason or "")
    assert job.device is not None and job.device.startswith("cpu (")
    assert Path(job.output_dir or "", "model.safetensors").is_file()
    assert job.started_at is not None and job.finished_at is not None
    assert job.created_at <= job.started_at <= job.finished_at
    assert job.duration_s is not None and job.duration_s > 0
    line = present.job_stats_line(job)
    assert line.startswith("step 4/4 · loss ") and "ETA" not in line and "CO₂" in line


@pytest.mark.slow
def test_metrics_logs_and_listing(short_run):
    settings, finished = short_run.settings, short_run.job
    points = training.metrics(finished.id, settings=settings)
    assert [p.step for p in points if p.loss is not None] == [1, 2, 3, 4]
    assert [p.step for p in points if p.eval_loss is not None] == [2, 4]
    assert all(p.learning_rate is not None for p in points if p.loss is not None)
    assert all(p.ts > finished.created_at for p in points)

    lines = training.logs(finished.id, settings=settings)
    assert any(line.message.startswith("Worker process") for line in lines)
    assert lines[-1].message == "Job completed at step 4"
    assert not any(line.message == "Final evaluation" for line in lines)  # step 4 was evaluated
    assert [line.id for line in lines] == sorted(line.id for line in lines)
    assert training.logs(finished.id, after_id=lines[-1].id, settings=settings) == []
    assert training.logs(finished.id, limit=2, settings=settings) == lines[-2:]

    assert finished.id in {job.id for job in training.list_jobs(settings=settings)}
    assert training.list_jobs(status="failed", settings=settings) == [
        job for job in training.list_jobs(settings=settings) if job.status == "failed"
    ]
    latest = training.current_or_latest(finished.id, settings=settings)
    assert latest is not None
    assert latest.model_dump(exclude=NEWEST_EVALUATION) == finished.model_dump(
        exclude=NEWEST_EVALUATION
    )
    assert training.current_or_latest("job-unknown", settings=settings) is None


def test_bad_specs_and_commands_raise_typed_errors(short_run):
    settings, finished = short_run.settings, short_run.job
    with pytest.raises(JobError, match="learning_rate"):
        training.build_spec({**TINY, "learning_rate": -1})
    with pytest.raises(JobError, match="Unknown preset"):
        training.build_spec(TINY, preset="Huge")
    with pytest.raises(JobError, match="dataset"):
        training.build_spec({"max_steps": 2})
    before = training.list_jobs(settings=settings)
    with pytest.raises(DatasetError, match="no-such-dataset"):
        training.submit(training.build_spec({"dataset": "no-such-dataset"}), settings=settings)
    with pytest.raises(JobError, match="already exists"):
        training.submit(training.build_spec({**TINY, "name": SHORT_RUN}), settings=settings)
    assert training.list_jobs(settings=settings) == before
    with pytest.raises(JobError, match="only stopped"):
        training.resume(finished.id, settings=settings)
    with pytest.raises(JobError, match="not running"):
        training.stop(finished.id, settings=settings)
    with pytest.raises(JobError, match="Unknown job"):
        training.get("job-unknown", settings=settings)


def test_presets_are_valid_partial_specs():
    names = [preset.name for preset in training.presets()]
    assert names[:3] == ["Quick CPU demo", "LoRA", "QLoRA"]
    assert {"DPO (CPU quick)", "ORPO (CPU quick)", "KTO (CPU quick)"} <= set(names)
    for preset in training.presets():
        spec = training.build_spec({"dataset": "d"}, preset=preset.name)
        assert spec.method == preset.settings["method"]
        assert spec.learning_rate == preset.settings["learning_rate"]


def test_building_the_tab_recovers_nothing_until_the_manager_starts(isolated_settings):
    import gradio as gr

    from garden.store import get_store, now
    from garden.ui import finetune_tab

    dead = subprocess.Popen(["true"])
    dead.wait()
    get_store(isolated_settings.db_path).execute(
        "INSERT INTO jobs (id, name, status, spec_json, owner_pid, checkpoint_dir, created_at) "
        "VALUES ('job-orphan', 'orphan', 'queued', '{\"dataset\": \"x\"}', ?, ?, ?)",
        (dead.pid, str(isolated_settings.checkpoints_path / "job-orphan"), now()),
    )
    with gr.Blocks():
        finetune_tab.build(isolated_settings)
    orphan = training.current_or_latest(settings=isolated_settings)
    assert orphan is not None and orphan.id == "job-orphan" and orphan.status == "queued"

    assert training.start_manager(settings=isolated_settings) == ["job-orphan"]
    orphan = training.get("job-orphan", settings=isolated_settings)
    assert orphan.status == "interrupted" and orphan.resumable
    assert orphan.error_kind == "interrupted"
    assert training.start_manager(settings=isolated_settings) == ["job-orphan"]


@pytest.mark.slow
def test_the_plan_of_the_same_run_again_forecasts_it_from_its_pace(short_run):
    """A dry run of the session's short run, in its storage: the pace is the run's own, and
    the tokens planned from the dataset's counts are near the ones it trained."""
    from conftest import SHORT_RUN_VALUES

    from garden.services import run_plan

    settings, finished = short_run.settings, short_run.job
    spec = training.build_spec({**SHORT_RUN_VALUES, "name": None}, preset="Quick CPU demo")
    planned = run_plan.plan(spec, settings=settings)
    assert planned.forecast.startswith("Forecast: ≈ "), planned.forecast
    assert "the pace of 1 earlier run of SmolLM2-135M-Instruct (lora) here" in planned.forecast
    assert planned.forecast in planned.lines()
    assert planned.forecast_tokens is not None and planned.forecast_s is not None
    assert 0.7 < planned.forecast_tokens / finished.train_tokens < 1.3
    assert planned.forecast_s == pytest.approx(
        planned.forecast_tokens / (finished.tokens_per_second or 1), rel=0.01
    )
    assert planned.forecast_kwh and planned.forecast_co2_kg
    full = run_plan.plan(spec.model_copy(update={"method": "full"}), settings=settings)
    assert full.forecast.startswith("No forecast yet: no completed full run of "), full.forecast
    assert full.forecast_s is None
