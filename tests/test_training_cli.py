"""`model-garden train` and `model-garden jobs`, run as real subprocesses. A real run of
`train --json` and `jobs list/show/resume` on its record is in tests/test_distributed.py
(the two-machine run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def cli(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "model-garden"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_bad_input_exits_2_with_a_message(default_model_path, tmp_path):
    missing = cli("train", "--dataset", str(tmp_path / "nope.jsonl"), "--json")
    assert missing.returncode == 2
    assert "nope" in missing.stderr and "Error" in missing.stderr
    bad = cli("train", "--dataset", str(FACTS), "--lr", "-1")
    assert bad.returncode == 2 and "learning_rate" in bad.stderr
    assert cli("jobs", "show", "job-unknown").returncode == 2
    assert cli("jobs", "stop", "job-unknown").returncode == 2


def test_a_dry_run_prints_the_plan_and_starts_nothing(default_model_path):
    jobs_before = cli("jobs", "list", "--json").stdout
    datasets_before = cli("data", "list", "--json").stdout
    planned = cli("train", "--dataset", str(FACTS), "--preset", "Quick CPU demo", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "on garden_facts.jsonl (cpu)" in planned.stdout
    assert "Memory: about" in planned.stdout and "Nothing was started" in planned.stdout
    tight = cli("train", "--dataset", str(FACTS), "--memory-limit-gb", "1", "--dry-run", "--json")
    assert tight.returncode == 0, tight.stderr
    view = json.loads(tight.stdout)
    assert view["gradient_checkpointing"] is True and view["warnings"], view
    refused = cli("train", "--dataset", str(FACTS), "--objective", "dpo", "--dry-run")
    assert refused.returncode == 2 and refused.stderr.startswith("Error"), refused.stderr
    assert cli("jobs", "list", "--json").stdout == jobs_before
    assert cli("data", "list", "--json").stdout == datasets_before  # the file was not kept
    budget = cli("train", "--dataset", str(FACTS), "--time-budget", "5s", "--dry-run")
    assert budget.returncode == 2 and "shorter than the probe" in budget.stderr
