"""A run's duration, energy and CO₂ before it starts, from the pace of earlier runs here.

A budgeted run measures its pace in its first steps (``budget``); a plan made before any step
(``model-garden train --dry-run``, the tab's *Check the plan*) can only lean on what earlier
runs of the same model, method and objective recorded on this machine: the newest few's work
over their training seconds (so long runs count most), their power and their grid's CO₂ per kWh.

An SFT run's work is counted in tokens: the dataset's token counts and the schedule (epochs, or
steps of packed or single examples) give the same non-padding tokens the trainer counts
(``train_tokens``). Preference and GRPO runs are counted in optimizer steps, whose cost depends
on the batch's shape, so their pace is only called steady from runs of the same shape.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from garden import units
from garden.engine.training.records import JobRecord, JobResult
from garden.engine.training.spec import JobSpec

PAST_RUNS = 5  # the newest matching runs the pace is taken from
STEADY_SECONDS = 60.0  # less training than this is mostly its first, slow steps

Unit = Literal["tokens", "steps"]


def unit_of(spec: JobSpec) -> Unit:
    """What a run's work is counted in: SFT tokens, or the optimizer steps of other objectives."""
    return "tokens" if spec.objective == "sft" else "steps"


@dataclass(frozen=True)
class PastPace:
    """How the newest earlier runs like this one went here: their pace, and the medians of their
    power and of their grid's CO₂ per kWh."""

    runs: int
    per_s: float  # their tokens (or steps) over their training seconds
    watts: float | None
    g_co2_per_kwh: float | None
    seconds: float  # the training seconds the pace was measured over
    same_shape: bool = True  # False: none had this run's batch and length
    unit: Unit = "tokens"


@dataclass(frozen=True)
class Forecast:
    """The planned run's training work (tokens or steps), seconds, energy and CO₂, and what
    ends it."""

    amount: int
    seconds: float
    kwh: float | None
    co2_kg: float | None
    limited_by: str  # "schedule", "time" or "co2"
    pace: PastPace

    def line(self, model: str, method: str) -> str:
        ends = {
            "schedule": "",
            "time": " (its time budget ends it)",
            "co2": " (its CO₂ budget ends it)",
        }
        cost = f"≈ {units.duration(self.seconds)} of training{ends[self.limited_by]}"
        if self.kwh is not None:
            cost += f", ≈ {units.energy(self.kwh)}"
        if self.co2_kg is not None:
            cost += f", ≈ {units.co2(self.co2_kg)} CO₂"
        pace = self.pace
        runs = "1 earlier run" if pace.runs == 1 else f"{pace.runs} earlier runs"
        caveats = [] if pace.same_shape else ["they had another batch size or length"]
        if pace.seconds < STEADY_SECONDS:
            caveats.append(f"only {pace.seconds:.0f} s of training measured")
        rough = f" (a rough guide: {'; '.join(caveats)})" if caveats else ""
        return (
            f"Forecast: {cost}; about {self._work()}, the pace of {runs} of {model} ({method}) "
            f"here{rough}."
        )

    def _work(self) -> str:
        per_s = self.pace.per_s
        if self.pace.unit == "tokens":
            return f"{self.amount:,} tokens at {per_s:.0f} tokens/s"
        steps = "1 step" if self.amount == 1 else f"{self.amount:,} steps"
        if per_s >= 1:
            return f"{steps} at {per_s:.1f} steps/s"
        return f"{steps} at {1 / per_s:.1f} s a step"


def planned_tokens(spec: JobSpec, rows: int, mean_tokens: float, world_size: int = 1) -> int | None:
    """The non-padding tokens the run trains on; None where the dataset has no counts or the
    objective trains on other units (preference pairs, generations)."""
    if unit_of(spec) != "tokens" or rows <= 0 or mean_tokens <= 0:
        return None
    example_tokens = min(mean_tokens, float(spec.max_seq_len))
    epoch_tokens = rows * example_tokens
    if spec.max_steps is None:
        return round(spec.epochs * epoch_tokens)
    rows_per_step = spec.batch_size * spec.gradient_accumulation * max(1, world_size)
    row_tokens = (
        _packed_row_tokens(example_tokens, spec.max_seq_len) if spec.packing else example_tokens
    )
    return round(spec.max_steps * min(rows_per_step * row_tokens, epoch_tokens))


def planned_steps(spec: JobSpec, rows: int, world_size: int = 1) -> int | None:
    """The optimizer steps of a preference or GRPO run, as the trainer counts them from its
    batches (a GRPO batch holds whole groups: ``num_generations`` completions of each prompt);
    None for SFT, counted in tokens, or a dataset without rows."""
    if unit_of(spec) != "steps":
        return None
    if spec.max_steps is not None:
        return spec.max_steps
    if rows <= 0:
        return None
    per_batch = spec.prompt_groups if spec.objective == "grpo" else spec.batch_size
    batches = math.ceil(rows / (per_batch * max(1, world_size)))
    return math.ceil(spec.epochs * max(1, batches // spec.gradient_accumulation))


def _packed_row_tokens(example_tokens: float, max_seq_len: int) -> float:
    """Real tokens in a packed row: full rows, less about half an example of room left over
    (a row of 96 holds one or two examples of 50 tokens; 224 of 256 were real in the quick demo)."""
    if example_tokens >= max_seq_len:
        return float(max_seq_len)
    return max(example_tokens, max_seq_len - example_tokens / 2)


def _shape(spec: JobSpec) -> tuple[object, ...]:
    if unit_of(spec) == "tokens":
        return spec.batch_size, spec.max_seq_len, spec.packing
    grpo = (spec.num_generations, spec.max_completion_length) if spec.objective == "grpo" else ()
    return spec.batch_size, spec.gradient_accumulation, spec.max_seq_len, *grpo


def _like(job: JobRecord, spec: JobSpec, model_id: str, device: str, world_size: int) -> bool:
    result, plan, past = job.result, job.plan, job.spec
    if result is None or plan is None or past is None or job.status != "completed":
        return False
    return (
        plan.model_id == model_id
        and past.method == spec.method
        and past.objective == spec.objective
        and result.device == device
        and plan.world_size == world_size
        and spec.precision in ("auto", result.precision)
        and _work(result, unit_of(spec)) > 0
        and result.train_seconds > 0
    )


def _work(result: JobResult, unit: Unit) -> int:
    return result.train_tokens if unit == "tokens" else result.steps


def past_pace(
    jobs: Iterable[JobRecord], spec: JobSpec, model_id: str, device: str, world_size: int = 1
) -> PastPace | None:
    """The pace of the newest completed runs of ``model_id`` by the same method, objective,
    device and process count (and precision, when ``spec`` names one), weighted by their
    training seconds so that long runs count most; None when there is none. ``jobs`` are newest
    first."""
    like = [job for job in jobs if _like(job, spec, model_id, device, world_size)]
    same = [job for job in like if job.spec and _shape(job.spec) == _shape(spec)]
    measured: list[tuple[JobRecord, JobResult]] = [
        (job, job.result) for job in (same or like)[:PAST_RUNS] if job.result is not None
    ]
    if not measured:
        return None
    watts, intensity = [], []
    for job, result in measured:
        wall = (job.finished_at or 0.0) - (job.started_at or 0.0)
        if result.energy_kwh and wall > 0:
            watts.append(result.energy_kwh * 3.6e6 / wall)
            if result.emissions_kg is not None:
                intensity.append(result.emissions_kg * 1000 / result.energy_kwh)
    seconds = sum(result.train_seconds for _, result in measured)
    unit = unit_of(spec)
    return PastPace(
        runs=len(measured),
        per_s=sum(_work(result, unit) for _, result in measured) / seconds,
        watts=statistics.median(watts) if watts else None,
        g_co2_per_kwh=statistics.median(intensity) if intensity else None,
        seconds=seconds,
        same_shape=bool(same),
        unit=unit,
    )


def forecast(spec: JobSpec, amount: int, pace: PastPace) -> Forecast:
    """``amount`` of work (tokens or steps, as ``pace`` counts) at ``pace``, cut where the
    spec's time or CO₂ budget would end the run."""
    seconds, limited_by = amount / pace.per_s, "schedule"
    if spec.time_budget_s is not None and spec.time_budget_s < seconds:
        seconds, limited_by = spec.time_budget_s, "time"
    g_per_s = None
    if pace.watts is not None and pace.g_co2_per_kwh is not None:
        g_per_s = pace.watts / 3.6e6 * pace.g_co2_per_kwh
    if spec.co2_budget_g is not None and g_per_s and spec.co2_budget_g / g_per_s < seconds:
        seconds, limited_by = spec.co2_budget_g / g_per_s, "co2"
    kwh = pace.watts * seconds / 3.6e6 if pace.watts is not None else None
    co2_kg = kwh * pace.g_co2_per_kwh / 1000 if kwh is not None and pace.g_co2_per_kwh else None
    trained = amount if limited_by == "schedule" else math.floor(seconds * pace.per_s)
    return Forecast(trained, seconds, kwh, co2_kg, limited_by, pace)
