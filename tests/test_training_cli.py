"""`model-garden train` and `model-garden jobs`, run as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FACTS = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "garden_facts.jsonl"


SUMMARY_KEYS = {
    "job_id",
    "status",
    "backend",
    "first_loss",
    "last_loss",
    "final_eval_loss",
    "steps",
    "train_tokens",
    "tokens_per_second",
    "energy_kwh",
    "emissions_kg",
    "output_dir",
    "error",
}


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "model-garden"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_train_json_then_jobs_list_and_show(default_model_path):
    options = "--name cli-run --max-steps 2 --batch-size 2 --max-seq-len 128 --json"
    done = cli("train", "--dataset", str(FACTS), *options.split())
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert set(summary) == SUMMARY_KEYS
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert summary["backend"] == "trl_peft"
    assert Path(summary["output_dir"], "model.safetensors").is_file()

    listed = json.loads(cli("jobs", "list", "--json").stdout)
    assert summary["job_id"] in {job["job_id"] for job in listed}
    assert all(set(job) == SUMMARY_KEYS | {"name"} for job in listed)
    shown = cli("jobs", "show", summary["job_id"], "--json")
    assert shown.returncode == 0
    assert len([m for m in json.loads(shown.stdout)["metrics"] if m["loss"] is not None]) == 2

    again = cli("jobs", "resume", summary["job_id"])
    assert again.returncode == 2 and "only stopped" in again.stderr


def test_bad_input_exits_2_with_a_message(default_model_path, tmp_path):
    missing = cli("train", "--dataset", str(tmp_path / "nope.jsonl"), "--json")
    assert missing.returncode == 2
    assert "nope" in missing.stderr and "Error" in missing.stderr
    bad = cli("train", "--dataset", str(FACTS), "--lr", "-1")
    assert bad.returncode == 2 and "learning_rate" in bad.stderr
    assert cli("jobs", "show", "job-unknown").returncode == 2
    assert cli("jobs", "stop", "job-unknown").returncode == 2
