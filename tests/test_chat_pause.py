"""A chat answer pauses this storage's CPU training runs while it streams; they go on after it.

The rules are checked on stand-in workers (real processes registered as running jobs); the slow
test pauses a real training run of the default model with a real answer through the service.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import insert_running_job, private_settings

from garden.config import Settings
from garden.engine.training import chat_pause, queries
from garden.engine.training.chat_pause import paused_seconds, training_paused
from garden.engine.training.procs import process_started, process_tree
from garden.store import get_store

FACTS = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "garden_facts.jsonl"


def _settings(root: Path, **fields: Any) -> Settings:
    settings = Settings(
        _env_file=None, storage_root=root / "storage", models_dir=root / "models", **fields
    )
    settings.ensure_storage()
    return settings


@pytest.fixture
def worker() -> Iterator[subprocess.Popen[bytes]]:
    """A process that stands in for a training worker."""
    proc = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.02)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _register(settings: Settings, proc: subprocess.Popen[bytes], job_id: str, device: str) -> Path:
    started = process_started(proc.pid)
    flags = insert_running_job(settings, job_id, pid=proc.pid, pid_started=started, device=device)
    flags.mkdir(parents=True)
    return flags


def _stopped(pid: int, expected: bool = True) -> bool:
    """Whether ``pid`` is suspended, read once a signal sent had time to arrive (signals are
    asynchronous): polled for a second while it is not yet ``expected``, read after 0.1 s when
    ``expected`` is running."""
    if not expected:
        time.sleep(0.1)
    deadline = time.monotonic() + 1.0
    while True:
        stopped = psutil.Process(pid).status() == psutil.STATUS_STOPPED
        if stopped == expected or time.monotonic() > deadline:
            return stopped
        time.sleep(0.01)


def test_an_answer_pauses_the_cpu_run_not_the_gpu_one_and_the_pause_is_counted(
    tmp_path: Path, worker: subprocess.Popen[bytes]
) -> None:
    settings = _settings(tmp_path)
    flags = _register(settings, worker, "job-cpu", "cpu (fp32)")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as gpu:
        _register(settings, gpu, "job-gpu", "cuda (bf16)")
        with training_paused(settings):
            with training_paused(settings):  # a second answer at once shares the pause
                assert _stopped(worker.pid) and not _stopped(gpu.pid, expected=False)
            assert _stopped(worker.pid)
            time.sleep(0.2)
        assert not _stopped(worker.pid, expected=False)
        gpu.kill()
    assert paused_seconds(flags) >= 0.2
    logs = queries.read_logs(get_store(settings.db_path), "job-cpu")
    assert any(line.message.startswith("Paused ") for line in logs)


def test_a_pause_is_bounded_and_the_run_trains_as_long_before_the_next(
    tmp_path: Path, worker: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    _register(settings, worker, "job-cpu", "cpu (bf16)")
    with training_paused(settings):
        assert _stopped(worker.pid)
        time.sleep(0.5)
    with training_paused(settings):  # at once: the run has not trained as long as it waited
        assert not _stopped(worker.pid, expected=False)
    time.sleep(0.6)
    with training_paused(settings):
        assert _stopped(worker.pid)
        chat_pause.resume_job("job-cpu")  # what a stop or cancel does first
        assert not _stopped(worker.pid, expected=False)
    time.sleep(0.2)
    monkeypatch.setattr(chat_pause, "MAX_PAUSE_S", 0.3)
    with training_paused(settings):
        assert _stopped(worker.pid)
        time.sleep(0.6)
        assert not _stopped(worker.pid, expected=False)  # the longest pause ended it


def test_the_pause_can_be_turned_off(tmp_path: Path, worker: subprocess.Popen[bytes]) -> None:
    settings = _settings(tmp_path, chat_pauses_training=False)
    _register(settings, worker, "job-cpu", "cpu (fp32)")
    with training_paused(settings):
        assert not _stopped(worker.pid, expected=False)


@pytest.mark.slow
def test_a_real_answer_pauses_a_real_run_which_then_goes_on(
    module_tmp: Path, default_model_path: Path
) -> None:
    from garden.data import import_dataset
    from garden.engine.training import get_job_manager
    from garden.services import chat
    from garden.services.chat import ChatMessage, ChatRequest, GenerationSettings

    settings = private_settings(module_tmp, default_model_path)
    facts = import_dataset(FACTS, "facts", settings=settings)
    manager = get_job_manager(settings)
    spec = {"dataset": facts.id, "name": "paused", "max_steps": 400, "batch_size": 2}
    job_id = manager.submit({**spec, "max_seq_len": 128, "lora_r": 8, "warmup_ratio": 0.0})
    try:
        chat.wait_ready(None, "transformers", timeout=600, settings=settings)
        deadline = time.monotonic() + 600
        while manager.get(job_id).progress.step < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        job = manager.get(job_id)
        assert job.status == "running" and job.pid, job.error
        request = ChatRequest(
            backend="transformers",
            messages=[ChatMessage(role="user", content="Name a flower.")],
            generation=GenerationSettings(temperature=0, max_new_tokens=12),
        )
        seen_stopped = []
        for _delta in chat.stream_answer(request, settings=settings):
            seen_stopped.append(_stopped(job.pid))
        assert seen_stopped and all(seen_stopped)
        step = manager.get(job_id).progress.step
        while manager.get(job_id).progress.step <= step and time.monotonic() < deadline:
            time.sleep(0.5)
        assert manager.get(job_id).progress.step > step  # it went on training
        assert paused_seconds(job.checkpoint_dir) > 0
        assert any(line.message.startswith("Paused ") for line in manager.logs(job_id))
    finally:
        if manager.get(job_id).status in ("queued", "running"):
            manager.cancel(job_id)
        chat.shutdown()


def test_a_process_tree_we_may_not_read_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reused pid of another user's process: nothing to suspend, and no error."""

    def denied(self: psutil.Process, recursive: bool = False) -> list[psutil.Process]:
        raise psutil.AccessDenied(self.pid)

    assert process_tree(os.getpid())
    monkeypatch.setattr(psutil.Process, "children", denied)
    assert process_tree(os.getpid()) == []
