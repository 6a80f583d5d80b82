"""`model-garden train` (a job in the foreground) and `model-garden jobs` (list/show/stop/resume/cancel)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from garden.cli.output import console, err_console, fail, print_json
from garden.errors import GardenError


def _manager() -> Any:
    from garden.engine.training import get_job_manager

    return get_job_manager()


def _fmt(value: Any, pattern: str = "{:.4f}") -> str:
    return "" if value is None else pattern.format(value)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    result = row.get("result_json") or {}
    progress = row.get("progress_json") or {}
    return {
        "job_id": row["id"],
        "status": row["status"],
        "backend": row.get("backend"),
        "first_loss": result.get("first_loss"),
        "last_loss": result.get("final_loss", progress.get("loss")),
        "final_eval_loss": result.get("final_eval_loss"),
        "steps": result.get("steps", progress.get("step")),
        "train_tokens": result.get("train_tokens"),
        "tokens_per_second": result.get("tokens_per_second"),
        "energy_kwh": result.get("energy_kwh", progress.get("energy_kwh")),
        "emissions_kg": result.get("emissions_kg", progress.get("emissions_kg")),
        "output_dir": row.get("output_dir"),
        "error": row.get("error"),
    }


def follow(job_id: str, quiet: bool) -> dict[str, Any]:
    """Show a live progress bar until the job ends; Ctrl-C stops it gracefully (twice: cancel)."""
    from garden.engine.training import TERMINAL_STATUSES

    manager = _manager()
    interrupts = 0
    last_log = 0
    progress = Progress(
        TextColumn("[bold green]{task.description}"),
        BarColumn(),
        TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
    )
    with progress:
        task = progress.add_task("queued", total=None, info="")
        while True:
            try:
                row = manager.get(job_id)
                for log in manager.logs(job_id, last_log):
                    last_log = log["id"]
                    if not quiet and log["level"] in ("WARNING", "ERROR", "INFO"):
                        progress.console.print(
                            f"[dim]{log['level'].lower()}[/] {log['message'][:400]}",
                            highlight=False,
                        )
                state = row.get("progress_json") or {}
                info = "  ".join(
                    part
                    for part in (
                        f"loss {state['loss']:.3f}" if state.get("loss") is not None else "",
                        f"{state['tokens_per_second']:.0f} tok/s"
                        if state.get("tokens_per_second")
                        else "",
                        f"ETA {state['eta_s']:.0f}s" if state.get("eta_s") else "",
                        f"{state['energy_kwh'] * 1000:.2f} Wh" if state.get("energy_kwh") else "",
                    )
                    if part
                )
                progress.update(
                    task,
                    description=row["status"],
                    completed=state.get("step", 0),
                    total=state.get("total_steps") or None,
                    info=info,
                )
                if row["status"] in TERMINAL_STATUSES:
                    return manager.wait(job_id, timeout=30)
                time.sleep(0.5)
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:
                    err_console.print(
                        "Stopping gracefully (saving a checkpoint); Ctrl-C again to cancel."
                    )
                    with contextlib.suppress(GardenError):
                        manager.stop(job_id)
                else:
                    err_console.print("Cancelling.")
                    with contextlib.suppress(GardenError):
                        manager.cancel(job_id)


def _finish(row: dict[str, Any], as_json: bool) -> None:
    summary = _summary(row)
    if as_json:
        print_json(summary)
    else:
        table = Table(title=f"Job {row['id']} · {row['status']}", show_header=False)
        for key, value in summary.items():
            if value is not None and key != "job_id":
                table.add_row(key, str(value))
        console.print(table)
    if row["status"] == "failed":
        fail(row.get("error") or "the job failed", code=1)


@click.command()
@click.option("--model", "base_model", default=None, help="Base model (default: embedded).")
@click.option("--dataset", required=True, help="Imported dataset id or name, or a file to import.")
@click.option("--name", default=None, help="Run name (folder under models/finetuned).")
@click.option("--preset", type=click.Choice(["Quick CPU demo", "LoRA", "QLoRA"]), default=None)
@click.option("--method", type=click.Choice(["lora", "qlora", "full"]), default=None)
@click.option("--backend", type=click.Choice(["auto", "trl_peft", "unsloth"]), default=None)
@click.option("--epochs", type=float, default=None)
@click.option("--max-steps", type=int, default=None)
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
@click.option("--eval-steps", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None)
@click.option("--checkpoint-interval", type=int, default=None)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
def train(preset: str | None, as_json: bool, **options: Any) -> None:
    """Fine-tune a model in the foreground (Ctrl-C stops gracefully and keeps a checkpoint)."""
    from garden.engine.training import PRESETS

    spec: dict[str, Any] = dict(PRESETS[preset]) if preset else {}
    spec.update({key: value for key, value in options.items() if value is not None})
    try:
        manager = _manager()
        job_id = manager.submit(spec)
    except GardenError as exc:
        fail(exc)
    if not as_json:
        console.print(f"Job [bold]{job_id}[/] queued", highlight=False)
    _finish(follow(job_id, quiet=as_json), as_json)


@click.group()
def jobs() -> None:
    """List, inspect, stop, resume and cancel training jobs."""


@jobs.command("list")
@click.option("--status", default=None, help="Only jobs with this status.")
@click.option("--limit", type=int, default=50)
@click.option("--json", "as_json", is_flag=True)
def jobs_list(status: str | None, limit: int, as_json: bool) -> None:
    """Training jobs, newest first."""
    rows = _manager().list(limit=limit, status=status)
    if as_json:
        print_json([_summary(row) | {"name": row["name"]} for row in rows])
        return
    table = Table(title="Jobs")
    for column in ("id", "name", "status", "backend", "steps", "final loss", "energy Wh"):
        table.add_column(column)
    for row in rows:
        s = _summary(row)
        energy = s["energy_kwh"] * 1000 if s["energy_kwh"] else None
        table.add_row(
            row["id"],
            row["name"],
            row["status"],
            row.get("backend") or "",
            str(s["steps"] or ""),
            _fmt(s["last_loss"]),
            _fmt(energy, "{:.2f}"),
        )
    console.print(table)


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def jobs_show(job_id: str, as_json: bool) -> None:
    """One job: spec, progress, result, the last log lines."""
    manager = _manager()
    try:
        row = manager.get(job_id)
    except GardenError as exc:
        fail(exc)
    logs = [f"{log['level']} {log['message']}" for log in manager.logs(job_id, limit=20)]
    if as_json:
        print_json({**row, "logs": logs, "metrics": manager.metrics(job_id)})
        return
    table = Table(title=f"Job {job_id}", show_header=False)
    for key in ("name", "status", "backend", "backend_reason", "device", "error", "output_dir"):
        if row.get(key):
            table.add_row(key, str(row[key]))
    for key, value in (row.get("result_json") or row.get("progress_json") or {}).items():
        if isinstance(value, (int, float, str)) and value is not None:
            table.add_row(key, str(value))
    console.print(table)
    for line in logs:
        console.print(line, highlight=False, markup=False)


@jobs.command("stop")
@click.argument("job_id")
def jobs_stop(job_id: str) -> None:
    """Stop gracefully: save a checkpoint and the adapter so far."""
    try:
        row = _manager().stop(job_id)
    except GardenError as exc:
        fail(exc)
    console.print(f"{job_id}: {row['status']}")


@jobs.command("cancel")
@click.argument("job_id")
def jobs_cancel(job_id: str) -> None:
    """Cancel at once (the worker is killed; nothing more is saved)."""
    try:
        row = _manager().cancel(job_id)
    except GardenError as exc:
        fail(exc)
    console.print(f"{job_id}: {row['status']}")


@jobs.command("resume")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def jobs_resume(job_id: str, as_json: bool) -> None:
    """Resume a stopped, interrupted or failed job from its last checkpoint (foreground)."""
    try:
        _manager().resume(job_id)
    except GardenError as exc:
        fail(exc)
    _finish(follow(job_id, quiet=as_json), as_json)
