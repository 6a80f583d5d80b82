"""How a run reads in the Fine-tune tab: its status block, its row in the runs table, its log."""

from __future__ import annotations

from typing import Any

from garden import present
from garden.config import Settings
from garden.services import training, web
from garden.services.training import JobView
from garden.ui.boundary import code, plain

RUN_COLUMNS = [
    "job",
    "name",
    "status",
    "started",
    "duration",
    "steps",
    "final loss",
    "eval loss",
    "perplexity",
    "ROUGE-L",
    "energy",
    "CO₂",
]
NO_RUNS = "_No runs yet: pick a dataset and press **Start training**._"


def status_markdown(job: JobView | None, settings: Settings | None = None) -> str:
    """The run's status; no absolute server path: the output is shown relative to STORAGE_ROOT."""
    if job is None:
        return NO_RUNS
    lines = [
        f"### {plain(job.name)} · `{job.status}`",
        f"<progress value='{job.step}' max='{job.total_steps or 1}' style='width:100%'></progress> "
        f"step **{job.step}/{job.total_steps or '?'}** ({100 * job.progress_fraction:.0f} %)",
    ]
    facts = [*present.job_facts(job), *present.job_layout(job), *present.job_preference(job)]
    if budget := present.job_budget(job):
        lines.append("Budget: " + " · ".join(budget))
    if facts:
        lines.append(" · ".join(facts))
    if job.backend:
        lines.append(
            f"Backend **{job.backend}** on {job.device or '?'} — "
            + plain(web.safe_text(job.backend_reason or "", settings=settings))
        )
    if job.output_dir and job.status == "completed":
        where = web.relative_path(job.output_dir, settings=settings)
        lines.append(f"Model saved to {code(where)} (listed in the Chat tab).")
    if job.error:
        error = plain(web.safe_text(job.error, settings=settings))
        lines.append(f"> **{job.error_kind or 'error'}**: {error}")
    lines.append(f"<small>job `{job.id}`</small>")
    return "\n\n".join(lines)


def run_row(job: JobView) -> list[Any]:
    return [
        job.id,
        job.name,
        job.status,
        present.local_time(job.started_at or job.created_at),
        present.duration(job.duration_s),
        job.step,
        present.number(job.loss),
        present.number(job.eval_loss),
        present.number(job.eval_perplexity, "{:.2f}"),
        present.number(job.eval_rouge_l, "{:.3f}"),
        present.energy(job.energy_kwh),
        present.co2(job.emissions_kg),
    ]


def log_tail(job_id: str, settings: Settings) -> str:
    return web.safe_text(
        "\n".join(
            f"{present.local_time(line.ts, '%H:%M:%S')} {line.level:7} "
            f"{line.message.splitlines()[-1] if line.message else ''}"
            for line in training.logs(job_id, limit=60, settings=settings)
        ),
        settings=settings,
    )
