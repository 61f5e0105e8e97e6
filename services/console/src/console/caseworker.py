"""The caseworker's pages: cases needing attention (home), the new-case form, the routing preview with its consent
notices, the case page (referrals, timeline, consent ledger), and phone guidance that records nothing."""

import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from kit.auth import Role
from schemas.events import AgencyId
from schemas.vocab import CrimeType, IntakeChannel, Need, Urgency

from . import flow, labels
from .apis import ApiError
from .forms import FieldErrors, Form, case_payload, check_case, consents_given, field_errors
from .pages import Page, StaffPage
from .session import posted_form

router = APIRouter()
AGENCY_NAMES_SECONDS = 60.0
# Phone guidance asks the same preview as a case would, with no victim: the contract needs a name, never recorded.
NO_VICTIM = {"name": "-"}


async def agency_names(p: Page) -> dict[str, dict[str, str]]:
    """The catalogue's names of every agency (name_ko, name_en), from routing, kept a minute."""
    kept: tuple[float, dict[str, dict[str, str]]] | None = getattr(p.request.app.state, "agency_names", None)
    if kept is not None and time.monotonic() - kept[0] < AGENCY_NAMES_SECONDS:
        return kept[1]
    agencies = await p.api("routing", "GET", "/agencies")
    names = {a["id"]: {"name_ko": a["name_ko"], "name_en": a["name_en"]} for a in agencies}
    p.request.app.state.agency_names = (time.monotonic(), names)
    return names


def choices() -> dict[str, Any]:
    return {
        "crime_types": [(c.value, labels.CRIME_TYPES[c]) for c in CrimeType],
        "needs": [n.value for n in Need],
        "urgencies": [(u.value, labels.URGENCIES[u]) for u in Urgency],
        "channels": [(c.value, labels.INTAKE_CHANNELS[c]) for c in IntakeChannel],
        "regions": list(labels.REGIONS.items()),
        "languages": list(labels.LANGUAGE_NAMES.items()),
        "labels": labels,
    }


@router.get("/cases", response_class=HTMLResponse)
async def needing_attention(p: StaffPage, follow_ups: Literal["mine", "all"] | None = None) -> Response:
    """The caseworker's home: cases needing attention, and the open follow-ups, the soonest due first — a
    caseworker's own cases' by default (`?follow_ups=all`: everyone's), a supervisor's everyone's."""
    whose = follow_ups or ("mine" if p.role is Role.caseworker else "all")
    cases = await p.api("notify", "GET", "/cases/needing-attention")
    # Each case listed is access-logged by notify; `mine` is the cases whose caseworker is the token's subject.
    query = "/follow-ups?state=open&limit=100" + ("&mine=true" if whose == "mine" else "")
    tasks = await p.api("notify", "GET", query)
    now = datetime.now(UTC)
    due = [{**t, "overdue": datetime.fromisoformat(t["due_at"]) < now} for t in tasks]
    shown = {"cases": cases, "follow_ups": due, "whose": whose, "names": await agency_names(p), "labels": labels}
    return p.render("attention.html", **shown)


@router.get("/cases/open")
async def open_case(p: StaffPage, case_id: str = "") -> Response:
    """The case page of an id typed in (ids are not personal data; a malformed one goes back to the list)."""
    try:
        return RedirectResponse(f"/cases/{UUID(case_id.strip())}", status_code=303)
    except ValueError:
        return RedirectResponse("/cases", status_code=303)


@router.get("/cases/new", response_class=HTMLResponse)
async def new_case(p: StaffPage) -> Response:
    """The form, with the signed-in user's address for alerts filled in from their token's `email` claim, if any."""
    email = p.user.principal.email if p.user is not None else None
    form = Form([("caseworker.email", email)] if email else [])
    return p.render("case_form.html", form=form, errors={}, **choices())


class FormRefused(Exception):
    """The case's fields, as the contract or the API judged them: shown again next to each field."""

    def __init__(self, form: Form, errors: FieldErrors) -> None:
        super().__init__("invalid case form")
        self.form = form
        self.errors = errors


async def send_case(p: Page, form: Form, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    """The case checked by its contract, then sent to intake; FormRefused with the errors by field if either refuses."""
    errors = check_case(body)
    if not errors:
        try:
            return await p.api("intake", "POST", path, body=body, headers=headers)
        except ApiError as refused:
            if refused.status != 422:
                raise
            errors = field_errors(refused.errors) or {"": [refused.detail]}
    raise FormRefused(form, errors)


def refused_form(p: Page, refused: FormRefused) -> Response:
    return p.render("case_form.html", http_status=422, form=refused.form, errors=refused.errors, **choices())


@router.post("/cases/preview", response_class=HTMLResponse)
async def preview(request: Request, p: StaffPage) -> Response:
    form = await posted_form(request)
    try:
        shown = await send_case(p, form, "/cases/preview", case_payload(form, caseworker=p.subject))
    except FormRefused as refused:
        return refused_form(p, refused)
    return p.render("preview.html", form=form, preview=shown, idempotency_key=str(uuid.uuid4()), errors={}, **choices())


@router.post("/cases", response_class=HTMLResponse)
async def submit(request: Request, p: StaffPage) -> Response:
    """One case per preview shown: its idempotency key makes a double click, or a retry, the same case."""
    form = await posted_form(request)
    consents = consents_given(form, form.all("agency"), form.all("sensitive_asked"))
    body = case_payload(form, consents, caseworker=p.subject)
    key = form.get("idempotency_key")
    try:
        created = await send_case(p, form, "/cases", body, {"Idempotency-Key": key} if key else None)
    except FormRefused as refused:
        return refused_form(p, refused)
    return RedirectResponse(f"/cases/{created['case_id']}", status_code=303)


# A case just submitted is not known to notify for a moment: shown as submitted, the page fills in as it flows.
SUBMITTED: dict[str, Any] = {"status": "submitted", "referrals": [], "attention": []}


async def not_yet(call: Awaitable[Any], empty: dict[str, Any]) -> Any:
    """The answer, or `empty` while the service has not heard of the case yet (404)."""
    try:
        return await call
    except ApiError as missing:
        if missing.status != 404:
            raise
        return empty


async def case_view(p: Page, case_id: UUID, closing: bool = False) -> dict[str, Any]:
    """What the case page shows, each part from the service that owns it (a part not there yet is empty); `closing`:
    the user has just closed it, and the page follows it until notify has heard."""
    status = await not_yet(p.api("notify", "GET", f"/cases/{case_id}/status"), SUBMITTED)
    events = (await not_yet(p.api("notify", "GET", f"/cases/{case_id}/timeline"), {"events": []}))["events"]
    now = datetime.now(UTC)
    referrals = [{**r, "countdown": flow.countdown(r.get("ack_deadline"), now)} for r in status["referrals"]]
    stages: list[flow.Stage] = []
    if status.get("plan"):  # a staged case: routing's plan names its stages and knows their state now
        plan = await not_yet(p.api("routing", "GET", f"/cases/{case_id}/plan"), {})
        stages = flow.plan_stages(plan, status["plan"], now)
    return {
        "stages": stages,
        "can_advance": flow.can_advance(stages),
        "case_id": str(case_id),
        "status": status,
        "referrals": referrals,
        "steps": flow.steps(events),
        "names": await agency_names(p),
        "labels": labels,
        "open_states": flow.ACTIVE_STATES,
        "closing": closing,
    }


@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case_page(case_id: UUID, p: StaffPage, closing: bool = False) -> Response:
    view = await case_view(p, case_id, closing)
    consents = await p.api("intake", "GET", f"/cases/{case_id}/consents")
    pending: list[dict[str, Any]] = []
    if view["status"].get("pending_needs"):  # why each waits, since when, how often tried: routing's
        pending = (await p.api("routing", "GET", f"/cases/{case_id}/pending-needs"))["pending_needs"]
    return p.render("case.html", consents=consents["agencies"], pending=pending, **view)


@router.get("/cases/{case_id}/progress", response_class=HTMLResponse)
async def case_progress(case_id: UUID, p: StaffPage, closing: bool = False) -> Response:
    """The referrals and the timeline only, refreshed in place by htmx while the page is open."""
    return p.render("case_progress.html", **await case_view(p, case_id, closing))


@router.post("/cases/{case_id}/plan/advance")
async def advance_plan(case_id: UUID, request: Request, p: StaffPage) -> Response:
    """The stage under way is done: routing starts the next stage with needs and routes them now (never silently)."""
    await posted_form(request)
    await p.api("routing", "POST", f"/cases/{case_id}/plan/advance")
    return RedirectResponse(f"/cases/{case_id}#plan", status_code=303)


@router.post("/cases/{case_id}/consents/{agency_id}/withdraw")
async def withdraw(case_id: UUID, agency_id: AgencyId, request: Request, p: StaffPage) -> Response:
    form = await posted_form(request)
    scope = "sensitive" if form.get("scope") == "sensitive" else "all"
    await p.api("intake", "POST", f"/cases/{case_id}/consents/{agency_id}/withdraw", body={"scope": scope})
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


@router.get("/guidance", response_class=HTMLResponse)
async def guidance_form(p: StaffPage) -> Response:
    return p.render("guidance.html", form=Form([]), errors={}, preview=None, **choices())


@router.post("/guidance", response_class=HTMLResponse)
async def guidance(request: Request, p: StaffPage) -> Response:
    """Which agencies would help a caller, and what each offers, from the case's facts alone: routing's preview,
    which records nothing, asked without any personal data."""
    form = await posted_form(request)
    body = {**case_payload(form), "victim": NO_VICTIM, "intake_channel": "phone"}
    errors = check_case(body)
    shown = None
    if not errors:
        shown = await p.api("intake", "POST", "/cases/preview", body=body)
    return p.render(
        "guidance.html", http_status=422 if errors else 200, form=form, errors=errors, preview=shown, **choices()
    )
