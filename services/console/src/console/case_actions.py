"""What staff do to a case beyond following it: close it or one of its pending needs with a reason, close a follow-up
task with its outcome or accept its proposal to re-route (staff), provide
data to an agency without consent on a legal basis, and erase the case on request after typing its id
(supervisors). Each is the API's own operation under the user's token; the API decides, and records who did it."""

from typing import TypeVar
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from schemas.events import AgencyId
from schemas.vocab import FOLLOW_UP_CLOSINGS, CaseClosedReason, FollowUpOutcome, LegalBasis, Need, NeedClosedReason

from .apis import ApiError
from .pages import OperatorPage, StaffPage
from .session import posted_form

router = APIRouter()


Choice = TypeVar("Choice", CaseClosedReason, FollowUpOutcome, LegalBasis, NeedClosedReason)


def _chosen(kind: type[Choice], value: str) -> Choice:
    try:
        return kind(value)
    except ValueError:
        raise ApiError(422, "choose a value from the list") from None


@router.post("/cases/{case_id}/close")
async def close(case_id: UUID, request: Request, p: StaffPage) -> Response:
    form = await posted_form(request)
    reason = _chosen(CaseClosedReason, form.get("reason"))
    await p.api("intake", "POST", f"/cases/{case_id}/close", body={"reason": reason.value})
    return RedirectResponse(f"/cases/{case_id}?closing=true", status_code=303)


@router.post("/cases/{case_id}/pending-needs/{need}/close")
async def close_pending_need(case_id: UUID, need: Need, request: Request, p: StaffPage) -> Response:
    """A need no agency could take, ended with a reason code: routing stops looking for an agency for it."""
    form = await posted_form(request)
    reason = _chosen(NeedClosedReason, form.get("reason"))
    await p.api("routing", "POST", f"/cases/{case_id}/pending-needs/{need.value}/close", body={"reason": reason.value})
    return RedirectResponse(f"/cases/{case_id}#pending-needs", status_code=303)


@router.post("/cases/{case_id}/follow-ups/{task_id}/done")
async def follow_up_done(case_id: UUID, task_id: UUID, request: Request, p: StaffPage) -> Response:
    """A follow-up closed with what the caseworker found (a proposal to re-route it made is thereby declined)."""
    form = await posted_form(request)
    outcome = _chosen(FollowUpOutcome, form.get("outcome"))
    if outcome not in FOLLOW_UP_CLOSINGS:
        raise ApiError(422, "choose a value from the list")
    await p.api("notify", "POST", f"/cases/{case_id}/follow-ups/{task_id}/done", body={"outcome": outcome.value})
    return RedirectResponse(f"/cases/{case_id}#follow-ups", status_code=303)


@router.post("/cases/{case_id}/follow-ups/{task_id}/reroute")
async def follow_up_reroute(case_id: UUID, task_id: UUID, request: Request, p: StaffPage) -> Response:
    """The follow-up's proposal accepted: routing looks for another agency for the completed referral's needs."""
    await posted_form(request)  # its CSRF token
    await p.api("notify", "POST", f"/cases/{case_id}/follow-ups/{task_id}/reroute", body={})
    return RedirectResponse(f"/cases/{case_id}#follow-ups", status_code=303)


@router.post("/cases/{case_id}/consents/{agency_id}/override")
async def override(case_id: UUID, agency_id: AgencyId, request: Request, p: OperatorPage) -> Response:
    form = await posted_form(request)
    basis = _chosen(LegalBasis, form.get("legal_basis"))
    if not form.get("reason"):
        raise ApiError(422, "an override needs its reason")
    body = {"legal_basis": basis.value, "reason": form.get("reason")}
    await p.api("intake", "POST", f"/cases/{case_id}/consents/{agency_id}/override", body=body)
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


@router.post("/cases/{case_id}/erase")
async def erase(case_id: UUID, request: Request, p: OperatorPage) -> Response:
    """Erasure on request cannot be undone: refused unless the case's id was typed to confirm it."""
    form = await posted_form(request)
    if form.get("confirm").lower() != str(case_id):
        detail = p.t.gettext("Type the case's id exactly to confirm the erasure; nothing was erased.")
        return p.render("error.html", http_status=422, status_code=422, detail=detail)
    await p.api("intake", "DELETE", f"/cases/{case_id}")
    return p.render("erased.html", case_id=str(case_id))
