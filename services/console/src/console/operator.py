"""The operator's pages (supervisors): every service's health, each agency's channel and circuit, its dead letters
with a replay once the cause is fixed (the gateway's API), and any case's flow hop by hop — ids, event types and
times only, never personal data or notes."""

import asyncio
import re
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from schemas.events import AgencyId
from schemas.vocab import CrimeType

from . import flow, history, labels
from .apis import ApiError
from .caseworker import agency_names
from .i18n import SEOUL
from .monitor import read_figures
from .pages import OperatorPage
from .session import posted_form
from .settings import SERVICES

router = APIRouter()


@router.get("/operations", response_class=HTMLResponse)
async def operations(
    p: OperatorPage,
    case_id: str | None = None,
    replayed: int | None = None,
    agency: AgencyId | None = None,
    window: str = history.DEFAULT_WINDOW,
) -> Response:
    """`replayed` and `agency`: what the replay just done put back (a count and an agency id, nothing personal);
    `window`: how far back the small charts go (15m, 1h, 6h, 24h, 7d), from Prometheus when the console knows one."""
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
    over_time = await history.fetch(p.apis.client, p.settings.console_prometheus_url, window)
    return p.render(
        "operations.html",
        history=over_time,
        windows=list(history.WINDOWS),
        sparkline=history.sparkline,
        health=health,
        agencies=agencies,
        figures=figures,
        names=await agency_names(p),
        agency_letters=await agency_dead_letters(p),
        replayed=replayed,
        replayed_agency=agency,
    )


async def agency_dead_letters(p: OperatorPage) -> list[dict[str, Any]] | None:
    """The gateway's dead letters per agency and reason; None when it cannot list them now (the page still shows)."""
    try:
        rows: list[dict[str, Any]] = await p.api("agency-gateway", "GET", "/dead-letters")
    except ApiError as failed:
        if failed.status == 401:  # the session ended: signing in again, as for any other call
            raise
        return None
    return rows


@router.post("/operations/agencies/{agency_id}/dead-letters/replay")
async def replay_dead_letters(agency_id: AgencyId, request: Request, p: OperatorPage) -> Response:
    """The gateway's replay of the agency's DLQ, under the operator's own token (the gateway checks the role and
    access-logs it); back to the operations page saying how many were put back."""
    await posted_form(request)
    done = await p.api("agency-gateway", "POST", f"/agencies/{agency_id}/dead-letters/replay")
    return RedirectResponse(
        f"/operations?replayed={int(done['replayed'])}&agency={agency_id}#dead-letters", status_code=303
    )


MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# notify's printable report draws its chart in inline SVG with inline styles, and runs no script.
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


@router.get("/reports", response_class=HTMLResponse)
async def reports(p: OperatorPage) -> Response:
    """The referral monitoring report (notify's), for a month and optionally one crime type."""
    this_month = datetime.now(SEOUL).strftime("%Y-%m")
    crime_types = [(c.value, labels.CRIME_TYPES[c]) for c in CrimeType]
    return p.render("reports.html", month=this_month, crime_types=crime_types)


@router.get("/reports/referrals")
async def report(p: OperatorPage, month: str = "", crime_type: str = "", format: str = "html") -> Response:
    """The report as notify renders it (a printable page in the console's language, or CSV), fetched with the
    supervisor's own token: notify checks the role and access-logs the read."""
    if not MONTH.fullmatch(month) or format not in ("html", "csv") or crime_type not in ("", *CrimeType):
        raise ApiError(422, "choose a month (YYYY-MM), a crime type from the list and a format")
    params = {"month": month, "format": format, "lang": p.t.language}
    if crime_type:
        params["crime_type"] = crime_type
    assert p.user is not None
    content, media_type = await p.apis.document("notify", "/reports/referrals", p.user.token, params)
    headers = {"Content-Security-Policy": REPORT_POLICY}
    if format == "csv":
        headers["Content-Disposition"] = f'attachment; filename="referrals-{month}.csv"'
    return Response(content, media_type=media_type, headers=headers)


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
