"""Time- and CO₂-budgeted runs: a short probe measures this machine, the step count is fitted.

The probe is the run's own first steps (one warm-up step, then ``PROBE_STEPS`` timed ones),
inside the worker and so under its carbon meter. From their pace ``fit_steps`` picks the
smaller of the steps that fit the time budget, the steps that fit the CO₂ budget and the steps
the schedule (epochs or max_steps) asked for; the trainer's ``max_steps`` and its learning-rate
schedule are then remade for that many steps, so a cosine schedule ends at the budget. A guard
ends the run (as a completed one: saved, evaluated) when the next step would pass a budget.

Three steps are a small sample: a probe slowed by something else on the machine would end the
run far short of its budget. So the plan is made again, from the pace of every step since the
warm-up, each time the steps done since the probe double (8, 16, 32, ...), and more often near
the end (by halfway through the steps left, every ``REPLAN_MIN_STEPS`` at the least), so that a
pace that changes late moves the schedule's end too. Until the first fit the learning-rate
schedule is one for a short run, so the probe steps train at a real rate.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

from garden.engine.training.chat_pause import paused_seconds
from garden.engine.training.records import MetricsEvent, StepMetrics
from garden.engine.training.spec import JobSpec
from garden.errors import JobError

PROBE_WARMUP_STEPS = 1
PROBE_STEPS = 3
REPLAN_MIN_STEPS = 4
# The schedule's length until the probe has fitted one (a fresh run's warm-up stays short).
PROVISIONAL_STEPS = 8 * (PROBE_WARMUP_STEPS + PROBE_STEPS)


@dataclass(frozen=True)
class Usage:
    """Steps, training seconds, energy and CO₂: spent so far, or per step (a pace)."""

    steps: float
    seconds: float
    kwh: float | None = None
    co2_g: float | None = None


@dataclass(frozen=True)
class BudgetFit:
    """How many optimizer steps the run makes, what limits it, and what it should cost."""

    steps: int
    limited_by: str  # "schedule", "time" or "co2"
    forecast_s: float
    forecast_kwh: float | None
    forecast_co2_kg: float | None


def _fits(budget: float, spent: float, per_step: float) -> int:
    if per_step <= 0:
        return 2**31
    return math.floor((budget - spent) / per_step + 1e-9)


def fit_steps(
    requested: int,
    spent: Usage,
    pace: Usage,
    time_budget_s: float | None = None,
    co2_budget_g: float | None = None,
) -> BudgetFit:
    """The total steps of a run: the fewest of what the schedule asked, what fits the time
    budget and what fits the CO₂ budget at ``pace`` after ``spent``. ``JobError`` (one line with
    a hint) when the probe alone already spent more than a budget."""
    done = int(spent.steps)
    limits = {"schedule": requested}
    if time_budget_s is not None:
        limits["time"] = done + _fits(time_budget_s, spent.seconds, pace.seconds)
    if co2_budget_g is not None and pace.co2_g is not None:
        limits["co2"] = done + _fits(co2_budget_g, spent.co2_g or 0.0, pace.co2_g)
    limited_by, steps = min(limits.items(), key=lambda item: item[1])
    if steps < done and limited_by == "time":
        need = math.ceil(spent.seconds + 10 * pace.seconds)
        raise JobError(
            f"The time budget of {time_budget_s:g} s is shorter than the probe: its {done} steps "
            f"took {spent.seconds:.1f} s on this machine ({pace.seconds:.2f} s a step).",
            hint=f"Give at least {need} s, lower the batch size or sequence length, "
            "or set no time budget.",
        )
    if steps < done:
        raise JobError(
            f"The CO₂ budget of {co2_budget_g:g} g is used up by the probe: its {done} steps "
            f"emitted {spent.co2_g or 0.0:.3g} g on this machine.",
            hint=f"Give at least {(spent.co2_g or 0.0) + 10 * (pace.co2_g or 0.0):.2g} g, "
            "or set no CO₂ budget.",
        )
    steps = max(steps, done)
    more = steps - done
    kwh = None if spent.kwh is None or pace.kwh is None else spent.kwh + more * pace.kwh
    co2 = None if spent.co2_g is None or pace.co2_g is None else spent.co2_g + more * pace.co2_g
    return BudgetFit(
        steps=steps,
        limited_by=limited_by,
        forecast_s=spent.seconds + more * pace.seconds,
        forecast_kwh=kwh,
        forecast_co2_kg=None if co2 is None else co2 / 1000,
    )


def has_budget(spec: JobSpec) -> bool:
    return spec.time_budget_s is not None or spec.co2_budget_g is not None


def forecast_line(fit: BudgetFit, spec: JobSpec, pace: Usage, tokens_per_s: float) -> str:
    """The log line that tells the plan: steps, duration, energy and CO₂, and why."""
    budgets = []
    if spec.time_budget_s is not None:
        budgets.append(f"time {spec.time_budget_s:g} s")
    if spec.co2_budget_g is not None:
        budgets.append(f"CO₂ {spec.co2_budget_g:g} g")
    cost = f"{fit.forecast_s:.0f} s of training"
    if fit.forecast_kwh is not None:
        cost += f", {fit.forecast_kwh * 1000:.3g} Wh"
    if fit.forecast_co2_kg is not None:
        cost += f", {fit.forecast_co2_kg * 1000:.3g} g CO₂"
    return (
        f"Budget ({', '.join(budgets)}): probe {pace.seconds:.2f} s a step, "
        f"{tokens_per_s:.0f} tokens/s; plan {fit.steps} steps (limited by {fit.limited_by}); "
        f"forecast {cost}"
    )


def refit_schedule(args: Any, scheduler: Any, total_steps: int) -> bool:
    """Remake a ``LambdaLR`` schedule in place for ``total_steps`` (warm-up by the same rule):
    the next steps follow the new curve, which ends at ``total_steps``. False if it cannot."""
    import torch
    from transformers import get_scheduler

    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate may wrap it
    if not isinstance(inner, torch.optim.lr_scheduler.LambdaLR):
        return False
    dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    fresh = get_scheduler(
        args.lr_scheduler_type,
        dummy,
        num_warmup_steps=args.get_warmup_steps(total_steps),
        num_training_steps=total_steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs or {},
    )
    if not isinstance(fresh, torch.optim.lr_scheduler.LambdaLR):
        return False
    curve = fresh.lr_lambdas[0]
    inner.lr_lambdas = [curve for _ in inner.optimizer.param_groups]
    lrs = [base * curve(inner.last_epoch) for base in inner.base_lrs]
    for group, lr in zip(inner.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    inner._last_lr = lrs
    return True


def make_budget_callback(ctx: Any) -> Any:
    """A ``TrainerCallback`` that probes, fits the run to its budgets and guards them; None
    when the job has no budget."""
    if not has_budget(ctx.spec):
        return None
    from transformers import TrainerCallback

    spec: JobSpec = ctx.spec

    class BudgetCallback(TrainerCallback):
        def __init__(self) -> None:
            self.paused_at_begin = 0.0
            self.t_begin = self.t_probe = self.t_last = time.monotonic()
            self.start_step = 0
            self.probe_at: tuple[int, int, float | None, float | None] | None = None
            self.pace: Usage | None = None
            self.last_step_s = 0.0
            self.requested = 0  # the steps the schedule asked for, before any fit
            self.next_fit = 0

        def _co2_g(self) -> tuple[float | None, float | None]:
            energy, emissions = ctx.carbon()
            return energy, None if emissions is None else emissions * 1000

        def _now(self) -> float:
            """The run's clock: it stands still while a chat answer pauses the worker."""
            paused = paused_seconds(ctx.checkpoint_dir) - self.paused_at_begin
            return time.monotonic() - max(0.0, paused)

        def on_train_begin(self, args, state, control, **kwargs):
            self.paused_at_begin = paused_seconds(ctx.checkpoint_dir)
            self.t_begin = ctx.extra.get("train_started", time.monotonic())
            self.t_last = self._now()
            self.start_step = state.global_step
            if state.global_step == 0 and state.max_steps > PROVISIONAL_STEPS:
                # The schedule asked for (100 epochs, say) would warm the rate up over dozens
                # of steps, and the probe would train at almost none: until the fit, the
                # schedule is one for a short run.
                refit_schedule(args, kwargs.get("lr_scheduler"), PROVISIONAL_STEPS)

        def on_step_end(self, args, state, control, **kwargs):
            now = self._now()
            self.last_step_s, self.t_last = now - self.t_last, now
            done = state.global_step - self.start_step
            if done == PROBE_WARMUP_STEPS:
                kwh, co2 = self._co2_g()
                self.t_probe = now
                self.probe_at = (done, int(state.num_input_tokens_seen or 0), kwh, co2)
            elif done == PROBE_WARMUP_STEPS + PROBE_STEPS and self.probe_at is not None:
                self.requested = state.max_steps
                self._fit(args, state, kwargs.get("lr_scheduler"), now)
                self.next_fit = self._next_fit(done, state)
            elif done == self.next_fit and state.global_step < state.max_steps:
                # A step slower than the pace may already have passed a budget: the guard
                # below ends the run then, as it would have without a re-plan.
                with contextlib.suppress(JobError):
                    self._fit(args, state, kwargs.get("lr_scheduler"), now)
                self.next_fit = self._next_fit(done, state)
            self._guard(state, control, now)

        @staticmethod
        def _next_fit(done: int, state: Any) -> int:
            """When to plan again: once the steps since the probe double, and by halfway
            through the steps left, so that a pace that changes late still moves the schedule's
            end to the budget instead of the guard cutting the run mid-schedule."""
            left = state.max_steps - state.global_step
            return done + max(REPLAN_MIN_STEPS, min(done, left // 2))

        def _fit(self, args: Any, state: Any, scheduler: Any, now: float) -> None:
            """Fit the run's steps to its budgets at the pace since the warm-up step."""
            _, tokens0, kwh0, co2_0 = self.probe_at or (0, 0, None, None)
            kwh, co2 = self._co2_g()
            steps = state.global_step - self.start_step - PROBE_WARMUP_STEPS
            first = self.pace is None
            self.pace = Usage(
                steps=1,
                seconds=(now - self.t_probe) / steps,
                kwh=None if kwh is None or kwh0 is None else (kwh - kwh0) / steps,
                co2_g=None if co2 is None or co2_0 is None else (co2 - co2_0) / steps,
            )
            tokens_per_s = (int(state.num_input_tokens_seen or 0) - tokens0) / max(
                now - self.t_probe, 1e-9
            )
            spent = Usage(steps=state.global_step, seconds=now - self.t_begin, kwh=kwh, co2_g=co2)
            fit = fit_steps(
                self.requested,
                spent,
                self.pace,
                spec.time_budget_s,
                spec.co2_budget_g if co2 is not None else None,
            )
            if spec.co2_budget_g is not None and co2 is None and first:
                if spec.time_budget_s is None:
                    raise JobError(
                        "The CO₂ budget cannot be kept: this run has no carbon readings "
                        "(the meter is unavailable here).",
                        hint="Set a time budget instead, or check the carbon log in LOGS_DIR.",
                    )
                ctx.log(
                    "Carbon tracking is unavailable: only the time budget is applied", "WARNING"
                )
            planned = state.max_steps
            if fit.steps != planned:
                state.max_steps = fit.steps
                if not refit_schedule(args, scheduler, fit.steps):
                    ctx.log("The learning-rate schedule could not be refitted", "WARNING")
            if first:
                ctx.log(forecast_line(fit, spec, self.pace, tokens_per_s))
            elif fit.steps != planned:
                ctx.log(
                    f"Budget re-planned after {steps} timed steps ({self.pace.seconds:.2f} s a "
                    f"step): {fit.steps} steps instead of {planned}"
                )
            else:
                return
            ctx.emit(
                MetricsEvent(
                    metrics=StepMetrics(
                        step=state.global_step,
                        total_steps=fit.steps,
                        budget_steps=fit.steps,
                        forecast_s=round(fit.forecast_s, 1),
                        forecast_kwh=fit.forecast_kwh,
                        forecast_co2_kg=fit.forecast_co2_kg,
                    ),
                    logged=False,
                )
            )

        def _guard(self, state: Any, control: Any, now: float) -> None:
            """End the run (completed) when the next step would pass a budget."""
            if state.global_step >= state.max_steps:
                # A fit made at this step may have ended the run here; the trainer's own check
                # of max_steps ran before this callback, with the old value.
                control.should_training_stop = True
            if control.should_training_stop:
                return
            # Before the pace is known the last step is the guess, but not the warm-up step:
            # it carries the trainer's start and first-call costs, far above a step's.
            warm = state.global_step - self.start_step <= PROBE_WARMUP_STEPS
            step_s = self.pace.seconds if self.pace else 0.0 if warm else self.last_step_s
            elapsed = now - self.t_begin
            why = None
            if spec.time_budget_s is not None and elapsed + step_s > spec.time_budget_s:
                why = f"time budget {spec.time_budget_s:g} s ({elapsed:.0f} s trained)"
            elif spec.co2_budget_g is not None and self.pace and self.pace.co2_g is not None:
                _, co2 = self._co2_g()
                if co2 is not None and co2 + self.pace.co2_g > spec.co2_budget_g:
                    why = f"CO₂ budget {spec.co2_budget_g:g} g ({co2:.3g} g emitted)"
            if why is None:
                return
            probed = state.max_steps - self.start_step > PROBE_WARMUP_STEPS + PROBE_STEPS
            if self.pace is None and probed:  # the probe itself does not fit
                raise JobError(
                    f"The budget is shorter than the probe: the {why} ran out after "
                    f"{state.global_step - self.start_step} steps, before the pace was measured.",
                    hint="Give a larger budget, lower the batch size or sequence length, "
                    "or set no budget.",
                )
            control.should_training_stop = True
            ctx.log(f"Reached the {why} at step {state.global_step}: ending the run")

    return BudgetCallback()
