"""A full disk while checkpointing: a clear error, and the previous checkpoint stays usable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from faults.helpers import FACTS, RUN, wait_for

# Smaller than a LoRA adapter of the default model (~10 MB), larger than the logs and json files.
FILE_LIMIT_BYTES = 200_000


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow
def test_disk_full_during_a_checkpoint_keeps_the_previous_one(isolated_settings, monkeypatch):
    from garden.data import import_dataset
    from garden.engine.training import JobManager, last_checkpoint
    from garden.engine.training.worker import MAX_FILE_BYTES_ENV
    from garden.models import list_models

    settings = isolated_settings
    manager = JobManager(settings)
    dataset = import_dataset(FACTS, "facts-disk", settings=settings)
    job_id = manager.submit({**RUN, "dataset": dataset.id, "name": "disk-full"})
    wait_for(lambda: manager.get(job_id).progress.step >= 1, 900, "step 1")
    manager.stop(job_id)
    job = manager.wait(job_id, timeout=600)
    assert job.status == "stopped", job.error
    kept = last_checkpoint(job.checkpoint_dir)
    assert kept is not None
    before = _digest(kept)

    monkeypatch.setenv(MAX_FILE_BYTES_ENV, str(FILE_LIMIT_BYTES))
    manager.resume(job_id)
    job = manager.wait(job_id, timeout=900)
    assert job.status == "failed" and job.error_kind == "disk_full", (job.status, job.error)
    assert "no space left or a file-size limit" in (job.error or "")
    assert "resume" in (job.error or "")
    assert "\n" not in (job.error or "")
    assert last_checkpoint(job.checkpoint_dir) == kept
    assert _digest(kept) == before
    leftovers = [p.name for p in settings.finetuned_models_path.iterdir()]
    assert not [name for name in leftovers if name.startswith(".incomplete-")], leftovers
    assert "disk-full" in {m.name for m in list_models(settings)}  # the stopped run's adapter

    monkeypatch.delenv(MAX_FILE_BYTES_ENV)
    manager.resume(job_id)
    step = int(kept.name.rsplit("-", 1)[1])
    resumed = f"Resuming from {kept.name}"

    def trained_after_the_second_resume() -> bool:
        logs = [entry.message for entry in manager.logs(job_id, limit=1000)]
        return logs.count(resumed) >= 2 and manager.get(job_id).progress.step > step + 1

    wait_for(trained_after_the_second_resume, 900, "steps after resume")
    manager.cancel(job_id)
    manager.wait(job_id, timeout=120)
    messages = [entry.message for entry in manager.logs(job_id, limit=1000)]
    assert f"Resuming from {kept.name}" in "\n".join(messages)
