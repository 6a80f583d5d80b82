"""Runs side by side: losses, evaluation scores, training energy and CO₂, the Pareto front of
ROUGE-L against CO₂, and the answers to the held-out prompts the runs share."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from garden.api.errors import ApiError
from garden.services import compare
from garden.services.compare import ComparisonView

router = APIRouter(prefix="/api/v1", tags=["evaluation"])


@router.get("/compare", summary="Compare runs: scores, CO₂, Pareto front, shared answers")
def compare_runs(
    runs: Annotated[
        list[str],
        Query(
            description=f"Job ids or run names, {compare.MIN_RUNS} to {compare.MAX_RUNS}, "
            "each once (?runs=a&runs=b)"
        ),
    ],
) -> ComparisonView:
    try:
        return compare.compare_runs(runs)
    except compare.UnknownRunError as exc:
        raise ApiError(404, exc.message, hint="GET /api/v1/training/jobs lists them.") from exc
