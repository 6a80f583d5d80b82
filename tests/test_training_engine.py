"""Training engine: real LoRA runs of the default model for a few steps each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import private_settings

from garden.errors import DatasetError, GardenError, JobError, ModelLoadError

FACTS = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "garden_facts.jsonl"
TINY = {"batch_size": 4, "max_seq_len": 128, "lora_r": 8, "lora_alpha": 16, "warmup_ratio": 0.0}


@pytest.fixture(scope="module")
def settings(module_tmp, default_model_path):
    return private_settings(
        module_tmp, default_model_path, max_concurrent_jobs=1, checkpoint_interval=100
    )


@pytest.fixture(scope="module")
def manager(settings):
    from garden.engine.training import get_job_manager

    return get_job_manager(settings)


@pytest.fixture(scope="module")
def facts(settings):
    from garden.data import import_dataset

    return import_dataset(FACTS, "garden-facts", settings=settings)


@pytest.fixture(scope="module")
def finished_job(manager, facts):
    """One short real run that several tests inspect."""
    job_id = manager.submit(
        {
            **TINY,
            "name": "facts-run",
            "dataset": facts.id,
            "max_steps": 6,
            "learning_rate": 3e-3,
            "eval_steps": 3,
            "checkpoint_interval": 3,
        }
    )
    job = manager.wait(job_id, timeout=900)
    assert job.status == "completed", (job.error, manager.logs(job_id)[-5:])
    return job


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_run_completes_and_loss_goes_down(manager, finished_job):
    result = finished_job.result
    assert result is not None and result.steps == 6
    assert result.first_loss is not None and result.final_loss is not None
    assert result.final_loss < result.first_loss
    assert result.final_eval_loss is not None
    assert result.train_tokens > 0 and result.tokens_per_second > 0
    assert result.output_dir == finished_job.output_dir and result.merged
    assert result.backend == finished_job.backend == "trl_peft"
    assert "no CUDA" in (finished_job.backend_reason or "")
    assert finished_job.progress.step == 6 and finished_job.progress.eta_s == 0.0
    assert finished_job.plan is not None and finished_job.plan.data_format == "openai"
    metrics = manager.metrics(finished_job.id)
    steps = [m.step for m in metrics if m.loss is not None]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert any(m.eval_loss is not None for m in metrics)
    assert all(m.learning_rate is not None for m in metrics if m.loss is not None)


@pytest.mark.slow
def test_outputs_are_registered_and_merged_model_answers(settings, finished_job):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from garden.models import list_models

    out = Path(finished_job.output_dir)
    for name in ("config.json", "model.safetensors", "garden.json", "training_config.json"):
        assert (out / name).is_file(), name
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert "final train loss" in (out / "README.md").read_text()
    assert (out / "metrics.jsonl").read_text().count("\n") >= 6
    meta = json.loads((out / "garden.json").read_text())
    assert meta["job_id"] == finished_job.id and meta["method"] == "lora"
    listed = {m.name: m for m in list_models(settings)}
    info = listed["facts-run"]
    assert info.kind == "finetuned" and info.adapter_path == str(out / "adapter")

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Who founded the Moonwell Garden?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    inputs = tokenizer(prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer.strip()


@pytest.mark.slow
def test_energy_and_co2_are_recorded(manager, finished_job):
    pytest.importorskip("garden.engine.carbon")
    result = finished_job.result
    assert result.energy_kwh and result.energy_kwh > 0
    assert result.emissions_kg and result.emissions_kg > 0
    rows = manager.store.query(
        "SELECT * FROM emissions WHERE kind = 'training' AND ref_id = ?", (finished_job.id,)
    )
    assert rows and rows[0]["energy_kwh"] > 0
    assert rows[0]["id"] == finished_job.progress.emission_id


@pytest.mark.slow
def test_sigkilled_worker_fails_job_queue_and_cancel(manager, facts, settings):
    from garden.engine.training import plan_job

    spec = {**TINY, "dataset": facts.id, "max_steps": 200}
    first = manager.submit({**spec, "name": "killed"})
    second = manager.submit({**spec, "name": "queued-behind"})
    assert manager.get(second).status == "queued"
    pid = _wait_for(
        lambda: manager.get(first).backend and manager.get(first).pid, 300, "worker start"
    )
    assert manager.get(second).status == "queued"
    os.kill(pid, signal.SIGKILL)
    job = manager.wait(first, timeout=60)
    assert job.status == "failed"
    assert "SIGKILL" in (job.error or "") and job.error_kind == "killed"

    _wait_for(lambda: manager.get(second).status == "running", 60, "queued job to start")
    manager.cancel(second)
    assert manager.wait(second, timeout=60).status == "cancelled"
    assert plan_job({"dataset": facts.id}, settings).spec.dataset == facts.id
    assert {first, second} <= {job.id for job in manager.list_jobs()}


def test_restart_marks_active_jobs_interrupted(settings, manager):
    from garden.engine.training import RESUMABLE_STATUSES, JobManager
    from garden.store import now

    dead = subprocess.Popen(["true"])
    dead.wait()
    manager.store.insert(
        "jobs",
        {
            "id": "job-orphan",
            "name": "orphan",
            "status": "running",
            "spec_json": {"dataset": "x"},
            "pid": dead.pid,
            "owner_pid": dead.pid,
            "checkpoint_dir": str(settings.checkpoints_path / "job-orphan"),
            "created_at": now(),
        },
    )
    restarted = JobManager(settings)
    assert "job-orphan" in restarted.recovered
    job = restarted.get("job-orphan")
    assert job.status == "interrupted" and job.status in RESUMABLE_STATUSES
    assert job.error_kind == "interrupted" and job.finished_at is not None
    assert "resume" in restarted.logs("job-orphan")[-1].message


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"base_model": "no-such-model"}, ModelLoadError, "Unknown model"),
        ({"dataset": "no-such-dataset"}, DatasetError, "no-such-dataset"),
        ({"method": "qlora"}, JobError, "CUDA"),
        ({"precision": "fp16"}, JobError, "CUDA"),
        ({"learning_rate": -1}, JobError, "learning_rate"),
        ({"name": "../escape"}, JobError, "name"),
        ({"max_seq_len": 32}, JobError, "Max sequence length"),
        ({"batch_size": 0}, JobError, "batch_size"),
        ({"name": "taken"}, JobError, "already exists"),
    ],
)
def test_bad_specs_are_refused_with_clear_messages(manager, facts, settings, change, error, words):
    (settings.finetuned_models_path / "taken").mkdir(parents=True, exist_ok=True)
    before = len(manager.list_jobs())
    with pytest.raises(error) as info:
        manager.submit({"dataset": facts.id, **change})
    assert words in str(info.value)
    assert isinstance(info.value, GardenError) and info.value.message
    assert len(manager.list_jobs()) == before


def test_gpu_memory_estimate_orders_methods_and_grows_with_batch():
    from garden.engine.training import JobSpec, estimate_gpu_bytes

    weights = 28_000_000_000  # a 7B model in fp32
    full, lora, qlora = (
        estimate_gpu_bytes(JobSpec(dataset="d", method=m), weights)
        for m in ("full", "lora", "qlora")
    )
    assert full > lora > qlora
    bigger = estimate_gpu_bytes(JobSpec(dataset="d", batch_size=32, max_seq_len=4096), weights)
    assert bigger > lora


def _job_row(settings, job_id: str, **fields) -> dict:
    from garden.store import now

    return {
        "id": job_id,
        "name": job_id,
        "status": "running",
        "spec_json": {"dataset": "x"},
        "checkpoint_dir": str(settings.checkpoints_path / job_id),
        "created_at": now(),
        **fields,
    }


def test_process_identity_is_pid_plus_start_time(settings, manager):
    """A reused pid (alive, but started at another time) never keeps a dead job running."""
    from garden.engine.training import JobManager
    from garden.engine.training.procs import process_started, same_process

    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        started = process_started(sleeper.pid)
        assert started is not None and same_process(sleeper.pid, started)
        assert not same_process(sleeper.pid, started - 100.0)
        reused = {"owner_pid": sleeper.pid, "owner_started": started - 100.0}
        live = {"owner_pid": sleeper.pid, "owner_started": started}
        manager.store.insert("jobs", _job_row(settings, "job-reused", **reused))
        manager.store.insert("jobs", _job_row(settings, "job-owned", **live))
        restarted = JobManager(settings)
        assert "job-reused" in restarted.recovered and "job-owned" not in restarted.recovered
        assert restarted.get("job-reused").status == "interrupted"
        assert restarted.get("job-owned").status == "running"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert "job-owned" in JobManager(settings).recovered


def test_resume_refuses_while_the_old_worker_lives(settings, manager):
    from garden.engine.training.procs import process_started

    worker = subprocess.Popen(["sleep", "60"])
    try:
        row = {"status": "interrupted", "pid": worker.pid}
        manager.store.insert(
            "jobs", _job_row(settings, "job-alive", **row, pid_started=process_started(worker.pid))
        )
        with pytest.raises(JobError, match="still running") as info:
            manager.resume("job-alive")
        assert info.value.hint and manager.get("job-alive").status == "interrupted"
    finally:
        worker.kill()
        worker.wait()


def test_incomplete_outputs_are_hidden_and_cleaned(settings, manager):
    from garden.engine.training import JobManager
    from garden.engine.training.procs import process_started
    from garden.models import COMPLETE_MARKER, list_models, publish_output, staging_dir

    root = settings.finetuned_models_path
    target = root / "half-done"
    staging = staging_dir(target, "job-gone")
    for folder in (staging, root / "no-marker"):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    names = {m.name for m in list_models(settings)}
    assert "no-marker" not in names and not any(name.startswith(".") for name in names)
    busy = staging_dir(root / "busy", "job-busy")
    busy.mkdir()
    (busy / "config.json").write_text("{}")
    owner = subprocess.Popen(["sleep", "60"])
    try:
        live = {"owner_pid": owner.pid, "owner_started": process_started(owner.pid)}
        manager.store.insert("jobs", _job_row(settings, "job-busy", **live))
        JobManager(settings)  # on start: our own unfinished folders go, except a live job's
        assert not staging.exists() and (root / "no-marker").exists() and busy.exists()
    finally:
        owner.kill()
        owner.wait()
        manager.store.delete("jobs", "job-busy")

    busy_target = root / "busy"
    publish_output(busy, busy_target)
    assert (busy_target / COMPLETE_MARKER).is_file() and not busy.exists()
    assert "busy" in {m.name for m in list_models(settings)}


def test_the_queue_poller_stops_with_a_log_line_when_its_storage_is_gone(
    settings, monkeypatch, caplog
):
    """A storage removed under a process that still has runs queued (a test module's, at its
    end) ends the poller with a warning, not a thread traceback."""
    import logging
    import sqlite3
    import threading

    from garden.engine.training.manager import JobManager

    manager = JobManager(settings)

    def gone() -> list[str]:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(manager, "_queued_here", gone)
    crashed: list[object] = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    with caplog.at_level(logging.WARNING, logger="garden.engine.training.manager"):
        manager._ensure_poller()
        assert manager._poller is not None
        manager._poller.join(timeout=30)
    assert not manager._poller.is_alive() and crashed == []
    assert "Stopped polling the job queue" in caplog.text


def test_a_dataset_file_given_twice_in_one_second_imports_under_two_names(isolated_settings):
    """Two runs started from one file in the same second (a script's loop) both plan."""
    from garden.engine.training.plan import resolve_dataset

    facts = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "garden_facts.jsonl"
    first = resolve_dataset(str(facts), isolated_settings)
    second = resolve_dataset(str(facts), isolated_settings)
    assert first.name.startswith("garden_facts-") and second.name != first.name
    assert second.name.startswith("garden_facts-")
