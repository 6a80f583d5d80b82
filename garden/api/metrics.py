"""Prometheus metrics at ``/metrics``: request latency, jobs by status and their figures,
chat time to first token. Job figures are read from the training service at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.routing import Match

from garden.api.security import ASGIApp, Message, Receive, Scope, Send
from garden.config import Settings
from garden.services import training
from garden.services.telemetry import registry

JOBS_SCRAPED = 200
STATUSES = ("queued", "running", "stopping", "completed", "stopped", "failed", "cancelled")

REQUEST_SECONDS = Histogram(
    "garden_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route and status",
    ["method", "route", "status"],
    registry=registry,
)


class JobCollector(Collector):
    """Jobs by status, and each recent job's duration, speed, energy and CO₂."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self) -> list[Metric]:
        """Nothing: registering must not read the database (collecting does, at scrape time)."""
        return []

    def collect(self) -> Iterator[Metric]:
        jobs = training.list_jobs(JOBS_SCRAPED, settings=self.settings)
        by_status = GaugeMetricFamily(
            "garden_training_jobs", "Training jobs by status (recent jobs)", labels=["status"]
        )
        counts = dict.fromkeys(STATUSES, 0)
        for job in jobs:
            counts[job.status] = counts.get(job.status, 0) + 1
        for status, count in counts.items():
            by_status.add_metric([status], count)
        yield by_status
        figures: dict[str, tuple[GaugeMetricFamily, Any]] = {
            "duration": (
                GaugeMetricFamily(
                    "garden_training_job_duration_seconds",
                    "Seconds from a job's start to its end (or to now)",
                    labels=["job_id", "name", "status"],
                ),
                lambda job: job.duration_s,
            ),
            "speed": (
                GaugeMetricFamily(
                    "garden_training_job_tokens_per_second",
                    "Training speed of a job",
                    labels=["job_id", "name", "status"],
                ),
                lambda job: job.tokens_per_second,
            ),
            "energy": (
                GaugeMetricFamily(
                    "garden_training_job_energy_kwh",
                    "Energy a job used (CodeCarbon)",
                    labels=["job_id", "name", "status"],
                ),
                lambda job: job.energy_kwh,
            ),
            "co2": (
                GaugeMetricFamily(
                    "garden_training_job_emissions_kg",
                    "kg CO2-equivalent a job emitted (CodeCarbon)",
                    labels=["job_id", "name", "status"],
                ),
                lambda job: job.emissions_kg,
            ),
        }
        for family, value_of in figures.values():
            for job in jobs:
                value = value_of(job)
                if value is not None:
                    family.add_metric([job.id, job.name, job.status], float(value))
            yield family


_installed: list[JobCollector] = []


def install_collector(settings: Settings) -> None:
    """Register the job collector once per process."""
    if not _installed:
        _installed.append(JobCollector(settings))
        registry.register(_installed[0])


def route_template(scope: Scope) -> str:
    """The route's path template (``/api/v1/training/jobs/{job_id}``), never a raw id."""
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "other"))
    return "other"


class LatencyMiddleware:
    """Times every HTTP request into ``garden_http_request_duration_seconds``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            REQUEST_SECONDS.labels(scope["method"], route_template(scope), str(status[0])).observe(
                time.perf_counter() - started
            )


router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
def metrics() -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
