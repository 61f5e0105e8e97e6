"""Re-routing: a referral that ends without help leaves its needs unmet, and routing is asked for the next agency."""

from uuid import UUID

import asyncpg
from kit.outbox import add_to_outbox
from schemas.events import ReroutingRequested
from schemas.topics import REFERRAL_REROUTING
from schemas.vocab import ReferralState, ReroutingCause

from . import storage

# A referral that ends without help leaves its needs unmet: routing looks for the next agency.
REROUTE_ON: dict[ReferralState, ReroutingCause] = {
    ReferralState.declined: ReroutingCause.declined,
    ReferralState.failed: ReroutingCause.delivery_failed,
}


async def request_rerouting(
    conn: asyncpg.Connection,
    case_id: UUID,
    referral_id: UUID,
    agency_id: str,
    needs: list[str],
    cause: ReroutingCause,
    requested_by: str = "notify",
) -> None:
    """Ask routing for another agency for `needs`; the timeline says who asked (notify on its own, or a caseworker
    accepting a follow-up's proposal)."""
    request = ReroutingRequested(
        case_id=case_id,
        producer="notify",
        referral_id=referral_id,
        agency_id=agency_id,
        needs=needs,
        cause=cause,
    )
    await storage.add_to_timeline(
        conn, request, {"needs": needs, "cause": cause.value, "requested_by": requested_by}, referral_id, agency_id
    )
    await add_to_outbox(conn, REFERRAL_REROUTING, request)
