"""The forecast of a planned run from earlier runs' pace: the tokens it trains, what ends it."""

from __future__ import annotations

from typing import Any

import pytest

from garden.engine.training.forecast import forecast, past_pace, planned_steps, planned_tokens
from garden.engine.training.records import JobRecord, JobResult, PlannedRun
from garden.engine.training.spec import JobSpec

MODEL = "smollm2-135m-instruct"


def _spec(**fields: Any) -> JobSpec:
    return JobSpec(dataset="facts", **fields)


def _job(
    tokens_per_s: float,
    *,
    status: str = "completed",
    model_id: str = MODEL,
    seconds: float = 100.0,
    steps: int = 10,
    kwh: float | None = 0.001,
    co2_kg: float | None = 0.0002,
    **spec: Any,
) -> JobRecord:
    return JobRecord(
        id=f"job-{tokens_per_s:g}",
        name="past",
        status=status,
        spec=_spec(**spec),
        plan=PlannedRun(
            model_id=model_id,
            model_path="/m",
            train_path="/t",
            dataset_id="d",
            dataset_name="facts",
            data_format="messages",
        ),
        result=JobResult(
            steps=steps,
            train_tokens=round(tokens_per_s * seconds),
            train_seconds=seconds,
            tokens_per_second=tokens_per_s,
            energy_kwh=kwh,
            emissions_kg=co2_kg,
            output_dir="/o",
            backend="trl_peft",
            backend_reason="",
            device="cpu",
            precision="bf16",
        ),
        checkpoint_dir="/c",
        created_at=0.0,
        started_at=0.0,
        finished_at=seconds + 20.0,
    )


def test_the_tokens_follow_the_epochs_or_the_steps_of_packed_or_single_examples():
    assert planned_tokens(_spec(epochs=3.0), rows=100, mean_tokens=40.0) == 12_000
    # Examples longer than the rows are cut to them.
    assert planned_tokens(_spec(epochs=1.0, max_seq_len=32), rows=100, mean_tokens=40.0) == 3_200
    packed = _spec(max_steps=10, batch_size=2, max_seq_len=256)
    # A packed row holds its length less about half an example of room left over.
    assert planned_tokens(packed, rows=100, mean_tokens=40.0) == 10 * 2 * (256 - 20)
    assert planned_tokens(packed, rows=100, mean_tokens=40.0, world_size=2) == 10 * 4 * 236
    single = _spec(max_steps=10, batch_size=2, packing=False)
    assert planned_tokens(single, rows=100, mean_tokens=40.0) == 800
    # A step never trains on more than the whole dataset.
    assert planned_tokens(packed, rows=3, mean_tokens=40.0) == 1_200
    assert planned_tokens(_spec(objective="dpo", beta=0.1), rows=100, mean_tokens=40.0) is None
    assert planned_tokens(_spec(), rows=0, mean_tokens=40.0) is None


def test_the_pace_is_the_median_of_the_newest_runs_like_this_one():
    spec = _spec(batch_size=8)
    jobs = [
        _job(300.0, batch_size=8),
        _job(100.0, batch_size=8),
        _job(200.0, batch_size=8),
        _job(999.0, batch_size=8, status="failed"),
        _job(999.0, batch_size=8, model_id="other"),
        _job(999.0, batch_size=8, method="full"),
        _job(50.0, batch_size=1),
    ]
    pace = past_pace(jobs, spec, MODEL, "cpu")
    assert pace is not None and pace.runs == 3 and pace.same_shape and pace.seconds == 300.0
    assert pace.per_s == 200.0
    # Tokens over seconds: a long run counts more than a short one.
    weighted = past_pace(
        [_job(100.0, seconds=300.0), _job(400.0, seconds=100.0)], _spec(), MODEL, "cpu"
    )
    assert weighted is not None and weighted.per_s == 175.0
    assert pace.watts == pytest.approx(0.001 * 3.6e6 / 120.0)
    assert pace.g_co2_per_kwh == pytest.approx(200.0)
    # Only runs of another batch size: a rough guide, and said so.
    other = past_pace(jobs[-1:], spec, MODEL, "cpu")
    assert other is not None and not other.same_shape and other.per_s == 50.0
    assert past_pace(jobs, spec, MODEL, "cuda") is None
    assert past_pace(jobs, _spec(precision="fp32"), MODEL, "cpu") is None


def test_a_budget_ends_the_forecast_where_it_would_end_the_run():
    pace = past_pace([_job(100.0)], _spec(), MODEL, "cpu")
    assert pace is not None
    plain = forecast(_spec(), 30_000, pace)
    assert (plain.seconds, plain.limited_by, plain.amount) == (300.0, "schedule", 30_000)
    assert plain.kwh == pytest.approx(pace.watts * 300.0 / 3.6e6)  # type: ignore[operator]
    timed = forecast(_spec(time_budget_s=60.0), 30_000, pace)
    assert (timed.seconds, timed.limited_by, timed.amount) == (60.0, "time", 6_000)
    g_per_s = pace.watts * 200.0 / 3.6e6  # type: ignore[operator]
    capped = forecast(_spec(co2_budget_g=10 * g_per_s), 30_000, pace)
    assert capped.limited_by == "co2" and capped.seconds == pytest.approx(10.0)
    assert capped.co2_kg == pytest.approx(10 * g_per_s / 1000)
    line = timed.line("SmolLM2-135M-Instruct", "lora")
    assert line.startswith("Forecast: ≈ 1m00s of training (its time budget ends it), ≈ ")
    assert line.endswith(
        "tokens/s, the pace of 1 earlier run of SmolLM2-135M-Instruct (lora) here."
    )
    short = past_pace([_job(100.0, seconds=20.0, batch_size=1)], _spec(batch_size=8), MODEL, "cpu")
    assert short is not None
    assert (
        forecast(_spec(), 1_000, short)
        .line("M", "lora")
        .endswith(
            "here (a rough guide: they had another batch size or length; only 20 s of training "
            "measured)."
        )
    )
    unmetered = past_pace([_job(100.0, kwh=None, co2_kg=None)], _spec(), MODEL, "cpu")
    assert unmetered is not None and forecast(_spec(), 1_000, unmetered).kwh is None


def test_preference_and_grpo_runs_are_counted_in_the_steps_their_batches_make():
    dpo = _spec(objective="dpo", beta=0.1, batch_size=4, epochs=2.0)
    assert planned_steps(dpo, rows=100) == 2 * 25
    assert planned_steps(dpo, rows=100, world_size=2) == 2 * 13
    assert planned_steps(dpo.model_copy(update={"gradient_accumulation": 2}), rows=100) == 24
    assert planned_steps(dpo.model_copy(update={"max_steps": 8}), rows=100) == 8
    assert planned_steps(dpo, rows=2) == 2  # at least one step an epoch
    # A GRPO batch of 8 completions holds 2 prompts' groups of 4.
    grpo = _spec(
        objective="grpo",
        batch_size=8,
        num_generations=4,
        rewards=[{"kind": "regex", "pattern": "x"}],
    )
    assert planned_steps(grpo, rows=10) == 5
    assert planned_steps(_spec(), rows=100) is None
    assert planned_steps(dpo, rows=0) is None


def test_a_dpo_run_takes_its_pace_in_steps_from_dpo_runs_only():
    spec = _spec(objective="dpo", beta=0.1, batch_size=4)
    jobs = [
        _job(999.0, batch_size=4),  # SFT: another objective
        _job(1.0, seconds=80.0, steps=20, objective="dpo", beta=0.1, batch_size=4),
        _job(1.0, seconds=40.0, steps=20, objective="dpo", beta=0.1, batch_size=2),
    ]
    pace = past_pace(jobs, spec, MODEL, "cpu")
    assert pace is not None and pace.unit == "steps" and pace.same_shape
    assert (pace.runs, pace.per_s) == (1, 0.25)
    told = forecast(spec, 40, pace)
    assert (told.amount, told.seconds) == (40, 160.0)
    assert told.line("M", "lora DPO").endswith(
        "about 40 steps at 4.0 s a step, the pace of 1 earlier run of M (lora DPO) here."
    )
    cut = forecast(spec.model_copy(update={"time_budget_s": 60.0}), 40, pace)
    assert (cut.amount, cut.limited_by) == (15, "time")
    # Only runs of another batch: seconds a step do not carry over, and the line says so.
    other = past_pace(jobs[2:], spec, MODEL, "cpu")
    assert other is not None and not other.same_shape and other.per_s == 0.5
    assert "a rough guide: they had another batch size or length" in forecast(spec, 40, other).line(
        "M", "lora DPO"
    )
    assert past_pace(jobs[:1], spec, MODEL, "cpu") is None
