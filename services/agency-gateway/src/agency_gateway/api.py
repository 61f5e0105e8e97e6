"""The gateway's HTTP API: staff follow a case's deliveries and notices; a Kafka-native agency fetches the personal
items of a referral delivered to it. Every read of a case's data is access-logged; auditors read the log
(kit.access_log_api)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends
from kit.access_log import Access
from kit.deps import AccessLogDep, AgencyDep, PoolDep, StaffDep, provided
from kit.http import Problem

from . import storage
from .handlers import AgencyDeliveries
from .personal import IntakeDisclosures, NotFetched


@dataclass(frozen=True)
class Deliveries:
    """What the gateway's routes read besides the database: each agency's deliveries (its channel and circuit),
    intake's disclosures and the clock (main.py's)."""

    agencies: Sequence[AgencyDeliveries]
    disclosures: IntakeDisclosures
    clock: Callable[[], float]


DeliveriesDep = Annotated[Deliveries, Depends(provided(Deliveries))]

router = APIRouter()
Rows = list[dict[str, object]]


@router.get("/cases/{case_id}/deliveries", tags=["deliveries"])
async def case_deliveries(case_id: UUID, who: StaffDep, pool: PoolDep, access_log: AccessLogDep) -> Rows:
    """Each referral's delivery: its outcome, the agency's answer, and every attempt."""
    await access_log.record_now(pool, who, Access("case.deliveries.read", case_id))
    return await storage.deliveries_of_case(pool, case_id)


@router.get("/cases/{case_id}/notices", tags=["deliveries"])
async def case_notices(case_id: UUID, who: StaffDep, pool: PoolDep, access_log: AccessLogDep) -> Rows:
    """notify's reminders and cancellations of the case's referrals, and how delivering each to its agency ended."""
    await access_log.record_now(pool, who, Access("case.notices.read", case_id))
    return await storage.notices_of_case(pool, case_id)


@router.get("/agencies", tags=["deliveries"])
async def agencies(who: StaffDep, deliveries: DeliveriesDep) -> Rows:
    """Each agency's channel and circuit: `open` while the gateway pauses calls to an agency that is down."""
    now = deliveries.clock()
    return [
        {
            "agency_id": d.agency.id,
            "channel": d.agency.channel.type,
            "circuit": "open" if d.breaker.is_open(now) else "closed",
            "consecutive_failures": d.breaker.consecutive_failures,
        }
        for d in deliveries.agencies
    ]


@router.get("/referrals/{referral_id}/personal", tags=["agencies"])
async def personal_items(
    referral_id: UUID, who: AgencyDep, pool: PoolDep, access_log: AccessLogDep, deliveries: DeliveriesDep
) -> dict[str, Any]:
    """The personal items of a referral delivered to the calling agency (a Kafka-native agency's topic carries
    only their names). Another agency's referral is not found (404); an erased case answers 410."""
    row = await storage.delivered_referral(pool, referral_id)
    if row is None or row["agency_id"] != who.agency:
        raise Problem(404, f"no referral {referral_id} delivered to this agency")
    # Only while the referral is open to the agency: not once it declined, completed, or lost it.
    ended = await storage.why_ended(pool, referral_id)
    if ended is not None:
        raise Problem(410, f"referral {referral_id} is no longer open to this agency ({ended})")
    wanted = row["personal_items"]
    disclosures = deliveries.disclosures
    items = await disclosures.items(row["case_id"], referral_id, row["agency_id"], wanted) if wanted else {}
    if isinstance(items, NotFetched):
        # Erased (410), consent withdrawn (409): say so; anything else is intake being unavailable.
        status = items.intake_status if items.intake_status in (404, 409, 410) else 503
        raise Problem(status or 503, "the personal items cannot be given: " + items.detail)
    await access_log.record_now(pool, who, Access("referral.personal.read", row["case_id"], referral_id))
    return {"referral_id": str(referral_id), "case_id": str(row["case_id"]), "items": items}
