"""`model-garden train` (a job in the foreground) and `model-garden jobs` (list/show/stop/resume/cancel)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from garden import present
from garden.cli.eval import evaluation_line
from garden.cli.output import add_row, console, err_console, fail, print_json
from garden.errors import GardenError
from garden.services import run_plan, training
from garden.services.training import JobView

SHOWN_LOG_LEVELS = ("WARNING", "ERROR", "INFO")
TIME_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
MASS_UNITS = {"": 1.0, "g": 1.0, "mg": 0.001, "kg": 1000.0}
QUANTITY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$")


SWITCHES = ("torch_compile", "int8_matmuls")  # tri-state spec fields: auto, on, off


def switch_option(field: str, default_word: str, help_text: str) -> Callable[..., Any]:
    """``--field-name`` taking a word of ``training.SWITCH_CHOICES``, the default listed first."""
    words = [default_word, *(word for word in ("on", "off", "auto") if word != default_word)]
    assert set(words) == set(training.SWITCH_CHOICES)
    flag = "--" + field.replace("_", "-")
    return click.option(flag, field, type=click.Choice(words), default=None, help=help_text)


def _quantity(text: str, units: dict[str, float], what: str, examples: str) -> float:
    match = QUANTITY.match(text.lower())
    if match is None or match.group(2) not in units:
        raise click.BadParameter(f"{text!r} is not a {what}; use e.g. {examples}.")
    return float(match.group(1)) * units[match.group(2)]


NO_BUDGET = ("0", "none", "off")
BUDGET_OPTIONS = ("time_budget_s", "co2_budget_g")


def parse_duration(text: str) -> float:
    """Seconds in "90s", "5m", "1.5h" or plain "300"; 0 for "0", "none" or "off"."""
    if text.strip().lower() in NO_BUDGET:
        return 0.0
    return _quantity(text, TIME_UNITS, "duration", "90s, 5m, 1h or 300 (seconds)")


def parse_mass(text: str) -> float:
    """Grams in "0.5g", "200mg", "1kg" or plain "2"; 0 for "0", "none" or "off"."""
    if text.strip().lower() in NO_BUDGET:
        return 0.0
    return _quantity(text, MASS_UNITS, "mass of CO₂", "0.5g, 200mg, 1kg or 2 (grams)")


def summary(job: JobView) -> dict[str, Any]:
    """The `--json` summary of a job (keys kept stable for scripts)."""
    return {
        "job_id": job.id,
        "status": job.status,
        "backend": job.backend,
        "first_loss": job.first_loss,
        "last_loss": job.loss,
        "final_eval_loss": job.eval_loss,
        "steps": job.step,
        "train_tokens": job.train_tokens,
        "tokens_per_second": job.tokens_per_second,
        "energy_kwh": job.energy_kwh,
        "emissions_kg": job.emissions_kg,
        "output_dir": job.output_dir,
        "error": job.error,
    } | preference_summary(job)


def preference_summary(job: JobView) -> dict[str, Any]:
    """The reward figures of a preference or GRPO run (nothing for SFT)."""
    if job.objective == "sft":
        return {}
    if job.objective == "grpo":
        return {
            "objective": job.objective,
            "init_from_run": job.init_from_run,
            "reward_mean": job.reward_mean,
            "rewards_by_function": job.rewards_by_function,
        }
    return {
        "objective": job.objective,
        "init_from_run": job.init_from_run,
        "reward_margin": job.reward_margin,
        "reward_accuracy": job.reward_accuracy,
    }


def margins_line(job_id: str) -> str | None:
    """ "0.0000 at step 1 → 0.8123 at step 8" (and the eval margin) for a preference run."""
    points = training.metrics(job_id)
    train = [(p.step, p.reward_margin) for p in points if p.reward_margin is not None]
    evals = [p.eval_reward_margin for p in points if p.eval_reward_margin is not None]
    if not train:
        return None
    (first_step, first), (last_step, last) = train[0], train[-1]
    line = f"{first:.4f} at step {first_step} → {last:.4f} at step {last_step}"
    return line + (f"; eval {evals[-1]:.4f}" if evals else "")


def follow(job_id: str, quiet: bool) -> JobView:
    """Show a live progress bar until the job ends; Ctrl-C stops it gracefully (twice: cancel)."""
    interrupts = 0
    last_log = 0
    progress = Progress(
        TextColumn("[bold green]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[steps]}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
    )
    with progress:
        task = progress.add_task("queued", total=None, steps="", info="")
        while True:
            try:
                job = training.get(job_id)
                for line in training.logs(job_id, last_log):
                    last_log = line.id
                    if not quiet and line.level in SHOWN_LOG_LEVELS:
                        progress.console.print(
                            f"[dim]{line.level.lower()}[/] {line.message[:400]}", highlight=False
                        )
                progress.update(
                    task,
                    description=job.status,
                    completed=job.step,
                    total=job.total_steps or None,
                    steps=present.job_steps(job),
                    info="  ".join(present.job_facts(job)),
                )
                if job.terminal:
                    return training.wait(job_id, timeout=30)
                time.sleep(0.5)
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:
                    err_console.print(
                        "Stopping gracefully (saving a checkpoint); Ctrl-C again to cancel."
                    )
                    with contextlib.suppress(GardenError):
                        training.stop(job_id)
                else:
                    err_console.print("Cancelling.")
                    with contextlib.suppress(GardenError):
                        training.cancel(job_id)


def _finish(job: JobView, as_json: bool) -> None:
    if as_json:
        print_json(summary(job))
    else:
        table = Table(title=f"Job {job.id} · {job.status}", show_header=False)
        for key, value in summary(job).items():
            if value is not None and key != "job_id":
                add_row(table, key, str(value))
        console.print(table)
    if job.status == "failed":
        fail(job.error or "the job failed", code=1)


@click.command()
@click.option("--model", "base_model", default=None, help="Base model (default: embedded).")
@click.option("--dataset", required=True, help="Imported dataset id or name, or a file to import.")
@click.option("--name", default=None, help="Run name (folder under models/finetuned).")
@click.option("--preset", type=click.Choice([p.name for p in training.presets()]), default=None)
@click.option("--method", type=click.Choice(["lora", "qlora", "full"]), default=None)
@click.option(
    "--objective",
    type=click.Choice(["sft", "dpo", "orpo", "kto", "grpo"]),
    default=None,
    help="sft (default); dpo/orpo on preference pairs; kto on answers labelled good or bad; "
    "grpo on chat or text prompts, with --reward.",
)
@click.option(
    "--reward",
    "rewards",
    multiple=True,
    help="GRPO reward, repeatable: KIND[=ARG][*WEIGHT] with KIND number_match, exact_match, "
    "regex=PATTERN, json[={schema}], tool_call, length=MIN-MAX, judge[=CRITERION] (scored 0-10 "
    "by EVAL_JUDGE_URL) or judge=URL|MODEL|CRITERION (e.g. --reward number_match "
    "--reward 'regex=Answer: \\d+$*0.5').",
)
@click.option(
    "--reward-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="GRPO: a .py file defining reward(prompt, completion, **row) -> float (runs its code).",
)
@click.option("--num-generations", type=int, default=None, help="GRPO: completions per prompt.")
@click.option("--max-completion-length", type=int, default=None, help="GRPO: tokens each.")
@click.option("--temperature", "generation_temperature", type=float, default=None)
@click.option("--beta", type=float, default=None, help="DPO/KTO beta, ORPO lambda (0.1).")
@click.option("--init-from", "init_from_run", default=None, help="Start from this completed run.")
@click.option("--backend", type=click.Choice(["auto", "trl_peft", "unsloth"]), default=None)
@click.option("--epochs", type=float, default=None)
@click.option("--max-steps", type=int, default=None)
@click.option(
    "--time-budget",
    "time_budget_s",
    default=None,
    callback=lambda _ctx, _param, value: None if value is None else parse_duration(value),
    help="Train at most this long: 90s, 5m, 1h (steps are fitted after a short probe); "
    "0 or none drops a preset's budget.",
)
@click.option(
    "--co2-budget",
    "co2_budget_g",
    default=None,
    callback=lambda _ctx, _param, value: None if value is None else parse_mass(value),
    help="Emit at most this much CO₂ for the job: 0.5g, 200mg, 1kg; 0 or none: no budget.",
)
@click.option("--lr", "--learning-rate", "learning_rate", type=float, default=None)
@click.option("--scheduler", "lr_scheduler", default=None, help="linear, cosine, constant…")
@click.option("--warmup-ratio", type=float, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--grad-accum", "gradient_accumulation", type=int, default=None)
@click.option("--max-seq-len", type=int, default=None)
@click.option("--lora-r", type=int, default=None)
@click.option("--lora-alpha", type=int, default=None)
@click.option("--lora-dropout", type=float, default=None)
@click.option("--target-modules", "lora_target_modules", default=None, help="Comma list.")
@click.option("--assistant-only/--all-tokens", "assistant_only_loss", default=None)
@click.option("--packing/--no-packing", default=None)
@switch_option(
    "torch_compile",
    "off",
    "SFT on a CPU: compile the decoder layers (≈1.2x faster bf16 steps after 10-60 s; not "
    "with a budget). off (default); auto: only bf16 runs with 5 min or more to go.",
)
@switch_option(
    "int8_matmuls",
    "auto",
    "SFT LoRA in fp32 on a CPU: multiply the frozen weights in int8 (≈1.2x faster steps); "
    "auto (default) and on: wherever that applies; off: fp32 throughout.",
)
@click.option(
    "--gradient-checkpointing/--no-gradient-checkpointing",
    default=None,
    help="Recompute activations: less memory, slower (default: on when needed to fit).",
)
@click.option(
    "--memory-limit-gb",
    type=float,
    default=None,
    help="CPU: GB at most for the run's processes (default: 80% of the free memory).",
)
@click.option("--eval-steps", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None)
@click.option("--checkpoint-interval", type=int, default=None)
@click.option("--num-processes", type=int, default=None, help="Training processes per machine.")
@click.option("--num-machines", type=int, default=None, help="Machines in the run (default 1).")
@click.option("--machine-rank", type=int, default=None, help="This machine's rank, from 0.")
@click.option("--main-process-ip", default=None, help="Address of machine 0 (multi-machine).")
@click.option("--main-process-port", type=int, default=None, help="Port on machine 0.")
@click.option("--strategy", type=click.Choice(["auto", "ddp", "fsdp", "deepspeed"]), default=None)
@click.option(
    "--report-to",
    default=None,
    help="Experiment trackers: tensorboard, mlflow, wandb (comma list) or none; "
    "default: REPORT_TO.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check and plan the run (memory, processes, warnings), print the plan, start nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
def train(preset: str | None, as_json: bool, dry_run: bool, **options: Any) -> None:
    """Fine-tune a model in the foreground (Ctrl-C stops gracefully and keeps a checkpoint)."""
    given = {key: value for key, value in options.items() if value not in (None, ())}
    for key in BUDGET_OPTIONS:
        if given.get(key) == 0:
            given[key] = None  # over the preset's budget: none
    for switch in SWITCHES:
        if switch in given:
            given[switch] = training.SWITCH_CHOICES[given[switch]]
    try:
        if "rewards" in given:
            given["rewards"] = training.parse_rewards("\n".join(given["rewards"]))
        if "reward_file" in given:
            given["reward_file"] = str(Path(given["reward_file"]).resolve())
        spec = training.build_spec(given, preset)
        if dry_run:
            _print_plan(run_plan.plan(spec), as_json)
            return
        job = training.submit(spec)
    except GardenError as exc:
        fail(exc)
    if not as_json:
        console.print(f"Job [bold]{escape(job.id)}[/] queued", highlight=False)
    _finish(follow(job.id, quiet=as_json), as_json)


def _print_plan(planned: run_plan.RunPlanView, as_json: bool) -> None:
    if as_json:
        print_json(planned.model_dump(mode="json"))
        return
    for line in planned.lines():
        console.print(escape(line), highlight=False, soft_wrap=True)
    for warning in planned.warnings:
        console.print(f"[yellow]Warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    console.print("Nothing was started (--dry-run).", highlight=False)


@click.group()
def jobs() -> None:
    """List, inspect, stop, resume and cancel training jobs."""


@jobs.command("list")
@click.option("--status", default=None, help="Only jobs with this status.")
@click.option("--limit", type=int, default=50)
@click.option("--json", "as_json", is_flag=True)
def jobs_list(status: str | None, limit: int, as_json: bool) -> None:
    """Training jobs, newest first."""
    found = training.list_jobs(limit=limit, status=status)
    if as_json:
        print_json([summary(job) | {"name": job.name} for job in found])
        return
    table = Table(title="Jobs")
    for column in ("id", "name", "status", "backend", "steps", "final loss", "energy"):
        table.add_column(column)
    for job in found:
        cells = [job.id, job.name, job.status, job.backend or "", present.job_steps(job)]
        add_row(table, *cells, present.number(job.loss), present.energy(job.energy_kwh))
    console.print(table)


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def jobs_show(job_id: str, as_json: bool) -> None:
    """One job: its state, its stats, the last log lines."""
    try:
        job = training.get(job_id)
    except GardenError as exc:
        fail(exc)
    logs = training.logs(job_id, limit=20)
    if as_json:
        print_json({**job.model_dump(), "logs": logs, "metrics": training.metrics(job_id)})
        return
    table = Table(title=f"Job {job_id}", show_header=False)
    for key in ("name", "status", "backend", "backend_reason", "device", "error", "output_dir"):
        value = getattr(job, key)
        if value:
            add_row(table, key, str(value))
    add_row(table, "stats", present.job_stats_line(job))
    if budget := present.job_budget(job):
        add_row(table, "budget", ", ".join(budget))
    if job.eval_rouge_l is not None or job.eval_perplexity is not None:
        add_row(table, "evaluation", evaluation_line(job))
    if job.objective != "sft":
        add_row(
            table,
            "objective",
            job.objective + (f" from {job.init_from_run}" if job.init_from_run else ""),
        )
        if job.objective == "grpo":
            add_row(table, "rewards", "; ".join(present.job_preference(job)[1:]) or "none yet")
        else:
            add_row(table, "reward margin", margins_line(job_id) or "not logged yet")
        if job.reward_accuracy is not None:
            add_row(table, "reward accuracy", f"{job.reward_accuracy:.0%}")
    console.print(table)
    if job.samples:
        console.print(samples_table(job))
    for line in logs:
        console.print(f"{line.level} {line.message}", highlight=False, markup=False)


def samples_table(job: JobView) -> Table:
    """The GRPO run's newest sampled completions with each reward."""
    headers, rows = present.sample_table(job, chars=120)
    table = Table(title="Sampled completions, newest first")
    for header in headers:
        table.add_column(escape(header), overflow="fold")
    for row in rows:
        add_row(table, *row)
    return table


def _command(action: Callable[..., JobView], job_id: str) -> JobView:
    try:
        return action(job_id)
    except GardenError as exc:
        fail(exc)


@jobs.command("stop")
@click.argument("job_id")
def jobs_stop(job_id: str) -> None:
    """Stop gracefully: save a checkpoint and the adapter so far."""
    console.print(f"{escape(job_id)}: {_command(training.stop, job_id).status}")


@jobs.command("cancel")
@click.argument("job_id")
def jobs_cancel(job_id: str) -> None:
    """Cancel at once (the worker is killed; nothing more is saved)."""
    console.print(f"{escape(job_id)}: {_command(training.cancel, job_id).status}")


@jobs.command("resume")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def jobs_resume(job_id: str, as_json: bool) -> None:
    """Resume a stopped, interrupted or failed job from its last checkpoint (foreground)."""
    _command(training.resume, job_id)
    _finish(follow(job_id, quiet=as_json), as_json)
