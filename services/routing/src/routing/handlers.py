"""Kafka handlers: a submitted case, or a referral that ended without help, becomes a recorded decision and one
referral per chosen agency, in one transaction with the events that announce them."""

import logging
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import asyncpg
from kit.erasure import is_erased
from kit.inbox import first_time
from kit.outbox import add_to_outbox
from schemas.catalogue import Catalogue
from schemas.events import (
    CaseFacts,
    CaseRouted,
    CaseSubmitted,
    CaseSubmittedV1,
    ConsentWithdrawn,
    EventRejected,
    ReferralRequested,
    ReroutingRequested,
    RoutedReferral,
    current_form,
)
from schemas.topics import REFERRAL_EVENTS, agency_topic
from schemas.vocab import ReroutingCause

from . import storage
from .domain import (
    ALREADY_REFERRED,
    Plan,
    after_withdrawals,
    excluded_after,
    new_referral_id,
    personal_items_for,
    referral_view,
    route_case,
)
from .rules import Rules

log = logging.getLogger(__name__)

CONSUMER = "routing.case-submitted"
REROUTING_CONSUMER = "routing.referral-rerouting"
CONSENTS_CONSUMER = "routing.consent-withdrawn"

Clock = Callable[[], datetime]


async def on_case_submitted(
    pool: asyncpg.Pool, catalogue: Catalogue, rules: Rules, clock: Clock, event: CaseSubmitted | CaseSubmittedV1
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await route_submitted(conn, catalogue, rules, clock, event)


async def route_submitted(
    conn: asyncpg.Connection,
    catalogue: Catalogue,
    rules: Rules,
    clock: Clock,
    event: CaseSubmitted | CaseSubmittedV1,
) -> None:
    """Route a submitted case in the caller's transaction (a batch's, say), inbox check included."""
    submitted = current_form(event)
    case = submitted.case
    if not await first_time(conn, CONSUMER, submitted.event_id):
        return
    if await storage.decided_already(conn, submitted.case_id):
        log.warning("case already routed; a second case.submitted for it is ignored")
        return
    if await is_erased(conn, submitted.case_id):
        log.info("case erased before it was routed: not routed")  # case.erased has a topic of its own
        return
    now = clock()
    remaining = await storage.remaining_places(conn, lock=True)
    # A consent withdrawn since the case was submitted (its event may come first) counts from the first routing.
    facts, withdrawn = after_withdrawals(case, await storage.withdrawals(conn, submitted.case_id))
    plan = route_case(facts, catalogue, rules, now, remaining=remaining, excluded=withdrawn)
    routed = _routed(submitted.case_id, plan, now)
    await storage.save_case(conn, submitted.case_id, submitted.occurred_at, case)
    await storage.save_decision(conn, routed)
    await _announce(conn, facts, plan, routed)


async def on_rerouting_requested(
    pool: asyncpg.Pool, catalogue: Catalogue, rules: Rules, clock: Clock, request: ReroutingRequested
) -> None:
    """Route the needs an ended referral leaves unmet to the next candidates, never back to an agency that
    declined, failed or already has the case."""
    async with pool.acquire() as conn, conn.transaction():
        if not await first_time(conn, REROUTING_CONSUMER, request.event_id):
            return
        if await storage.rerouted_already(conn, request.referral_id):
            return
        if await is_erased(conn, request.case_id):
            log.info("re-routing of an erased case ignored")
            return
        case = await storage.load_case(conn, request.case_id)
        if case is None:
            raise EventRejected("unknown_case", "routing has no record of the case this re-routing concerns")
        excluded = dict.fromkeys(await storage.referred_agencies(conn, request.case_id), ALREADY_REFERRED)
        ended = {**await storage.ended_referrals(conn, request.case_id), request.agency_id: request.cause}
        excluded |= {agency_id: excluded_after(ReroutingCause(cause)) for agency_id, cause in ended.items()}
        case, withdrawn = after_withdrawals(case, await storage.withdrawals(conn, request.case_id))
        excluded |= withdrawn
        now = clock()
        remaining = await storage.remaining_places(conn, lock=True)
        plan = route_case(case, catalogue, rules, now, remaining=remaining, excluded=excluded, needs=request.needs)
        routed = _routed(request.case_id, plan, now, rerouted_from=request)
        await storage.save_rerouting(conn, request, routed)
        await _announce(conn, case, plan, routed)


def _routed(case_id: UUID, plan: Plan, now: datetime, rerouted_from: ReroutingRequested | None = None) -> CaseRouted:
    return CaseRouted(
        case_id=case_id,
        producer="routing",
        occurred_at=now,
        referrals=[
            RoutedReferral(referral_id=new_referral_id(), agency_id=r.agency.id, needs=r.needs) for r in plan.referrals
        ],
        decisions=plan.decisions,
        uncovered_needs=plan.uncovered_needs,
        rerouted_from=None if rerouted_from is None else rerouted_from.referral_id,
    )


async def _announce(conn: asyncpg.Connection, case: CaseFacts, plan: Plan, routed: CaseRouted) -> None:
    """The decision on referral.events (notify records it in the timeline), each referral on its agency's topic."""
    await add_to_outbox(conn, REFERRAL_EVENTS, routed)
    consents = {c.agency_id: c for c in case.consents}
    for planned, referral in zip(plan.referrals, routed.referrals, strict=True):
        agency = planned.agency
        await add_to_outbox(
            conn,
            agency_topic(agency.id),
            ReferralRequested(
                case_id=routed.case_id,
                producer="routing",
                referral_id=referral.referral_id,
                agency_id=agency.id,
                case=referral_view(case, agency, planned.needs),
                personal_items=personal_items_for(case, agency, consents.get(agency.id)),
            ),
        )
    await storage.take_places(conn, (r.agency.id for r in plan.referrals))
    log.info(
        "case routed: %d referral(s), %d uncovered need(s)%s",
        len(routed.referrals),
        len(routed.uncovered_needs),
        " (re-routing)" if routed.rerouted_from else "",
    )


async def on_consent_withdrawn(pool: asyncpg.Pool, event: ConsentWithdrawn) -> None:
    """Keep what the victim withdrew: every later routing of the case leaves the agency out (or, for the sensitive
    items only, gives it none of them). Referrals made already are notify's to cancel."""
    async with pool.acquire() as conn, conn.transaction():
        if not await first_time(conn, CONSENTS_CONSUMER, event.event_id):
            return
        await storage.save_withdrawal(conn, event.case_id, event.agency_id, event.scope, event.withdrawn_at)
