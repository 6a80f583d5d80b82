"""Liveness for load balancers, Docker and Kubernetes: open without a token, says nothing private."""

from __future__ import annotations

from fastapi import APIRouter

from garden.services.rest import HealthView

HEALTH_PATH = "/api/v1/health"

router = APIRouter(tags=["health"])


@router.get(HEALTH_PATH, summary="Is the app up")
def health() -> HealthView:
    return HealthView.current()
