"""Evaluations kept in the ``evaluations`` table, the newest per job being the one shown."""

from __future__ import annotations

from typing import Any

from garden.engine.evaluation.records import EvaluationResult
from garden.store import Store, new_id, now

SUMMARY_FIELDS = ("eval_loss", "perplexity", "rouge_l", "exact_match", "judge_win_rate", "n")


def save_evaluation(store: Store, result: EvaluationResult) -> str:
    """Record a finished evaluation; returns its id."""
    evaluation_id = new_id("eval")
    store.insert(
        "evaluations",
        {
            "id": evaluation_id,
            "job_id": result.job_id,
            "dataset_id": result.dataset_id,
            "status": "completed",
            **{key: getattr(result, key) for key in SUMMARY_FIELDS},
            "error": result.judge_error,
            "result_json": result.model_dump(mode="json"),
            "created_at": now(),
        },
    )
    return evaluation_id


def save_failure(store: Store, job_id: str, dataset_id: str | None, error: str) -> str:
    """Record an evaluation that failed, with its one-line reason."""
    evaluation_id = new_id("eval")
    store.insert(
        "evaluations",
        {
            "id": evaluation_id,
            "job_id": job_id,
            "dataset_id": dataset_id,
            "status": "failed",
            "error": error,
            "created_at": now(),
        },
    )
    return evaluation_id


def latest_evaluation(store: Store, job_id: str) -> dict[str, Any] | None:
    """The newest ``evaluations`` row of a job (``result_json`` decoded), or None."""
    rows = store.query(
        "SELECT * FROM evaluations WHERE job_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
        (job_id,),
    )
    return rows[0] if rows else None


def latest_completed(store: Store, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The newest completed evaluation of each of ``job_ids`` that has one, by job id."""
    if not job_ids:
        return {}
    marks = ", ".join("?" for _ in job_ids)
    rows = store.query(
        f"SELECT * FROM evaluations WHERE status = 'completed' AND job_id IN ({marks}) "
        "ORDER BY created_at, rowid",
        job_ids,
    )
    return {row["job_id"]: row for row in rows}
