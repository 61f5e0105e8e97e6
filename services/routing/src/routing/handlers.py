"""Kafka handler: a submitted case becomes a recorded decision and one referral per chosen agency."""

import asyncpg
from kit.inbox import first_time
from kit.outbox import add_to_outbox
from schemas.catalogue import Catalogue
from schemas.events import CaseRouted, CaseSubmitted, ReferralRequested, RoutedReferral
from schemas.topics import REFERRAL_EVENTS, agency_topic

from . import storage
from .domain import referral_id, referral_view, route_case

CONSUMER = "routing.case-submitted"


async def on_case_submitted(pool: asyncpg.Pool, catalogue: Catalogue, submitted: CaseSubmitted) -> None:
    case = submitted.case
    plan = route_case(case, catalogue)
    consents = {c.agency_id: c for c in case.consents}
    routed = CaseRouted(
        case_id=submitted.case_id,
        producer="routing",
        referrals=[
            RoutedReferral(
                referral_id=referral_id(submitted.case_id, r.agency.id), agency_id=r.agency.id, needs=r.needs
            )
            for r in plan.referrals
        ],
        decisions=plan.decisions,
        uncovered_needs=plan.uncovered_needs,
    )
    async with pool.acquire() as conn, conn.transaction():
        if not await first_time(conn, CONSUMER, submitted.event_id):
            return
        await storage.save_decision(conn, routed)
        await add_to_outbox(conn, REFERRAL_EVENTS, routed)
        for planned in plan.referrals:
            agency = planned.agency
            await add_to_outbox(
                conn,
                agency_topic(agency.id),
                ReferralRequested(
                    case_id=submitted.case_id,
                    producer="routing",
                    referral_id=referral_id(submitted.case_id, agency.id),
                    agency_id=agency.id,
                    case=referral_view(case, agency, consents.get(agency.id), planned.needs),
                ),
            )
