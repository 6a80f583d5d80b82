"""Training jobs: submit, follow, stop, cancel and resume fine-tuning runs.

Reads go straight to the store and never start the job manager; commands (and ``wait``) use
the process-wide manager, which ``start_manager`` starts explicitly when the app launches.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from garden.config import Settings
from garden.engine.evaluation.storage import latest_completed
from garden.engine.training import (
    ACTIVE_STATUSES,
    RESUMABLE_STATUSES,
    TERMINAL_STATUSES,
    JobRecord,
    JobSpec,
    get_job_manager,
    queries,
    trackers,
)
from garden.engine.training.warm import warm_up_in_background
from garden.errors import ConfigError, JobError
from garden.services import visitors, web
from garden.services.base import View, resolve
from garden.services.training_form import (
    SWITCH_CHOICES,
    ObjectiveChoices,
    PresetView,
    base_model_choices,
    build_spec,
    check_judges,
    dataset_choices,
    objectives_for,
    parse_rewards,
    preset_values,
    presets,
    rewards_text,
)
from garden.store import Store, get_store

__all__ = [
    "SWITCH_CHOICES",
    "CompletionSampleView",
    "JobSpec",
    "JobView",
    "LogLine",
    "MetricPoint",
    "ObjectiveChoices",
    "PresetView",
    "base_model_choices",
    "build_spec",
    "cancel",
    "capped_for_demo",
    "check_demo_trackers",
    "check_spec",
    "current_or_latest",
    "dataset_choices",
    "follow_up_values",
    "get",
    "list_jobs",
    "logs",
    "metrics",
    "objectives_for",
    "parse_rewards",
    "preset_values",
    "presets",
    "resume",
    "rewards_text",
    "start_manager",
    "stop",
    "submit",
    "submit_from_web",
    "wait",
    "web_spec",
]


class CompletionSampleView(View):
    """A GRPO completion sampled at a logged step: its prompt, each reward and the total."""

    step: int
    prompt: str
    completion: str
    rewards: dict[str, float | None] = Field(description="Each reward function's score")
    total: float | None = Field(None, description="The weighted sum of the scores")


class JobView(View):
    """A training job as people see it: live progress while it runs, its result once it ends."""

    id: str
    name: str
    status: str
    objective: str = Field("sft", description="sft, dpo, orpo, kto or grpo")
    init_from_run: str | None = Field(None, description="The run this one started from")
    reward_margin: float | None = Field(None, description="Preference runs: latest reward margin")
    reward_accuracy: float | None = Field(None, description="Share of pairs ranked right")
    reward_mean: float | None = Field(None, description="GRPO runs: latest mean reward")
    rewards_by_function: dict[str, float] | None = Field(
        None, description="GRPO runs: latest mean reward of each reward function"
    )
    samples: list[CompletionSampleView] = Field(
        default_factory=list, description="GRPO runs: the newest sampled completions, newest first"
    )
    step: int = 0
    total_steps: int | None = None
    loss: float | None = Field(None, description="Latest train loss; the final one once ended")
    eval_loss: float | None = Field(None, description="Final eval loss")
    first_loss: float | None = None
    tokens_per_second: float | None = None
    train_tokens: int = 0
    eta_s: float | None = Field(None, description="Seconds left (estimate)")
    energy_kwh: float | None = None
    emissions_kg: float | None = Field(None, description="kg CO₂-equivalent, all runs")
    backend: str | None = None
    backend_reason: str | None = Field(None, description="Why this backend was chosen")
    device: str | None = None
    strategy: str | None = Field(None, description="single, ddp, fsdp or deepspeed")
    processes: int = Field(1, description="Training processes on all machines together")
    machines: int = 1
    global_batch: int | None = Field(
        None, description="Examples per optimizer step: batch x processes x accumulation"
    )
    time_budget_s: float | None = Field(None, description="Training seconds at most")
    co2_budget_g: float | None = Field(None, description="Grams of CO₂-equivalent at most")
    budget_steps: int | None = Field(None, description="Steps fitted to the budget by the probe")
    forecast_s: float | None = Field(None, description="Planned training seconds")
    forecast_kwh: float | None = Field(None, description="Planned energy")
    forecast_co2_kg: float | None = Field(None, description="Planned kg CO₂-equivalent")
    output_dir: str | None = Field(None, description="Where the fine-tuned model is written")
    error: str | None = None
    error_kind: str | None = Field(None, description="out_of_memory, killed, bad_data, …")
    eval_perplexity: float | None = Field(None, description="Newest evaluation's perplexity")
    eval_rouge_l: float | None = Field(None, description="Newest evaluation's ROUGE-L, 0..1")
    eval_exact_match: float | None = None
    eval_judge_win_rate: float | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def resumable(self) -> bool:
        return self.status in RESUMABLE_STATUSES

    @property
    def progress_fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end (or to now while it runs)."""
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at


class MetricPoint(View):
    """One logged step of a job's curves."""

    step: int
    ts: float
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    epoch: float | None = Field(None, description="Fractional epoch at this step")
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    energy_kwh: float | None = Field(None, description="Energy so far")
    emissions_kg: float | None = None
    reward_chosen: float | None = Field(None, description="Preference runs only")
    reward_rejected: float | None = None
    reward_margin: float | None = None
    reward_accuracy: float | None = None
    eval_reward_margin: float | None = None
    reward_mean: float | None = Field(None, description="GRPO runs: mean weighted reward")
    reward_std: float | None = None
    completion_length: float | None = Field(None, description="GRPO: mean completion tokens")
    kl: float | None = None
    rewards_by_function: dict[str, float] | None = Field(
        None, description="GRPO: mean reward of each reward function"
    )


class LogLine(View):
    id: int
    ts: float
    level: str
    message: str


def _view(job: JobRecord, evaluation: Mapping[str, Any] | None = None) -> JobView:
    """The one place where a job's result, once there, wins over its live progress."""
    done, live = job.result, job.progress
    scores = evaluation or {}
    return JobView(
        **job.model_dump(include=set(JobView.model_fields)),
        eval_perplexity=scores.get("perplexity"),
        eval_rouge_l=scores.get("rouge_l"),
        eval_exact_match=scores.get("exact_match"),
        eval_judge_win_rate=scores.get("judge_win_rate"),
        step=done.steps if done else live.step,
        total_steps=live.total_steps,
        loss=done.final_loss if done else live.loss,
        eval_loss=done.final_eval_loss if done else None,
        first_loss=done.first_loss if done else None,
        tokens_per_second=done.tokens_per_second if done else live.tokens_per_second,
        train_tokens=done.train_tokens if done else live.train_tokens,
        eta_s=live.eta_s,
        energy_kwh=done.energy_kwh if done else live.energy_kwh,
        emissions_kg=done.emissions_kg if done else live.emissions_kg,
        strategy=job.plan.strategy if job.plan else None,
        processes=job.plan.world_size if job.plan else 1,
        machines=job.plan.num_machines if job.plan else 1,
        global_batch=job.plan.global_batch or None if job.plan else None,
        objective=job.spec.objective if job.spec else "sft",
        init_from_run=job.spec.init_from_run if job.spec else None,
        time_budget_s=job.spec.time_budget_s if job.spec else None,
        co2_budget_g=job.spec.co2_budget_g if job.spec else None,
        budget_steps=live.budget_steps,
        forecast_s=live.forecast_s,
        forecast_kwh=live.forecast_kwh,
        forecast_co2_kg=live.forecast_co2_kg,
        reward_margin=live.reward_margin,
        reward_accuracy=live.reward_accuracy,
        reward_mean=live.reward_mean,
        rewards_by_function=live.rewards_by_function,
    )


def _store(settings: Settings | None) -> Store:
    return get_store(resolve(settings).db_path)


# --- the form ------------------------------------------------------------------------------


def follow_up_values(
    job_id: str | None, objective: str = "dpo", *, settings: Settings | None = None
) -> dict[str, Any]:
    """Form values for a preference run that starts from completed run ``job_id`` (else the
    latest run): the objective's CPU preset, the run, and the newest dataset that fits, if any."""
    job = current_or_latest(job_id, settings=settings)
    if job is None:
        raise JobError("There is no run to start from.", hint="Train an SFT run first.")
    if job.status != "completed":
        raise JobError(
            f"Run {job.id} is {job.status}: only a completed run can start another.",
            hint="Pick a completed run in the runs table.",
        )
    preset = f"{objective.upper()} (CPU quick)"
    values: dict[str, Any] = {**preset_values(preset), "init_from_run": job.id}
    values["preset"] = preset
    for _, dataset_id in dataset_choices(settings=settings):
        if objective in objectives_for(dataset_id, settings=settings).objectives:
            values["dataset"] = dataset_id
            break
    return values


# --- reading -------------------------------------------------------------------------------


def _evaluated(store: Store, jobs: list[JobRecord]) -> list[JobView]:
    """Views of ``jobs`` with their newest completed evaluation's scores."""
    scores = latest_completed(store, [job.id for job in jobs])
    return [_view(job, scores.get(job.id)) for job in jobs]


def get(job_id: str, *, settings: Settings | None = None) -> JobView:
    store = _store(settings)
    return _evaluated(store, [queries.get_job(store, job_id)])[0]


def list_jobs(
    limit: int = 50, status: str | None = None, *, settings: Settings | None = None
) -> list[JobView]:
    """Jobs, newest first."""
    store = _store(settings)
    return _evaluated(store, queries.list_jobs(store, limit, status))


def current_or_latest(
    job_id: str | None = None, *, settings: Settings | None = None
) -> JobView | None:
    """``job_id`` if given (None when unknown), else the active job, else the newest one."""
    store = _store(settings)
    if job_id:
        try:
            return _evaluated(store, [queries.get_job(store, job_id)])[0]
        except JobError:
            return None
    job = queries.active_job(store)
    if job is None:
        recent = queries.list_jobs(store, limit=1)
        job = recent[0] if recent else None
    return _evaluated(store, [job])[0] if job is not None else None


def metrics(job_id: str, *, settings: Settings | None = None) -> list[MetricPoint]:
    points = queries.read_metrics(_store(settings), job_id)
    return [
        MetricPoint.model_validate(p.model_dump(include=set(MetricPoint.model_fields)))
        for p in points
    ]


def logs(
    job_id: str, after_id: int = 0, limit: int = 200, *, settings: Settings | None = None
) -> list[LogLine]:
    """The last ``limit`` log lines after ``after_id``, oldest first."""
    lines = queries.read_logs(_store(settings), job_id, after_id, limit)
    return [LogLine.model_validate(line.model_dump()) for line in lines]


# --- commands ------------------------------------------------------------------------------


def start_manager(*, settings: Settings | None = None) -> list[str]:
    """Start this process's job manager: jobs a dead app left active become 'interrupted'.

    Returns their ids. Commands start the manager on first use too; the app calls this at launch.
    """
    return list(get_job_manager(resolve(settings)).recovered)


def warm_up_workers(*, settings: Settings | None = None) -> None:
    """Import the training stack in the background now, so the next run starts at once."""
    warm_up_in_background(resolve(settings).warm_workers)


# The probe alone takes a few steps: a budget below these cannot fit a run on any machine.
MIN_TIME_BUDGET_S = 10.0
MIN_CO2_BUDGET_G = 0.01


def check_budget(spec: JobSpec, settings: Settings) -> None:
    """A time or CO₂ budget must leave room for the probe and be applicable (one process,
    carbon tracking on for a CO₂ budget); ``JobError`` with a hint otherwise."""
    if spec.time_budget_s is not None and spec.time_budget_s < MIN_TIME_BUDGET_S:
        raise JobError(
            f"A time budget of {spec.time_budget_s:g} s is shorter than the probe that measures "
            f"this machine (a few training steps).",
            hint=f"Give at least {MIN_TIME_BUDGET_S:g} s (e.g. --time-budget 1m), or no budget.",
        )
    if spec.co2_budget_g is not None and spec.co2_budget_g < MIN_CO2_BUDGET_G:
        raise JobError(
            f"A CO₂ budget of {spec.co2_budget_g:g} g is smaller than the probe that measures "
            "this machine emits (a few training steps).",
            hint=f"Give at least {MIN_CO2_BUDGET_G:g} g (e.g. --co2-budget 0.5g), or no budget.",
        )
    budgeted = spec.time_budget_s is not None or spec.co2_budget_g is not None
    if budgeted and spec.distributed:
        raise JobError(
            "Time and CO₂ budgets apply to runs in one training process for now.",
            hint="Set processes and machines to 1, or drop the budget and set max steps.",
        )
    if spec.co2_budget_g is not None and not settings.carbon_tracking_enabled:
        raise JobError(
            "A CO₂ budget needs carbon tracking, and it is off.",
            hint="Set CARBON_TRACKING_ENABLED=true, or use a time budget.",
        )


def check_spec(spec: JobSpec, settings: Settings) -> None:
    """What ``submit`` checks before planning: budgets, judges, trackers installed."""
    check_budget(spec, settings)
    check_judges(spec, settings)
    trackers.check_installed(trackers.chosen(spec, settings))


def submit(spec: JobSpec, *, settings: Settings | None = None) -> JobView:
    """Plan and queue a run; raises typed errors (``JobError``, ``DatasetError`` …) for bad specs,
    and ``ConfigError`` naming the extra to install when a tracker it reports to is missing."""
    check_spec(spec, resolve(settings))
    manager = get_job_manager(resolve(settings))
    return _view(manager.get(manager.submit(spec)))


# A web visitor must not make the server join a rendezvous at a host they name.
MACHINE_FIELDS = ("num_machines", "machine_rank", "main_process_ip", "main_process_port")


def submit_from_web(
    values: Mapping[str, object],
    *,
    settings: Settings | None = None,
    visitor: visitors.Visitor | None = None,
) -> JobView:
    """Submit a run typed in a web form (``web_spec``). A ``visitor`` may have
    ``PUBLIC_DEMO_MAX_JOBS_PER_VISITOR`` runs queued or running."""
    settings = resolve(settings)
    spec = web_spec(values, settings=settings)
    with visitors.adding("job", visitor, settings=settings) as claim:
        view = submit(spec, settings=settings)
        claim(view.id)
    return view


def web_spec(values: Mapping[str, object], *, settings: Settings | None = None) -> JobSpec:
    """The spec of a run typed in a web form: the dataset must be an imported one and the base
    model a listed model or a hub id; a host path is refused before anything is read or queued.
    In a public demo the run is capped at ``PUBLIC_DEMO_MAX_STEPS`` steps."""
    checked = dict(values)
    if "/" in str(values.get("lora_target_modules") or ""):
        raise JobError(
            "Target modules are module names, not paths.",
            hint="Use names such as q_proj, v_proj, or all-linear.",
        )
    if values.get("reward_file"):
        raise ConfigError(
            "A reward file is Python code, so the web may not name one.",
            hint="Pick rewards in the form, or use `model-garden train --reward-file` on the "
            "machine itself.",
        )
    if any(values.get(key) not in (None, "", 0, 1) for key in MACHINE_FIELDS):
        raise ConfigError(
            "A run over several machines is started on each machine, not from the web.",
            hint="Use `model-garden train --num-machines …` on every node (docs/scale.md).",
        )
    checked["dataset"] = web.check_dataset(str(values.get("dataset") or ""), settings=settings)
    model = web.check_model(str(values.get("base_model") or ""), settings=settings)
    if model is None:
        checked.pop("base_model", None)
    else:
        checked["base_model"] = model
    settings = resolve(settings)
    spec = capped_for_demo(build_spec(checked), settings)
    check_demo_trackers(spec, settings)
    check_judges(spec, settings, from_web=True)
    return spec


def capped_for_demo(spec: JobSpec, settings: Settings) -> JobSpec:
    """In a public demo a run stops after ``PUBLIC_DEMO_MAX_STEPS`` steps at the most."""
    if not settings.public_demo:
        return spec
    cap = settings.public_demo_max_steps
    return spec.model_copy(update={"max_steps": min(spec.max_steps or cap, cap)})


def check_demo_trackers(spec: JobSpec, settings: Settings) -> None:
    """On a public demo the experiment trackers are the owner's (REPORT_TO): a run from the web
    may not report anywhere else (W&B with the owner's key, say)."""
    if not settings.public_demo or spec.report_to is None:
        return
    if set(spec.report_to) != set(settings.trackers):
        owner = ", ".join(settings.trackers) or "none"
        raise ConfigError(
            f"On this public demo runs report to the owner's experiment trackers ({owner}).",
            hint="Leave report_to out; the app's owner sets REPORT_TO.",
        )


def stop(
    job_id: str, *, settings: Settings | None = None, visitor: visitors.Visitor | None = None
) -> JobView:
    """Graceful stop: the run saves a checkpoint and its adapter, then ends 'stopped'. A public demo's ``visitor`` may stop only its own runs."""
    settings = resolve(settings)
    visitors.check_may_change("job", job_id, visitor, settings=settings)
    return _view(get_job_manager(settings).stop(job_id))


def cancel(
    job_id: str, *, settings: Settings | None = None, visitor: visitors.Visitor | None = None
) -> JobView:
    """Hard stop: the worker is killed at once and nothing more is saved. A public demo's ``visitor`` may cancel only its own runs."""
    settings = resolve(settings)
    visitors.check_may_change("job", job_id, visitor, settings=settings)
    return _view(get_job_manager(settings).cancel(job_id))


def resume(
    job_id: str, *, settings: Settings | None = None, visitor: visitors.Visitor | None = None
) -> JobView:
    """Queue a stopped, interrupted or failed job again, from its last checkpoint. A public demo's ``visitor`` may resume only its own runs."""
    settings = resolve(settings)
    visitors.check_may_change("job", job_id, visitor, settings=settings)
    with visitors.adding("job", visitor, settings=settings):
        return _view(get_job_manager(settings).resume(job_id))


def wait(job_id: str, timeout: float | None = None, *, settings: Settings | None = None) -> JobView:
    """Block until the job ends, or ``timeout`` seconds pass; the job as it then stands."""
    job = get_job_manager(resolve(settings)).wait(job_id, timeout)
    return _evaluated(_store(settings), [job])[0]
