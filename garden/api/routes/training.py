"""Training jobs: start, list, get with metrics, logs, stop, cancel, resume; live on a WebSocket."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from garden.api.errors import ApiError, error_body
from garden.api.followers import FollowerLimitError, Followers
from garden.api.shared_reads import SharedReads
from garden.api.views import public, public_list
from garden.config import get_settings
from garden.errors import GardenError, ModelLoadError
from garden.services import rest, run_plan, training
from garden.services.rest import JobCreated, JobDetail, JobEvent
from garden.services.run_plan import RunPlanView
from garden.services.training import JobSpec, JobView, LogLine, PresetView

router = APIRouter(prefix="/api/v1/training", tags=["training"])
live = APIRouter(tags=["training"])

POLL_S = 1.0
UNKNOWN_JOB = 4404
TRY_AGAIN_LATER = 1013  # RFC 6455: the server is overloaded

_followers: Followers | None = None
# Every stream of one job shares one read of it per half interval (not one read per stream).
_job_events: SharedReads[JobEvent] = SharedReads(rest.job_event, max_age_s=POLL_S / 2)


def followers() -> Followers:
    """The process's bounds on open ``/ws/jobs`` streams, from the settings at first use."""
    global _followers
    if _followers is None:
        settings = get_settings()
        _followers = Followers(settings.ws_max_followers, settings.ws_max_followers_per_client)
    return _followers


def find_job(job_id: str) -> JobView:
    job = training.current_or_latest(job_id) if job_id else None
    if job is None:
        raise ApiError(
            404, f"There is no job {job_id[:80]!r}.", hint="GET /api/v1/training/jobs lists them."
        )
    return job


@router.get("/presets", summary="Named sets of training settings")
def presets() -> list[PresetView]:
    return training.presets()


@router.post("/jobs", status_code=201, summary="Start a training run")
def start_job(
    spec: JobSpec,
    preset: Annotated[str | None, Query(description="Settings to start from")] = None,
) -> JobCreated:
    """The body is a ``JobSpec`` over the preset. ``time_budget_s`` and ``co2_budget_g`` make a
    budgeted run: a short probe of its first steps fits the step count to the budget, and the
    job's ``budget_steps`` and ``forecast_*`` fields tell the plan once it is made."""
    try:
        job = training.submit_from_web(_over_preset(spec, preset))
    except ModelLoadError as exc:
        raise ApiError(400, exc.message, hint=exc.hint) from None
    return JobCreated(job_id=job.id, job=public(job))


@router.post("/plan", summary="Plan a training run without starting it")
def plan_job(
    spec: JobSpec,
    preset: Annotated[str | None, Query(description="Settings to start from")] = None,
) -> RunPlanView:
    """The same body and checks as ``POST /jobs``, and nothing queued: the run's name, model,
    dataset, device, processes, and its plan (the CPU memory plan: each process's estimated
    peak against the memory limit, and whether gradient checkpointing is on), with warnings."""
    try:
        return run_plan.plan_from_web(_over_preset(spec, preset))
    except ModelLoadError as exc:
        raise ApiError(400, exc.message, hint=exc.hint) from None


def _over_preset(spec: JobSpec, preset: str | None) -> dict[str, Any]:
    values: dict[str, Any] = spec.model_dump(exclude_unset=True)
    if preset is None:
        return values
    chosen = {p.name: p.settings for p in training.presets()}
    if preset not in chosen:
        raise ApiError(422, f"Unknown preset {preset!r}.", hint="One of: " + ", ".join(chosen))
    return {**chosen[preset], **values}


@router.get("/jobs", summary="List jobs, newest first")
def list_jobs(
    status: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[JobView]:
    return public_list(training.list_jobs(limit, status))


@router.get("/jobs/{job_id}", summary="Get a job with its metrics")
def get_job(job_id: str) -> JobDetail:
    find_job(job_id)
    detail = rest.job_detail(job_id)
    return detail.model_copy(update={"job": public(detail.job)})


@router.get("/jobs/{job_id}/logs", summary="A job's log lines after after_id, oldest first")
def job_logs(
    job_id: str, after_id: int = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[LogLine]:
    find_job(job_id)
    return training.logs(job_id, after_id, limit)


@router.post("/jobs/{job_id}/stop", summary="Stop gracefully: checkpoint, save, end 'stopped'")
def stop_job(job_id: str) -> JobView:
    return public(training.stop(find_job(job_id).id))


@router.post("/jobs/{job_id}/cancel", summary="Cancel at once: nothing more is saved")
def cancel_job(job_id: str) -> JobView:
    return public(training.cancel(find_job(job_id).id))


@router.post("/jobs/{job_id}/resume", summary="Queue a stopped, interrupted or failed job again")
def resume_job(job_id: str) -> JobView:
    return public(training.resume(find_job(job_id).id))


@live.websocket("/ws/jobs/{job_id}")
async def follow_job(websocket: WebSocket, job_id: str) -> None:
    """Send a ``JobEvent`` whenever the job changes; the last one has ``final`` set.

    Streams are bounded in all and per client address: one over a bound gets one error line
    and close code 1013. A client that leaves frees its place at once, not at the next send."""
    await websocket.accept()
    client = websocket.client.host if websocket.client else "unknown"
    try:
        with followers().slot(client):
            await _follow(websocket, job_id)
    except FollowerLimitError as exc:
        await websocket.send_json(error_body(exc.message, exc.hint))
        await websocket.close(TRY_AGAIN_LATER)
    except WebSocketDisconnect:
        return


async def _follow(websocket: WebSocket, job_id: str) -> None:
    try:
        await run_in_threadpool(find_job, job_id)
    except GardenError as exc:
        await websocket.send_json(error_body(exc.message, exc.hint))
        await websocket.close(UNKNOWN_JOB)
        return
    last: JobEvent | None = None
    while True:
        event = await run_in_threadpool(_job_events.get, job_id)
        if event != last:
            await websocket.send_json(public(event).model_dump(mode="json"))
            last = event
        if event.final:
            break
        if await _client_left(websocket, POLL_S):
            return
    await websocket.close()


async def _client_left(websocket: WebSocket, seconds: float) -> bool:
    """Wait ``seconds`` unless the client leaves first; what it sends meanwhile is ignored (so
    a chatty client cannot make the job be read more often)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(websocket.receive(), timeout=left)
        except TimeoutError:
            return False
        if message["type"] == "websocket.disconnect":
            return True
    return False
