"""Evaluations of training runs: evaluate a completed run, read its newest evaluation."""

from __future__ import annotations

from fastapi import APIRouter

from garden.api.errors import ApiError
from garden.api.routes.training import find_job
from garden.services import evaluation
from garden.services.evaluation import EvaluationView

router = APIRouter(prefix="/api/v1/training/jobs", tags=["evaluation"])


@router.post(
    "/{job_id}/evaluate",
    summary="Evaluate a completed run: held-out loss, perplexity, ROUGE-L, base vs tuned",
)
def evaluate(job_id: str, dataset: str | None = None) -> EvaluationView:
    return evaluation.evaluate_run(find_job(job_id).id, dataset)


@router.get("/{job_id}/evaluation", summary="A run's newest evaluation")
def latest(job_id: str) -> EvaluationView:
    found = evaluation.get_evaluation(find_job(job_id).id)
    if found is None:
        raise ApiError(
            404,
            f"Job {job_id[:80]!r} has no evaluation yet.",
            hint=f"POST /api/v1/training/jobs/{job_id[:80]}/evaluate runs one.",
        )
    return found
