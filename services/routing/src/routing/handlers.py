"""Kafka handlers: a submitted case, or a referral that ended without help, becomes a recorded decision and one
referral per chosen agency, in one transaction with the events that announce them; a staged case's plan advances
when the stage under way meets its rule."""

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from uuid import UUID

import asyncpg
from kit.erasure import is_erased
from kit.inbox import first_time
from kit.outbox import add_to_outbox
from kit.unit_of_work import once, transaction
from schemas.catalogue import Catalogue
from schemas.events import (
    REFERRAL_STATE_OF,
    CaseClosed,
    CaseFacts,
    CasePlanned,
    CaseRouted,
    CaseSubmitted,
    CaseSubmittedV1,
    ConsentRecorded,
    ConsentWithdrawn,
    Envelope,
    EventRejected,
    NeedClosed,
    PlanStage,
    ReferralCompleted,
    ReferralRequested,
    ReferralStateEvent,
    ReroutingRequested,
    RoutedReferral,
    current_form,
)
from schemas.topics import REFERRAL_EVENTS, agency_topic
from schemas.vocab import Need, ReroutingCause

from . import storage
from .domain import (
    ALREADY_REFERRED,
    Plan,
    as_consented_now,
    excluded_after,
    new_referral_id,
    personal_items_for,
    referral_view,
    route_case,
    why_uncovered,
)
from .plan import PlanRefused, advanced, current, new_plan, routes_now, rule_met, rule_name
from .rules import Rules

log = logging.getLogger(__name__)

CONSUMER = "routing.case-submitted"
REROUTING_CONSUMER = "routing.referral-rerouting"
CONSENTS_CONSUMER = "routing.consent-withdrawn"
EVENTS_CONSUMER = "routing.referral-events"
CONSENTS_RECORDED_CONSUMER = "routing.consent-recorded"

Clock = Callable[[], datetime]


async def on_case_submitted(
    pool: asyncpg.Pool, catalogue: Catalogue, rules: Rules, clock: Clock, event: CaseSubmitted | CaseSubmittedV1
) -> None:
    async with transaction(pool) as conn:
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
    # A consent recorded or withdrawn since the case was submitted (its event may come first) counts from the first
    # routing.
    facts, withdrawn = await _consented_now(conn, case, submitted.case_id)
    needs: list[Need] | None = None
    if facts.staged and rules.plan is not None:  # a staged case routes its first stage's needs, the rest wait
        stages = new_plan(rules.plan, facts.needs, now)
        needs = routes_now(stages)
        await storage.save_plan(conn, submitted.case_id, stages, now)
        await add_to_outbox(conn, REFERRAL_EVENTS, _planned(submitted.case_id, stages, "routing", now))
    plan = route_case(facts, catalogue, rules, now, remaining=remaining, excluded=withdrawn, needs=needs)
    routed = _routed(submitted.case_id, plan, now)
    await storage.save_case(conn, submitted.case_id, submitted.occurred_at, case)
    await storage.save_decision(conn, routed)
    await _announce(conn, facts, plan, routed)


def _planned(case_id: UUID, stages: list[PlanStage], who: str, now: datetime) -> CasePlanned:
    return CasePlanned(case_id=case_id, producer="routing", occurred_at=now, stages=stages, changed_by=who)


async def change_plan(
    conn: asyncpg.Connection,
    catalogue: Catalogue,
    rules: Rules,
    now: datetime,
    case_id: UUID,
    who: str,
    change: Callable[[list[PlanStage]], tuple[list[PlanStage], list[Need]]],
) -> list[PlanStage]:
    """Change a staged case's plan (`change`: the plan after, and the needs to route now) in the caller's transaction;
    `case.plan` tells notify, and the needs of a stage that starts are routed like any routing. LookupError for a
    case routing does not know or that is not staged; PlanRefused for a case that is closed or erased."""
    case = await storage.load_case(conn, case_id)  # its row's lock: one routing of the case at a time
    stages = await storage.plan_of(conn, case_id)
    if case is None or stages is None:
        raise LookupError(f"no staged case {case_id}")
    if await storage.is_closed(conn, case_id) or await is_erased(conn, case_id):
        raise PlanRefused("the case is closed: its plan is over")
    stages, needs = change(stages)
    await storage.save_plan(conn, case_id, stages, now)
    await add_to_outbox(conn, REFERRAL_EVENTS, _planned(case_id, stages, who, now))
    if needs:
        case, excluded = await _as_routed_so_far(conn, case, case_id)
        remaining = await storage.remaining_places(conn, lock=True)
        plan = route_case(case, catalogue, rules, now, remaining=remaining, excluded=excluded, needs=needs)
        routed = _routed(case_id, plan, now)
        await storage.save_referrals(conn, routed)
        await _announce(conn, case, plan, routed)
    return stages


def may_meet_a_rule(event: Envelope) -> bool:
    """The events of referral.events that may meet a stage's rule: a referral's new state, a pending need closed.
    The rest (routing's own decisions and plans, notify's reminders) are passed over without a transaction."""
    return isinstance(event, ReferralStateEvent | NeedClosed)


async def on_referral_event(
    conn: asyncpg.Connection, catalogue: Catalogue, rules: Rules, clock: Clock, event: Envelope
) -> None:
    """Keep the state of a referral routing made (the one of highest rank: a late event changes nothing), then advance
    the case's plan if the stage under way now meets its rule; in the caller's transaction, inbox check included."""
    if not await first_time(conn, EVENTS_CONSUMER, event.event_id):
        return
    if isinstance(event, ReferralStateEvent):
        outcome = event.outcome if isinstance(event, ReferralCompleted) else None
        if not await storage.record_state(conn, event.referral_id, REFERRAL_STATE_OF[type(event)], outcome):
            return  # nothing new (a late or repeated fact, or a referral routing did not make)
    await advance_by_rule(conn, catalogue, rules, clock(), event.case_id)


async def advance_by_rule(
    conn: asyncpg.Connection, catalogue: Catalogue, rules: Rules, now: datetime, case_id: UUID
) -> list[PlanStage] | None:
    """Advance a staged case's plan, as a caseworker would (`change_plan`: the `case.plan` event, the next stage's
    needs routed), when the stage under way meets its rule; `changed_by` names the rule. The case's row is locked
    before the plan, its referrals and pending needs are read, so a caseworker's advance, a retry or a re-routing of
    the case (another replica's too) waits, and the stage judged is the one advanced. The plan after, or None: no
    plan, no rule, not met, or the case is closed or erased."""
    if rules.plan is None:
        return None
    before = await storage.plan_of(conn, case_id)
    under_way = None if before is None else current(before)
    if under_way is None or rules.plan.rule_of(under_way.stage) is None:
        return None  # not staged, its plan is over, or the stage ends only when the caseworker says (no lock taken)
    if await storage.load_case(conn, case_id) is None:  # its row's lock; an erased case has no row
        return None
    stages = await storage.plan_of(conn, case_id)
    stage = None if stages is None else current(stages)
    if stage is None or await storage.is_closed(conn, case_id) or await is_erased(conn, case_id):
        return None
    rule = rules.plan.rule_of(stage.stage)
    pending = {Need(p["need"]) for p in await storage.pending_of_case(conn, case_id)}
    if rule is None or not rule_met(rule, stage, await storage.standings(conn, case_id), pending):
        return None
    log.info("stage %s of the case's plan ends by its rule (%s)", stage.stage, rule_name(rule))
    return await change_plan(conn, catalogue, rules, now, case_id, rule_name(rule), lambda s: advanced(s, now))


async def on_rerouting_requested(
    pool: asyncpg.Pool, catalogue: Catalogue, rules: Rules, clock: Clock, request: ReroutingRequested
) -> None:
    """Route the needs an ended referral leaves unmet to the next candidates, never back to an agency that
    declined, failed or already has the case."""

    async def reroute(conn: asyncpg.Connection, request: ReroutingRequested) -> None:
        if await storage.rerouted_already(conn, request.referral_id):
            return
        if await is_erased(conn, request.case_id):
            log.info("re-routing of an erased case ignored")
            return
        if await storage.is_closed(conn, request.case_id):
            log.info("re-routing of a closed case ignored")
            return
        case = await storage.load_case(conn, request.case_id)
        if case is None:
            raise EventRejected("unknown_case", "routing has no record of the case this re-routing concerns")
        case, excluded = await _as_routed_so_far(conn, case, request.case_id, {request.agency_id: request.cause})
        now = clock()
        remaining = await storage.remaining_places(conn, lock=True)
        plan = route_case(case, catalogue, rules, now, remaining=remaining, excluded=excluded, needs=request.needs)
        routed = _routed(request.case_id, plan, now, rerouted_from=request)
        await storage.save_rerouting(conn, request, routed)
        await _announce(conn, case, plan, routed)

    await once(pool, REROUTING_CONSUMER, request, reroute)


async def _as_routed_so_far(
    conn: asyncpg.Connection, case: CaseFacts, case_id: UUID, ending: Mapping[str, str] | None = None
) -> tuple[CaseFacts, dict[str, str]]:
    """The case with its consents as withdrawals leave them, and the agencies a later routing of it must leave out,
    with why: every agency it went to, more so one whose referral ended without help (`ending`: one ending now)."""
    excluded = dict.fromkeys(await storage.referred_agencies(conn, case_id), ALREADY_REFERRED)
    ended = {**await storage.ended_referrals(conn, case_id), **(ending or {})}
    excluded |= {agency_id: excluded_after(ReroutingCause(cause)) for agency_id, cause in ended.items()}
    case, withdrawn = await _consented_now(conn, case, case_id)
    return case, excluded | withdrawn


async def _consented_now(conn: asyncpg.Connection, case: CaseFacts, case_id: UUID) -> tuple[CaseFacts, dict[str, str]]:
    """The case with its consents as recorded and withdrawn since submission, and the agencies withdrawn from."""
    recorded = await storage.recorded_consents(conn, case_id)
    return as_consented_now(case, recorded, await storage.withdrawals(conn, case_id))


async def retry_pending(
    pool: asyncpg.Pool, catalogue: Catalogue, rules: Rules, clock: Clock, tried_before: datetime, limit: int = 50
) -> int:
    """Route again the pending needs last tried before `tried_before`: what nobody could take then may be taken now
    (an agency opened, reported places, the catalogue changed). A need still uncovered stays pending, with the new
    reasons; one an agency takes is announced like any routing. The number of cases tried (0: nothing was due)."""
    async with transaction(pool) as conn:
        due = await storage.pending_due(conn, tried_before, limit)
        for case_id, needs in due.items():
            await _retry_case(conn, catalogue, rules, clock(), case_id, [Need(n) for n in needs])
    return len(due)


async def _retry_case(
    conn: asyncpg.Connection, catalogue: Catalogue, rules: Rules, now: datetime, case_id: UUID, needs: list[Need]
) -> None:
    case = await storage.load_case(conn, case_id)
    if case is None or await is_erased(conn, case_id):
        await storage.release_pending(conn, case_id, needs)  # nothing left to route it with
        return
    case, excluded = await _as_routed_so_far(conn, case, case_id)
    remaining = await storage.remaining_places(conn, lock=True)
    plan = route_case(case, catalogue, rules, now, remaining=remaining, excluded=excluded, needs=needs)
    if not plan.referrals:
        await storage.hold_pending(conn, case_id, why_uncovered(plan), now)
        return
    routed = _routed(case_id, plan, now)
    await storage.save_referrals(conn, routed)
    await _announce(conn, case, plan, routed)
    log.info("pending need(s) routed: %d referral(s), %d still pending", len(plan.referrals), len(plan.uncovered_needs))


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
    await storage.release_pending(conn, routed.case_id, (n for r in routed.referrals for n in r.needs))
    await storage.hold_pending(conn, routed.case_id, why_uncovered(plan), routed.occurred_at)
    log.info(
        "case routed: %d referral(s), %d uncovered need(s)%s",
        len(routed.referrals),
        len(routed.uncovered_needs),
        " (re-routing)" if routed.rerouted_from else "",
    )


async def on_consent_withdrawn(pool: asyncpg.Pool, event: ConsentWithdrawn) -> None:
    """Keep what the victim withdrew: every later routing of the case leaves the agency out (or, for the sensitive
    items only, gives it none of them). Referrals made already are notify's to cancel."""

    async def withdraw(conn: asyncpg.Connection, event: ConsentWithdrawn) -> None:
        await storage.save_withdrawal(conn, event.case_id, event.agency_id, event.scope, event.withdrawn_at)

    await once(pool, CONSENTS_CONSUMER, event, withdraw)


async def on_consent_recorded(
    pool: asyncpg.Pool, catalogue: Catalogue, rules: Rules, clock: Clock, event: ConsentRecorded
) -> None:
    """Keep where the agency's consent stands now for every later routing of the case, and try the case's pending
    needs again at once: one no agency could take for want of this consent may be taken now."""

    async def record(conn: asyncpg.Connection, event: ConsentRecorded) -> None:
        case = await storage.load_case(conn, event.case_id)  # its row's lock: one routing of the case at a time
        await storage.save_recorded_consent(conn, event.case_id, event.consent, event.recorded_at)
        if case is None or await storage.is_closed(conn, event.case_id):
            return  # not routed yet (its routing reads the consent), or no agency is looked for any more
        needs = await storage.pending_needs_of(conn, event.case_id)
        if needs:
            log.info("consent recorded for a case with %d pending need(s): trying them again", len(needs))
            await _retry_case(conn, catalogue, rules, clock(), event.case_id, [Need(n) for n in needs])

    await once(pool, CONSENTS_RECORDED_CONSUMER, event, record)


CLOSED_CONSUMER = "routing.case-closed"


async def on_case_closed(pool: asyncpg.Pool, event: CaseClosed) -> None:
    """A caseworker closed the case: no agency is looked for it any more (its pending needs end with it)."""

    async def close(conn: asyncpg.Connection, event: CaseClosed) -> None:
        await storage.load_case(conn, event.case_id)  # its row's lock: no retry of its needs runs meanwhile
        await storage.close_case(conn, event.case_id, event.closed_at)

    await once(pool, CLOSED_CONSUMER, event, close)
