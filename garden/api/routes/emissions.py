"""Emissions: CodeCarbon records and their totals, with the Carbon tab's filters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from garden.services import carbon
from garden.services.carbon import CarbonReport, CarbonRow, CarbonSummary, WhatIfGrid

router = APIRouter(prefix="/api/v1/emissions", tags=["emissions"])


def report(
    since: Annotated[
        str | None, Query(description="ISO date or epoch seconds; records started since then")
    ] = None,
    until: Annotated[float | None, Query(description="Epoch seconds")] = None,
    kind: Annotated[str | None, Query(description="training, chat, …")] = None,
    search: Annotated[str, Query(description="Part of a label, reference or id")] = "",
    whatif_country: Annotated[
        str | None, Query(description="ISO-3 code: what the runs would emit on that grid")
    ] = None,
    whatif_region: str | None = None,
    whatif_pue: Annotated[float, Query(ge=1.0, le=5.0)] = 1.0,
) -> CarbonReport:
    what_if = (
        WhatIfGrid(country=whatif_country, region=whatif_region, pue=whatif_pue)
        if whatif_country
        else None
    )
    when = float(since) if since and since.replace(".", "", 1).isdigit() else since
    return carbon.report(when, kind, search, what_if, until=until)


Report = Annotated[CarbonReport, Depends(report)]


@router.get("", summary="Records and totals")
def records_and_totals(found: Report) -> CarbonReport:
    return found


@router.get("/records", summary="Records, oldest first")
def records(found: Report) -> list[CarbonRow]:
    return found.rows


@router.get("/totals", summary="Totals of the matching records")
def totals(found: Report) -> CarbonSummary:
    return found.summary
