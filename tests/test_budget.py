"""Time- and CO₂-budgeted training: the step fitting, the up-front checks, one real run."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock

from garden.config import get_settings
from garden.engine.training.budget import Usage, fit_steps
from garden.errors import JobError
from garden.services import training

FACTS = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "garden_facts.jsonl"


def test_the_time_budget_limits_the_steps_when_it_is_the_smallest() -> None:
    spent = Usage(steps=4, seconds=10.0, kwh=0.001, co2_g=0.2)
    pace = Usage(steps=1, seconds=2.0, kwh=0.0002, co2_g=0.05)
    fit = fit_steps(1000, spent, pace, time_budget_s=60.0)
    assert (fit.steps, fit.limited_by) == (4 + 25, "time")
    assert fit.forecast_s == pytest.approx(60.0)
    assert fit.forecast_kwh == pytest.approx(0.001 + 25 * 0.0002)
    assert fit.forecast_co2_kg == pytest.approx((0.2 + 25 * 0.05) / 1000)


def test_the_smallest_of_schedule_time_and_co2_wins() -> None:
    spent = Usage(steps=4, seconds=10.0, kwh=0.001, co2_g=0.2)
    pace = Usage(steps=1, seconds=2.0, kwh=0.0002, co2_g=0.05)
    assert fit_steps(12, spent, pace, 60.0, 10.0).limited_by == "schedule"
    assert fit_steps(12, spent, pace, 60.0, 10.0).steps == 12
    by_co2 = fit_steps(1000, spent, pace, 60.0, 0.7)
    assert (by_co2.steps, by_co2.limited_by) == (4 + 10, "co2")
    assert by_co2.forecast_co2_kg == pytest.approx(0.7 / 1000)
    no_time = fit_steps(1000, spent, pace, None, 0.7)
    assert no_time.steps == 14
    exact = fit_steps(1000, Usage(steps=4, seconds=0.9, co2_g=0.0), Usage(1, 0.3), 3.0)
    assert exact.steps == 4 + 7  # 0.9 s + 7 x 0.3 s = 3.0 s: the last step still fits


def test_a_probe_longer_than_the_budget_is_a_one_line_error() -> None:
    spent = Usage(steps=4, seconds=14.0)
    with pytest.raises(JobError) as caught:
        fit_steps(1000, spent, Usage(steps=1, seconds=3.5), time_budget_s=12.0)
    assert "shorter than the probe" in caught.value.message and "\n" not in caught.value.message
    assert caught.value.hint and "at least" in caught.value.hint
    with pytest.raises(JobError, match="CO₂ budget"):
        fit_steps(1000, Usage(4, 14.0, co2_g=0.5), Usage(1, 3.5, co2_g=0.1), None, 0.3)
    # The probe fills the budget exactly: the run ends there, saved, not failed.
    assert fit_steps(1000, Usage(4, 12.0), Usage(1, 3.0), 12.0).steps == 4


def test_the_cli_reads_durations_and_masses() -> None:
    import click

    from garden.cli.train import parse_duration, parse_mass

    assert [parse_duration(t) for t in ("90s", "5m", "1h", "300", "1.5m")] == [
        90,
        300,
        3600,
        300,
        90,
    ]
    assert [parse_mass(t) for t in ("0.5g", "200mg", "1kg", "2")] == [0.5, 0.2, 1000, 2]
    assert parse_duration("none") == parse_duration("0") == parse_mass("off") == 0  # no budget
    for bad in ("5 parsecs", "-1m", "m"):
        with pytest.raises(click.BadParameter):
            parse_duration(bad)


def test_the_cli_refuses_a_budget_too_small_in_one_line(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "STORAGE_ROOT": str(tmp_path / "storage")}
    command = [str(Path(sys.executable).parent / "model-garden"), "train", "--dataset", str(FACTS)]
    small = subprocess.run(
        [*command, "--time-budget", "5s"], capture_output=True, text=True, env=env, timeout=300
    )
    assert small.returncode == 2 and "shorter than the probe" in small.stderr, small.stderr
    bad = subprocess.run(
        [*command, "--co2-budget", "3 tonnes"], capture_output=True, text=True, env=env, timeout=300
    )
    assert bad.returncode == 2 and "0.5g" in bad.stderr, bad.stderr


@pytest.fixture
def bare_settings(tmp_path):
    from garden.config import Settings

    settings = Settings(_env_file=None, storage_root=tmp_path / "storage")
    settings.ensure_storage()
    return settings


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"time_budget_s": 5}, "shorter than the probe"),
        ({"co2_budget_g": 0.001}, "smaller than the probe"),
        ({"time_budget_s": 60, "num_processes": 2}, "one training process"),
    ],
)
def test_a_budget_too_small_is_refused_by_the_service(bare_settings, values, words) -> None:
    spec = training.build_spec({"dataset": "anything", **values})
    with pytest.raises(JobError) as caught:
        training.submit(spec, settings=bare_settings)
    assert words in caught.value.message and "\n" not in caught.value.message
    assert caught.value.hint
    assert training.list_jobs(settings=bare_settings) == []  # nothing was queued
    with pytest.raises(JobError, match="Invalid training settings"):
        training.build_spec({"dataset": "anything", "time_budget_s": -1})


@pytest.mark.slow
def test_the_quick_demo_budget_ends_the_run_at_it_with_a_saved_model(newcomer_run) -> None:
    """The budgeted run is the one a newcomer starts (Quick CPU demo, 285 s): fitted to the
    budget from its probe, it ends there with its cosine schedule run down and a saved model."""
    from garden.engine.training import queries
    from garden.engine.training.spec import PRESETS
    from garden.store import get_store

    budget = PRESETS["Quick CPU demo"]["time_budget_s"]
    job = training.get(newcomer_run.job_id)
    logs = [line.message for line in training.logs(job.id, limit=2000)]
    assert job.status == "completed", (job.error, logs[-5:])
    assert any(line.startswith(f"Budget (time {budget:.0f} s)") for line in logs), logs[:20]
    assert job.budget_steps is not None and job.forecast_s is not None
    assert 4 < job.budget_steps < 100 * 64  # fitted, far below what 100 epochs ask
    assert job.forecast_s <= budget and job.step <= job.budget_steps

    points = training.metrics(job.id)
    stamps = [p.ts for p in points if p.loss is not None]
    longest_step = max(b - a for a, b in itertools.pairwise(stamps))
    record = queries.get_job(get_store(get_settings().db_path), job.id)
    assert record.result is not None and record.result.steps == job.step
    assert record.result.train_seconds <= budget + longest_step, longest_step
    rates = [p.learning_rate for p in points if p.learning_rate is not None]
    assert rates[-1] < 0.25 * max(rates), rates  # the cosine was fitted to end at the budget
    assert (Path(job.output_dir or "") / "adapter" / "adapter_model.safetensors").is_file()


def test_the_budget_and_its_forecast_are_shown() -> None:
    from garden import present
    from garden.ui.finetune_tab import status_markdown

    job = training.JobView(
        id="job-1",
        name="budgeted",
        status="running",
        created_at=0.0,
        time_budget_s=285.0,
        co2_budget_g=0.5,
    )
    assert present.job_budget(job) == [
        "time 4m45s",
        "CO₂ 0.5 g",
        "steps fitted after a short probe",
    ]
    planned = job.model_copy(
        update={"budget_steps": 112, "forecast_s": 280.0, "forecast_kwh": 0.0019,
                "forecast_co2_kg": 0.00048}
    )  # fmt: skip
    facts = present.job_budget(planned)
    assert facts[2:] == ["112 steps fitted", "forecast 4m40s, 1.900 Wh, CO₂ 480.0 mg"]
    assert "Budget: time 4m45s" in status_markdown(planned)
    assert (
        present.job_budget(job.model_copy(update={"time_budget_s": None, "co2_budget_g": None}))
        == []
    )


def _driven_callback(monkeypatch, tmp_path, spec, logs: list[str]) -> tuple[Any, ...]:
    """A budget callback on a stand-in clock, begun as the trainer begins it: (clock, callback,
    state, control)."""
    from types import SimpleNamespace

    from garden.engine.training import budget

    clock = Clock(now=0.0)
    monkeypatch.setattr(budget.time, "monotonic", clock)
    ctx = SimpleNamespace(
        spec=spec,
        carbon=lambda: (None, None),
        log=lambda message, level="INFO": logs.append(message),
        emit=lambda event: None,
        extra={"train_started": 0.0},
        checkpoint_dir=tmp_path,
    )
    callback = budget.make_budget_callback(ctx)
    state = SimpleNamespace(global_step=0, max_steps=spec.max_steps, num_input_tokens_seen=0)
    control = SimpleNamespace(should_training_stop=False)
    callback.on_train_begin(None, state, control)
    return clock, callback, state, control


def test_the_plan_is_made_again_when_the_pace_changes_after_the_probe(
    monkeypatch, tmp_path
) -> None:
    """A probe at 1 s a step fits 56 steps into 60 s; the next four steps take 3 s each, so at
    8 steps the plan is made again from the pace since the warm-up step (7 steps in 15 s)."""
    from garden.engine.training.spec import JobSpec

    logs: list[str] = []
    spec = JobSpec(dataset="facts", time_budget_s=60.0, max_steps=1000)
    clock, callback, state, control = _driven_callback(monkeypatch, tmp_path, spec, logs)
    plans = []
    for end in (5, 6, 7, 8, 11, 14, 17, 20):  # the warm-up step, the probe, slower steps
        clock.now = end
        state.global_step += 1
        callback.on_step_end(None, state, control, lr_scheduler=None)
        plans.append(state.max_steps)
    assert plans == [1000, 1000, 1000, 56, 56, 56, 56, 26], plans
    assert "Budget re-planned after 7 timed steps (2.14 s a step): 26 steps instead of 56" in logs
    assert not control.should_training_stop

    # Slower still: the plan made at step 16 (52 s for 15 timed steps) ends the run at once. The
    # trainer checked max_steps before this callback, so the callback must stop it itself.
    for end in (23, 27, 31, 35, 39, 43, 47, 57):
        clock.now = end
        state.global_step += 1
        callback.on_step_end(None, state, control, lr_scheduler=None)
    assert state.global_step == state.max_steps == 16 and control.should_training_stop


def test_a_pace_that_slows_late_moves_the_schedule_s_end_to_the_budget(
    monkeypatch, tmp_path
) -> None:
    """Steps at 1 s, then at 2 s from step 24: the plans made near the end follow the pace, so the
    run ends at the end of its schedule (its cosine run down), not cut by the guard mid-way."""
    from garden.engine.training.spec import JobSpec

    logs: list[str] = []
    spec = JobSpec(dataset="facts", time_budget_s=60.0, max_steps=1000)
    clock, callback, state, control = _driven_callback(monkeypatch, tmp_path, spec, logs)
    clock.now = 4.0
    while not control.should_training_stop:
        clock.now += 1.0 if state.global_step < 24 else 2.0
        state.global_step += 1
        callback.on_step_end(None, state, control, lr_scheduler=None)
    assert clock.now <= 60.0
    assert state.global_step == state.max_steps, logs
    assert not any(line.startswith("Reached the time budget") for line in logs), logs


def test_seconds_paused_for_chat_answers_are_not_budget_seconds(monkeypatch, tmp_path) -> None:
    """A step that took 41 s of which 40 were a pause (a chat answer) counts as 1 s: the plan
    and the guard see the run's own time."""
    from garden.engine.training.chat_pause import PAUSED_FILE
    from garden.engine.training.spec import JobSpec

    (tmp_path / PAUSED_FILE).write_text("3.0")  # paused before this training began
    spec = JobSpec(dataset="facts", time_budget_s=20.0, max_steps=1000)
    clock, callback, state, control = _driven_callback(monkeypatch, tmp_path, spec, [])
    for end, paused in ((1, 3), (2, 3), (3, 3), (4, 3), (45, 43)):
        clock.now = end
        (tmp_path / PAUSED_FILE).write_text(str(float(paused)))
        state.global_step += 1
        callback.on_step_end(None, state, control, lr_scheduler=None)
    assert state.max_steps == 20 and not control.should_training_stop  # 5 s trained of 20


def test_the_probe_trains_at_a_real_rate_not_the_long_schedule_s_warm_up(tmp_path) -> None:
    """100 epochs ask for ~2,600 steps, whose 3 % warm-up is 78 steps: the probe would train at
    1/78 of the rate. Until the fit, a budgeted run's schedule is one of 32 steps instead."""
    import math
    from types import SimpleNamespace

    import torch
    from transformers import get_scheduler

    from garden.engine.training import budget
    from garden.engine.training.spec import JobSpec

    ctx = SimpleNamespace(
        spec=JobSpec(dataset="facts", time_budget_s=285.0),
        carbon=lambda: (None, None),
        log=lambda message, level="INFO": None,
        emit=lambda event: None,
        extra={},
        checkpoint_dir=tmp_path,
    )
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=78, num_training_steps=2600)
    args = SimpleNamespace(
        lr_scheduler_type="cosine",
        lr_scheduler_kwargs={},
        get_warmup_steps=lambda steps: math.ceil(0.03 * steps),
    )
    state = SimpleNamespace(global_step=0, max_steps=2600, num_input_tokens_seen=0)
    callback = budget.make_budget_callback(ctx)
    callback.on_train_begin(args, state, SimpleNamespace(), lr_scheduler=scheduler)
    rates = []
    for _ in range(4):  # the warm-up step and the three probe steps
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert min(rates) > 0.9 * 2e-3, rates
