"""The operator's pages (supervisors): every service's health, each agency's channel and circuit, and any case's
flow hop by hop — ids, event types and times only, never personal data or notes."""

import asyncio
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from . import flow, labels
from .apis import ApiError
from .caseworker import agency_names
from .monitor import read_figures
from .pages import OperatorPage
from .settings import SERVICES

router = APIRouter()


@router.get("/operations", response_class=HTMLResponse)
async def operations(p: OperatorPage, case_id: str | None = None) -> Response:
    if case_id:
        try:
            return RedirectResponse(f"/operations/cases/{UUID(case_id.strip())}", status_code=303)
        except ValueError:
            pass
    reports = await asyncio.gather(*(p.apis.health(s) for s in SERVICES))
    health = [(service, status, report) for service, (status, report) in zip(SERVICES, reports, strict=True)]
    texts = await asyncio.gather(*(p.apis.metrics(s) for s in SERVICES))
    figures = read_figures({s: text for s, text in zip(SERVICES, texts, strict=True) if text is not None})
    agencies = await p.api("agency-gateway", "GET", "/agencies")
    return p.render("operations.html", health=health, agencies=agencies, figures=figures, names=await agency_names(p))


@router.get("/operations/cases/{case_id}", response_class=HTMLResponse)
async def case_flow(case_id: UUID, p: OperatorPage) -> Response:
    try:
        events: list[dict[str, Any]] = (await p.api("notify", "GET", f"/cases/{case_id}/timeline"))["events"]
    except ApiError as missing:
        if missing.status != 404:
            raise
        events = []
    return p.render(
        "case_flow.html",
        case_id=str(case_id),
        steps=flow.steps(events),
        names=await agency_names(p),
        labels=labels,
        trace_url=p.settings.console_trace_url,
    )
