"""The database keeps the limits: MAX_CONCURRENT_JOBS across processes, unique active run names."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faults.helpers import FACTS, RUN, app_env, wait_for

ACTIVE = ("running", "stopping")


def _running(store) -> int:
    marks = ", ".join("?" for _ in ACTIVE)
    return len(store.query(f"SELECT id FROM jobs WHERE status IN ({marks})", ACTIVE))


@pytest.mark.slow
def test_app_and_cli_together_respect_max_concurrent_jobs(isolated_settings):
    from garden.data import import_dataset
    from garden.engine.training import JobManager

    settings = isolated_settings
    assert settings.max_concurrent_jobs == 1
    here = JobManager(settings)
    dataset = import_dataset(FACTS, "facts-limit", settings=settings)
    first = here.submit({**RUN, "dataset": dataset.id, "name": "in-app"})
    wait_for(lambda: here.get(first).status == "running", 60, "the first job to run")

    cli = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "model-garden"),
            "train",
            "--dataset",
            dataset.id,
            "--name",
            "from-cli",
            "--max-steps",
            "1",
            "--batch-size",
            "2",
            "--max-seq-len",
            "128",
        ],
        env={**os.environ, **app_env(settings)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        second = wait_for(
            lambda: [j.id for j in here.list_jobs() if j.name == "from-cli"], 120, "the CLI job"
        )[0]
        watch_until = time.monotonic() + 8
        while time.monotonic() < watch_until:
            assert _running(here.store) <= 1
            assert here.get(second).status == "queued"
            time.sleep(0.25)
        with pytest.raises(Exception, match="already queued or running"):
            here.submit({**RUN, "dataset": dataset.id, "name": "from-cli"})

        here.cancel(first)
        while cli.poll() is None:
            assert _running(here.store) <= 1
            time.sleep(0.25)
        output = cli.stdout.read() if cli.stdout else ""
        assert cli.returncode == 0, output[-2000:]
        assert here.get(second).status == "completed", output[-2000:]
        assert here.get(first).status == "cancelled"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
