"""An agency's pages (one agency per login): its inbox of open referrals, overdue first with the countdown to each
deadline; a referral's page with exactly the items the agency may see (fetched from the gateway when viewed, which
access-logs the read); and its answers: accept, decline with a reason, start, complete with an outcome."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from schemas.vocab import CompletionOutcome, DeclineReason, NotSuccessfulReason

from . import flow, labels
from .apis import ApiError
from .forms import Form
from .pages import AgencyPage
from .session import posted_form

router = APIRouter()
ACTIONS = ("accept", "decline", "start", "complete")


@router.get("/inbox", response_class=HTMLResponse)
async def inbox(p: AgencyPage) -> Response:
    referrals: list[dict[str, Any]] = await p.api("notify", "GET", "/referrals")
    now = datetime.now(UTC)
    waiting = [{**r, "countdown": flow.countdown(r.get("ack_deadline"), now)} for r in flow.inbox_order(referrals, now)]
    working = [r for r in referrals if r["state"] not in flow.OPEN_STATES]
    return p.render("inbox.html", waiting=waiting, working=working, labels=labels)


@router.get("/inbox/{referral_id}", response_class=HTMLResponse)
async def referral_page(referral_id: UUID, p: AgencyPage) -> Response:
    referral = await p.api("notify", "GET", f"/referrals/{referral_id}")
    items: dict[str, str] | None = None
    unavailable = None
    if referral["state"] in flow.ACTIVE_STATES:
        try:
            items = (await p.api("agency-gateway", "GET", f"/referrals/{referral_id}/personal"))["items"]
        except ApiError as refused:
            if refused.status not in (404, 409, 410):
                raise
            unavailable = refused.status
    return p.render(
        "referral.html",
        referral=referral,
        countdown=flow.countdown(referral.get("ack_deadline"), datetime.now(UTC)),
        items=items,
        unavailable=unavailable,
        labels=labels,
        decline_reasons=list(labels.DECLINE_REASONS.items()),
        outcomes=list(labels.OUTCOMES.items()),
        not_successful=list(labels.NOT_SUCCESSFUL.items()),
    )


@router.get("/capacity", response_class=HTMLResponse)
async def capacity(p: AgencyPage) -> Response:
    """The places the agency has free now, as routing counts them (its report, or the catalogue's capacity)."""
    shown = await p.api("routing", "GET", f"/agencies/{p.user_agency}/capacity")
    return p.render("capacity.html", capacity=shown)


@router.post("/capacity")
async def report_capacity(request: Request, p: AgencyPage) -> Response:
    form = await posted_form(request)
    try:
        available = int(form.get("available"))
    except ValueError:
        raise ApiError(422, "the places free must be a whole number") from None
    await p.api("routing", "PUT", f"/agencies/{p.user_agency}/capacity", body={"available": available})
    return RedirectResponse("/capacity", status_code=303)


def answer_body(action: str, form: Form) -> dict[str, Any]:
    """The acknowledgement API's body for an answer from the referral page's form."""
    body: dict[str, Any] = {}
    if form.get("note"):
        body["note"] = form.get("note")
    if action == "decline":
        body["reason"] = DeclineReason(form.get("reason") or "other").value
    if action == "complete":
        outcome = CompletionOutcome(form.get("outcome") or "successful")
        body["outcome"] = outcome.value
        if outcome is CompletionOutcome.not_successful:
            body["reason"] = NotSuccessfulReason(form.get("reason") or "other").value
    return body


@router.post("/inbox/{referral_id}/{action}")
async def answer(referral_id: UUID, action: str, request: Request, p: AgencyPage) -> Response:
    form = await posted_form(request)
    if action not in ACTIONS:
        raise ApiError(404, "no such answer")
    try:
        body = answer_body(action, form)
    except ValueError:
        raise ApiError(422, "choose a reason or an outcome from the list") from None
    await p.api("notify", "POST", f"/referrals/{referral_id}/{action}", body=body)
    return RedirectResponse(f"/inbox/{referral_id}", status_code=303)
