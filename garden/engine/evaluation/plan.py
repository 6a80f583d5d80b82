"""What to evaluate for a run: its saved model, its held-out split (or another dataset's), the
limits and the judge from the settings."""

from __future__ import annotations

from pathlib import Path

from garden.config import Settings
from garden.engine.evaluation.records import EvalRequest, JudgeConfig
from garden.engine.training.records import JobRecord, PlannedRun
from garden.engine.training.spec import JobSpec
from garden.errors import JobError


def judge_config(settings: Settings) -> JudgeConfig | None:
    """The judge endpoint from ``EVAL_JUDGE_URL`` / ``EVAL_JUDGE_MODEL``; None when unset."""
    if not settings.eval_judge_url.strip():
        return None
    key = settings.eval_judge_api_key.get_secret_value().strip()
    return JudgeConfig(
        base_url=settings.eval_judge_url.strip(),
        model=settings.eval_judge_model.strip() or "default",
        api_key=key or None,
    )


def request_for_outputs(
    job_id: str,
    spec: JobSpec,
    plan: PlannedRun,
    model_dir: Path,
    settings: Settings,
    eval_path: str | None = None,
    dataset_id: str | None = None,
) -> EvalRequest:
    """The request for the model saved in ``model_dir`` (an ``adapter/`` inside, or the full
    fine-tune's weights)."""
    adapter = model_dir / "adapter"
    held_out = eval_path or plan.eval_path
    if not held_out:
        raise JobError(
            f"Run {job_id} has no held-out split to evaluate on.",
            hint="Pass another dataset (--dataset ID) or import this one with an eval fraction.",
        )
    return EvalRequest(
        job_id=job_id,
        model=f"finetuned/{spec.name}",
        base_model_path=plan.model_path,
        adapter_dir=str(adapter) if (adapter / "adapter_config.json").is_file() else None,
        tuned_dir=str(model_dir) if (model_dir / "config.json").is_file() else None,
        eval_path=held_out,
        dataset_id=dataset_id or plan.dataset_id,
        max_prompts=settings.eval_max_prompts,
        max_new_tokens=settings.eval_max_new_tokens,
        max_seq_len=spec.max_seq_len,
        judge=judge_config(settings),
    )


def request_for_job(
    job: JobRecord, settings: Settings, eval_path: str | None = None, dataset_id: str | None = None
) -> EvalRequest:
    """The request for a finished job's published model; ``JobError`` when it has none."""
    if job.status != "completed" or job.spec is None or job.plan is None or not job.output_dir:
        raise JobError(
            f"Run {job.id} is {job.status}: only a completed run has a model to evaluate.",
            hint="Pick a completed run (model-garden jobs list).",
        )
    output = Path(job.output_dir)
    if not output.is_dir():
        raise JobError(
            f"Run {job.id}'s model folder {output} is gone.",
            hint="Train the run again, or pick another run.",
        )
    return request_for_outputs(job.id, job.spec, job.plan, output, settings, eval_path, dataset_id)
