"""The gateway's HTTP API: staff follow a case's deliveries and notices; a Kafka-native agency fetches the personal
items of a referral delivered to it. Every read of a case's data is access-logged; auditors read the log."""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from kit.access_log import Access, AccessLog, access_log_routes
from kit.auth import STAFF, Principal, Role, require
from kit.http import Problem

from . import storage
from .handlers import AgencyDeliveries
from .personal import IntakeDisclosures, NotFetched


def routes(
    access_log: AccessLog, deliveries: Sequence[AgencyDeliveries], disclosures: IntakeDisclosures, clock: Any
) -> APIRouter:
    router = APIRouter()
    staff = Depends(require(*STAFF))
    agency = Depends(require(Role.agency))

    @router.get("/cases/{case_id}/deliveries", tags=["deliveries"])
    async def case_deliveries(case_id: UUID, request: Request, who: Principal = staff) -> list[dict[str, object]]:
        """Each referral's delivery: its outcome, the agency's answer, and every attempt."""
        pool = request.app.state.runtime.pool
        await access_log.record_now(pool, who, Access("case.deliveries.read", case_id))
        return await storage.deliveries_of_case(pool, case_id)

    @router.get("/cases/{case_id}/notices", tags=["deliveries"])
    async def case_notices(case_id: UUID, request: Request, who: Principal = staff) -> list[dict[str, object]]:
        """notify's reminders and cancellations of the case's referrals, and how delivering each to its agency ended."""
        pool = request.app.state.runtime.pool
        await access_log.record_now(pool, who, Access("case.notices.read", case_id))
        return await storage.notices_of_case(pool, case_id)

    @router.get("/agencies", tags=["deliveries"])
    async def agencies(who: Principal = staff) -> list[dict[str, object]]:
        """Each agency's channel and circuit: `open` while the gateway pauses calls to an agency that is down."""
        now = clock()
        return [
            {
                "agency_id": d.agency.id,
                "channel": d.agency.channel.type,
                "circuit": "open" if d.breaker.is_open(now) else "closed",
                "consecutive_failures": d.breaker.consecutive_failures,
            }
            for d in deliveries
        ]

    @router.get("/referrals/{referral_id}/personal", tags=["agencies"])
    async def personal_items(referral_id: UUID, request: Request, who: Principal = agency) -> dict[str, Any]:
        """The personal items of a referral delivered to the calling agency (a Kafka-native agency's topic carries
        only their names). Another agency's referral is not found (404); an erased case answers 410."""
        pool = request.app.state.runtime.pool
        row = await storage.delivered_referral(pool, referral_id)
        if row is None or row["agency_id"] != who.agency:
            raise Problem(404, f"no referral {referral_id} delivered to this agency")
        # Only while the referral is open to the agency: not once it declined, completed, or lost it.
        ended = await storage.why_ended(pool, referral_id)
        if ended is not None:
            raise Problem(410, f"referral {referral_id} is no longer open to this agency ({ended})")
        wanted = row["personal_items"]
        items = await disclosures.items(row["case_id"], referral_id, row["agency_id"], wanted) if wanted else {}
        if isinstance(items, NotFetched):
            # Erased (410), consent withdrawn (409): say so; anything else is intake being unavailable.
            status = items.intake_status if items.intake_status in (404, 409, 410) else 503
            raise Problem(status or 503, "the personal items cannot be given: " + items.detail)
        await access_log.record_now(pool, who, Access("referral.personal.read", row["case_id"], referral_id))
        return {"referral_id": str(referral_id), "case_id": str(row["case_id"]), "items": items}

    router.include_router(access_log_routes(access_log))
    return router
