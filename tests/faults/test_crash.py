"""SIGKILL of the app mid-training, then a restart: interrupted, resumable, never two trainers."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from conftest import running_app

from faults.helpers import FACTS, RUN, alive, app_env, job_record, wait_for


def _start_form(**values):
    from test_training_ui import _form

    return _form(**values)


def _gone(pid: int) -> bool:
    return not alive([psutil.Process(pid)]) if psutil.pid_exists(pid) else True


@pytest.mark.slow
def test_sigkill_then_restart_resumes_once_from_the_checkpoint(tmp_path, isolated_settings):
    from gradio_client import Client

    from garden.data import import_dataset
    from garden.engine.training import JobManager, last_checkpoint
    from garden.errors import JobError

    settings = isolated_settings
    dataset = import_dataset(FACTS, "facts-crash", settings=settings)
    form = {key: RUN[key] for key in RUN if key != "warmup_ratio"}
    with running_app(tmp_path, app_env(settings)) as first:
        Client(first.url, verbose=False).predict(
            *_start_form(**form, dataset=dataset.id, name="crash-run"), api_name="/start_training"
        )
        job_id = wait_for(lambda: _latest(settings), 60, "the job row")
        wait_for(lambda: job_record(settings, job_id).progress.step >= 3, 900, "step 3")
        old = job_record(settings, job_id)
        assert old.pid and old.pid_started
        first.process.kill()
        first.process.wait(timeout=30)
        # Hold the orphaned worker still, so the restart certainly meets it alive.
        os.kill(old.pid, signal.SIGSTOP)

    with running_app(tmp_path, app_env(settings)) as second:
        client = Client(second.url, verbose=False)
        wait_for(lambda: job_record(settings, job_id).status == "interrupted", 120, "recovery")
        client.predict(job_id, api_name="/resume_training")  # refused (shown as a warning)
        assert job_record(settings, job_id).status == "interrupted"
        assert job_record(settings, job_id).pid == old.pid
        with pytest.raises(JobError, match="still running"):
            JobManager(settings).resume(job_id)

        os.kill(old.pid, signal.SIGCONT)  # it saves a checkpoint and exits (its app is gone)
        wait_for(lambda: _gone(old.pid), 300, "the old worker to exit")
        checkpoint = last_checkpoint(old.checkpoint_dir)
        assert checkpoint is not None
        saved_at = int(checkpoint.name.rsplit("-", 1)[1])
        assert saved_at >= 2

        client.predict(job_id, api_name="/resume_training")
        wait_for(
            lambda: job_record(settings, job_id).progress.step > saved_at,
            900,
            "a step after resume",
        )
        new = job_record(settings, job_id)
        assert new.pid != old.pid and _gone(old.pid)
        # The new worker is the app's, forked by the app's warm fork server (or spawned by it).
        app_processes = psutil.Process(second.process.pid).children(recursive=True)
        workers = [p for p in app_processes if p.pid == new.pid]
        assert len(workers) == 1
        logs = _logs(settings, job_id)
        assert f"Resuming from {checkpoint.name}" in logs
        assert logs.count("Worker process") == 2, logs


def _latest(settings) -> str | None:
    from garden.store import get_store

    rows = get_store(settings.db_path).query("SELECT id FROM jobs ORDER BY created_at DESC")
    return rows[0]["id"] if rows else None


def _logs(settings, job_id: str) -> str:
    from garden.store import get_store

    rows = get_store(settings.db_path).query(
        "SELECT message FROM job_logs WHERE job_id = ? ORDER BY id", (job_id,)
    )
    return "\n".join(row["message"] for row in rows)
