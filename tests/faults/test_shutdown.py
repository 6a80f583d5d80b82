"""SIGTERM to a real app with vLLM loaded and a job running: nothing is left, the job resumes."""

from __future__ import annotations

import signal
import time

import pytest
from conftest import running_app

from faults.helpers import (
    FACTS,
    RUN,
    alive,
    app_env,
    descendants,
    describe,
    job_record,
    wait_for,
)
from garden.engine.serving.vllm_host import PROCESS_TITLE

SHUTDOWN_LIMIT_S = 10.0


def _has_vllm_host(pid: int) -> bool:
    return any(PROCESS_TITLE in line for line in describe(descendants(pid)))


def _start_form(**values):
    from test_training_ui import _form

    return _form(**values)


@pytest.mark.slow
def test_sigterm_stops_everything_and_leaves_the_job_resumable(tmp_path, isolated_settings):
    from gradio_client import Client

    from garden.data import import_dataset
    from garden.engine.training import RESUMABLE_STATUSES, last_checkpoint
    from garden.models import DEFAULT_MODEL_NAME
    from garden.services import training

    settings = isolated_settings
    dataset = import_dataset(FACTS, "facts-sigterm", settings=settings)
    with running_app(tmp_path, app_env(settings)) as app:
        client = Client(app.url, verbose=False)
        client.predict(DEFAULT_MODEL_NAME, "vllm", False, DEFAULT_MODEL_NAME, api_name="/load")
        form = {key: RUN[key] for key in RUN if key != "warmup_ratio"}
        started = client.predict(
            *_start_form(**form, dataset=dataset.id, name="sigterm-run"),
            api_name="/start_training",
        )
        job_id = training.list_jobs(limit=1, settings=settings)[0].id
        assert job_id in started[0], started[0]
        wait_for(lambda: _has_vllm_host(app.process.pid), 900, "the vLLM host", poll=2)
        wait_for(lambda: training.get(job_id, settings=settings).step >= 3, 900, "step 3", poll=1)
        before = descendants(app.process.pid)
        lines = describe(before)
        assert any(PROCESS_TITLE in line for line in lines), lines
        worker = job_record(settings, job_id)
        assert any(proc.pid == worker.pid for proc in before), lines

        app.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_LIMIT_S
        while time.monotonic() < deadline and (app.process.poll() is None or alive(before)):
            time.sleep(0.2)
        log = app.log.read_text(errors="replace")  # vLLM's load warnings can fill any tail
        assert app.process.poll() is not None, f"the app still runs 10 s after SIGTERM:\n{log}"
        assert not alive(before), (describe(alive(before)), log)
        assert "Received SIGTERM: shutting down" in log, log[-6000:]

    job = job_record(settings, job_id)
    assert job.status == "interrupted" and job.status in RESUMABLE_STATUSES, (job, log)
    checkpoint = last_checkpoint(job.checkpoint_dir)
    assert checkpoint is not None and int(checkpoint.name.rsplit("-", 1)[1]) >= 2
    assert (checkpoint / "trainer_state.json").is_file()


def test_ctrl_c_stops_the_app_and_its_children(tmp_path, isolated_settings):
    with running_app(tmp_path, app_env(isolated_settings)) as app:
        before = descendants(app.process.pid)
        app.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + SHUTDOWN_LIMIT_S
        while time.monotonic() < deadline and (app.process.poll() is None or alive(before)):
            time.sleep(0.2)
        log = app.log_tail(3000)
        assert app.process.poll() == 0, log
        assert not alive(before), (describe(alive(before)), log)
        assert "Received SIGINT: shutting down" in log, log
