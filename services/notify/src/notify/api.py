"""HTTP routes: agencies acknowledge referrals; staff and ops read referral states and the case timeline."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Request
from kit.http import Problem
from pydantic import BaseModel, ConfigDict, Field
from schemas.events import AgencyId, ReferralAccepted, ReferralDeclined
from schemas.vocab import DeclineReason

from . import storage
from .handlers import AckRefused, acknowledge

Note = Annotated[str, Field(min_length=1, max_length=500)]


class Acceptance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agency_id: AgencyId
    note: Note | None = None


class Refusal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agency_id: AgencyId
    reason: DeclineReason
    note: Note | None = None


def routes() -> APIRouter:
    router = APIRouter()

    async def answer(request: Request, referral_id: UUID, agency_id: str, build: Any) -> dict[str, Any]:
        try:
            outcome, state = await acknowledge(request.app.state.runtime.pool, referral_id, agency_id, build)
        except AckRefused as refused:
            raise Problem(refused.status, refused.detail) from None
        return {"referral_id": str(referral_id), "state": state, "changed": outcome == "applied"}

    @router.post("/referrals/{referral_id}/accept", tags=["acknowledgements"])
    async def accept(referral_id: UUID, body: Acceptance, request: Request) -> dict[str, Any]:
        """The agency takes the referral. Repeating it changes nothing; after a decline it is refused (409)."""

        def build(case_id: UUID) -> ReferralAccepted:
            return ReferralAccepted(
                case_id=case_id,
                producer="notify",
                referral_id=referral_id,
                agency_id=body.agency_id,
                note=body.note,
            )

        return await answer(request, referral_id, body.agency_id, build)

    @router.post("/referrals/{referral_id}/decline", tags=["acknowledgements"])
    async def decline(referral_id: UUID, body: Refusal, request: Request) -> dict[str, Any]:
        """The agency cannot help, with a reason from the decline vocabulary."""

        def build(case_id: UUID) -> ReferralDeclined:
            return ReferralDeclined(
                case_id=case_id,
                producer="notify",
                referral_id=referral_id,
                agency_id=body.agency_id,
                reason=body.reason,
                note=body.note,
            )

        return await answer(request, referral_id, body.agency_id, build)

    @router.get("/referrals/{referral_id}", tags=["referrals"])
    async def referral(referral_id: UUID, request: Request) -> dict[str, Any]:
        found = await storage.load_referral(request.app.state.runtime.pool, referral_id)
        if found is None:
            raise Problem(404, f"no referral {referral_id}")
        return found

    @router.get("/cases/{case_id}/referrals", tags=["referrals"])
    async def case_referrals(case_id: UUID, request: Request) -> list[dict[str, Any]]:
        return await storage.referrals_of_case(request.app.state.runtime.pool, case_id)

    @router.get("/cases/{case_id}/timeline", tags=["timeline"])
    async def timeline(case_id: UUID, request: Request) -> dict[str, Any]:
        """Every event of the case in the order it happened, with times."""
        events = await storage.timeline_of_case(request.app.state.runtime.pool, case_id)
        if not events:
            raise Problem(404, f"no events for case {case_id} (yet)")
        return {"case_id": str(case_id), "events": events}

    return router
