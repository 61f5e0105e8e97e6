"""Applying events and commands to referrals, each in one transaction: state, timeline, deadlines, notices, re-routing.

Facts (events from Kafka) are placed by `domain.settle`, whatever order they arrive in. Commands (an agency's
answer over HTTP or its acknowledgement topic, a staff cancel) are checked by `domain.change` and either refused,
changing nothing, or applied and published on `referral.events` through the outbox.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid5

import asyncpg
from kit.erasure import is_erased
from kit.errors import Conflict, DomainError, Invalid, NotFound
from kit.inbox import first_time
from kit.outbox import add_to_outbox
from kit.unit_of_work import once, transaction
from schemas.catalogue import Agency, OpeningHours
from schemas.events import (
    CaseClosed,
    CasePlanned,
    CaseRouted,
    CaseSubmitted,
    CaseSubmittedV1,
    ConsentWithdrawn,
    Envelope,
    EventRejected,
    NeedClosed,
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralFailed,
    ReferralOverdue,
    ReferralReminded,
    ReferralStarted,
    ReroutingRequested,
    current_form,
    decode_event,
    utc_now,
)
from schemas.topics import REFERRAL_EVENTS, REFERRAL_REROUTING, ack_topic, agency_topic
from schemas.vocab import CancelReason, ReferralState, ReroutingCause, Urgency, WithdrawalScope

from . import pending, plans, storage, withdrawals
from .deadlines import ack_deadline
from .domain import FINAL, Change, Fact, Standing, answered_after_replay, change, revived, settle, superseded
from .erasure import E, without_free_text, without_note_text
from .notices import (
    News,
    ReferralNews,
    VictimReach,
    caseworker_notice,
    victim_notice,
    victim_reach,
    withheld_for_erasure,
)

log = logging.getLogger(__name__)

EVENTS_CONSUMER = "notify.referral-events"
CASES_CONSUMER = "notify.case-submitted"
ACKS_CONSUMER = "notify.acks"

StateEvent = (
    ReferralDelivered
    | ReferralFailed
    | ReferralAccepted
    | ReferralDeclined
    | ReferralStarted
    | ReferralCompleted
    | ReferralCancelled
)
AgencyAnswer = ReferralAccepted | ReferralDeclined | ReferralStarted | ReferralCompleted
Command = AgencyAnswer | ReferralCancelled

TARGET_STATE: dict[type[Envelope], ReferralState] = {
    ReferralDelivered: ReferralState.delivered,
    ReferralFailed: ReferralState.failed,
    ReferralAccepted: ReferralState.accepted,
    ReferralDeclined: ReferralState.declined,
    ReferralStarted: ReferralState.in_progress,
    ReferralCompleted: ReferralState.completed,
    ReferralCancelled: ReferralState.cancelled,
}
STATE_EVENTS: tuple[type[Envelope], ...] = tuple(TARGET_STATE)
AGENCY_ANSWERS: tuple[type[Envelope], ...] = (ReferralAccepted, ReferralDeclined, ReferralStarted, ReferralCompleted)
# What notify reads on referral.events: routing's decisions, the gateway's deliveries, every state change.
REFERRAL_EVENT_TYPES: tuple[type[Envelope], ...] = (
    CaseRouted,
    *STATE_EVENTS,
    ReferralReminded,
    ReferralOverdue,
    NeedClosed,
    CasePlanned,
)

# A referral that ends without help leaves its needs unmet: routing looks for the next agency.
REROUTE_ON: dict[ReferralState, ReroutingCause] = {
    ReferralState.declined: ReroutingCause.declined,
    ReferralState.failed: ReroutingCause.delivery_failed,
}
NEWS_ON: dict[ReferralState, News] = {
    ReferralState.accepted: News.accepted,
    ReferralState.declined: News.declined,
    ReferralState.failed: News.failed,
    ReferralState.completed: News.completed,
}


@dataclass(frozen=True)
class Context:
    """What applying events needs beyond the database: the catalogue's agencies and the deadline settings."""

    agencies: Mapping[str, Agency] = field(default_factory=dict)
    public_holidays: frozenset[date] = frozenset()  # agencies' deadlines do not count them (catalogue/holidays.toml)
    hour_seconds: float = 3600.0
    remind_at_fraction: float = 0.75
    staff_link_base: str = "http://127.0.0.1:8004"

    def agency_name(self, agency_id: str) -> str:
        agency = self.agencies.get(agency_id)
        return agency_id if agency is None else f"{agency.name_en} ({agency.name_ko})"

    def agency_hours(self, agency_id: str) -> Mapping[Urgency, int]:
        agency = self.agencies.get(agency_id)
        return {} if agency is None else agency.ack_hours

    def opening_hours(self, agency_id: str) -> OpeningHours | None:
        agency = self.agencies.get(agency_id)
        return None if agency is None else agency.hours

    def status_url(self, case_id: UUID) -> str:
        return f"{self.staff_link_base.rstrip('/')}/cases/{case_id}/status"


def fact_of(event: StateEvent) -> Fact:
    reason = getattr(event, "reason", None)
    outcome = event.outcome if isinstance(event, ReferralCompleted) else None
    return Fact(
        state=TARGET_STATE[type(event)],
        occurred_at=event.occurred_at,
        event_id=event.event_id,
        reason=None if reason is None else str(reason),
        outcome=None if outcome is None else str(outcome),
    )


def _detail(event: Envelope) -> dict[str, Any]:
    return event.model_dump(
        mode="json", exclude={"event_id", "occurred_at", "case_id", "producer", "referral_id", "agency_id"}
    )


# --- Kafka: case.submitted ------------------------------------------------------------------------------------


async def on_case_submitted(pool: asyncpg.Pool, ctx: Context, submitted: CaseSubmitted | CaseSubmittedV1) -> None:
    async with transaction(pool) as conn:
        await apply_case_submitted(conn, ctx, submitted)


async def apply_case_submitted(
    conn: asyncpg.Connection, ctx: Context, submitted: CaseSubmitted | CaseSubmittedV1
) -> None:
    """Record the case's urgency, caseworker and the victim's contact rules (never an address: intake keeps it).
    In the caller's transaction (a batch's, say), inbox check included."""
    event = current_form(submitted)
    case = event.case
    detail = {
        "crime_type": case.crime_type,
        "urgency": case.urgency,
        "needs": case.needs,
        "intake_channel": case.intake_channel,
        "region": case.region,  # coarse routing facts, for the reports' unmet needs by region and language
        "language": case.language,
    }
    if not await first_time(conn, CASES_CONSUMER, event.event_id):
        return
    await storage.add_to_timeline(conn, event, detail)
    # case.erased travels on its own topic and may come first: then the rules are not kept at all.
    erased = await is_erased(conn, event.case_id)
    reach = VictimReach(True, None, None) if erased else victim_reach(case.contact_rules)
    await storage.save_case(conn, event.case_id, case.urgency, case.caseworker, reach, event.occurred_at)
    await schedule_deadlines(conn, ctx, event.case_id)


async def schedule_deadlines(conn: asyncpg.Connection, ctx: Context, case_id: UUID) -> None:
    """Give each requested referral of the case its deadline, once both the case and its routing are known."""
    case = await storage.load_case(conn, case_id)
    if case is None:
        return  # case.submitted is still on its way; it schedules them when it comes
    urgency = Urgency(case["urgency"])
    for referral in await storage.referrals_without_deadline(conn, case_id):
        deadline = ack_deadline(
            referral["requested_at"],
            urgency,
            ctx.agency_hours(referral["agency_id"]),
            opening=ctx.opening_hours(referral["agency_id"]),
            holidays=ctx.public_holidays,
            hour_seconds=ctx.hour_seconds,
            remind_at_fraction=ctx.remind_at_fraction,
        )
        await storage.schedule_deadline(conn, referral["referral_id"], deadline)


# --- Kafka: referral.events -----------------------------------------------------------------------------------


async def on_referral_event(pool: asyncpg.Pool, ctx: Context, event: Envelope) -> None:
    async with transaction(pool) as conn:
        await apply_referral_event(conn, ctx, event)


async def apply_referral_event(conn: asyncpg.Connection, ctx: Context, event: Envelope) -> None:
    """A routing decision, a delivery, an answer or a deadline event, in the caller's transaction."""
    if not await first_time(conn, EVENTS_CONSUMER, event.event_id):
        return
    event, erased = await _as_kept(conn, event)
    if isinstance(event, CaseRouted):
        await _on_routed(conn, ctx, event)
    elif isinstance(event, ReferralReminded | ReferralOverdue):
        await record_deadline_event(conn, event)
    elif isinstance(event, CasePlanned):
        await plans.on_planned(conn, event)
    elif isinstance(event, NeedClosed):
        await pending.on_need_closed(conn, event)
    elif isinstance(event, STATE_EVENTS):
        await record_fact(conn, ctx, event, erased=erased)  # type: ignore[arg-type]


async def _as_kept(conn: asyncpg.Connection, event: E) -> tuple[E, bool]:
    """The event as notify may keep it — without its free text once its case is erased — and whether it is.

    The answer holds to the end of the transaction (`is_erased` keeps its lock): pass it on, not ask again.
    """
    erased = await is_erased(conn, event.case_id)
    return (without_free_text(event) if erased else event), erased


async def _on_routed(conn: asyncpg.Connection, ctx: Context, event: CaseRouted) -> None:
    new: list[UUID] = []
    for routed in event.referrals:
        row = await storage.lock_referral(conn, routed.referral_id)
        needs = [str(n) for n in routed.needs]
        if row is None:
            requested = Standing.of(Fact(ReferralState.requested, event.occurred_at, event.event_id))
            await storage.insert_referral(
                conn, routed.referral_id, event.case_id, routed.agency_id, needs, requested, event.occurred_at
            )
            new.append(routed.referral_id)
            continue
        await storage.note_routing(conn, routed.referral_id, needs, event.occurred_at)
        state = ReferralState(row["state"])
        if not row["needs"] and state in REROUTE_ON and needs:
            # It ended before its routing was known: its needs are known only now.
            await request_rerouting(conn, event.case_id, routed.referral_id, routed.agency_id, needs, REROUTE_ON[state])
    if event.rerouted_from is not None and event.referrals:
        await storage.set_replaced_by(conn, event.rerouted_from, [r.referral_id for r in event.referrals])
        await cancel_if_superseded(conn, ctx, event.rerouted_from)
    await storage.add_to_timeline(
        conn,
        event,
        event.model_dump(mode="json", include={"referrals", "decisions", "uncovered_needs", "rerouted_from"}),
    )
    await pending.note_routing(conn, event)
    await schedule_deadlines(conn, ctx, event.case_id)
    for referral_id in new:
        await apply_parked_acks(conn, ctx, referral_id)
    for routed in event.referrals:  # routed just before the victim withdrew their consent, or the case was closed
        await cancel_if_consent_withdrawn(conn, ctx, routed.referral_id)
        await cancel_if_case_closed(conn, ctx, routed.referral_id)


SUPERSEDED_NOTE = "Re-routed to another agency after the acknowledgement deadline passed unanswered."


async def cancel_if_superseded(conn: asyncpg.Connection, ctx: Context, referral_id: UUID) -> None:
    """An overdue referral whose needs routing has just given to another agency is cancelled, and its agency told.

    From then on a late answer from that agency is refused (409) like any answer to a cancelled referral.
    """
    row = await storage.lock_referral(conn, referral_id)
    if row is None or not superseded(storage.summary_of(row)):
        return
    await _cancel(conn, ctx, referral_id, CancelReason.deadline_breached, SUPERSEDED_NOTE)


async def _cancel(conn: asyncpg.Connection, ctx: Context, referral_id: UUID, reason: CancelReason, note: str) -> None:
    """Notify's own cancellation of a referral: on `referral.events`, and to its agency through its topic."""

    def build(row: asyncpg.Record) -> Command:
        return ReferralCancelled(
            case_id=row["case_id"],
            producer="notify",
            referral_id=row["referral_id"],
            agency_id=row["agency_id"],
            reason=reason,
            note=note,
        )

    await command(conn, ctx, referral_id, None, build)


async def record_fact(
    conn: asyncpg.Connection,
    ctx: Context,
    event: StateEvent,
    locked: asyncpg.Record | None = None,
    erased: bool | None = None,
) -> Change:
    """Place the event's state by `settle`; the timeline records it either way, with what it changed.

    `locked` is the referral's row when the caller holds its lock already (a command): not read a second time.
    `erased`: whether the case is erased, when the caller asked in this transaction already.
    """
    row = locked if locked is not None else await storage.lock_referral(conn, event.referral_id)
    fact = fact_of(event)
    if row is None:
        standing, outcome = settle(None, fact)
        await storage.insert_referral(conn, event.referral_id, event.case_id, event.agency_id, [], standing, None)
        needs: list[str] = []
    else:
        current = storage.standing_of(row)
        if revived(current, fact, replaced=bool(row["replaced_by"])):
            standing, outcome = Standing.of(fact), Change.applied
        else:
            standing, outcome = settle(current, fact)
        if standing != current:
            await storage.save_standing(conn, event.referral_id, standing)
        needs = list(row["needs"])
    await storage.add_to_timeline(
        conn, event, {**_detail(event), "state_change": outcome.value}, event.referral_id, event.agency_id
    )
    if outcome is Change.applied:
        await _consequences(conn, ctx, event, needs, row["ack_due_at"] if row is not None else None, erased)
    if row is None:
        await apply_parked_acks(conn, ctx, event.referral_id)
    return outcome


async def _consequences(
    conn: asyncpg.Connection,
    ctx: Context,
    event: StateEvent,
    needs: list[str],
    deadline: datetime | None,
    erased: bool | None,
) -> None:
    state = TARGET_STATE[type(event)]
    if state in REROUTE_ON and needs:
        await request_rerouting(conn, event.case_id, event.referral_id, event.agency_id, needs, REROUTE_ON[state])
    if state in NEWS_ON:
        reason = getattr(event, "reason", None)
        news = ReferralNews(
            what=NEWS_ON[state],
            case_id=event.case_id,
            referral_id=event.referral_id,
            agency_id=event.agency_id,
            agency_name=ctx.agency_name(event.agency_id),
            reason=None if reason is None else str(reason),
            outcome=str(event.outcome) if isinstance(event, ReferralCompleted) else None,
            deadline=deadline,
        )
        await tell(conn, ctx, news, event.event_id, erased)


async def record_deadline_event(conn: asyncpg.Connection, event: ReferralReminded | ReferralOverdue) -> None:
    if isinstance(event, ReferralReminded):
        await storage.mark_reminded(conn, event.referral_id, event.occurred_at)
    else:
        await storage.mark_overdue(conn, event.referral_id, event.occurred_at)
    await storage.add_to_timeline(conn, event, _detail(event), event.referral_id, event.agency_id)


async def tell(
    conn: asyncpg.Connection, ctx: Context, news: ReferralNews, cause: UUID, erased: bool | None = None
) -> None:
    """Queue the caseworker's and the victim's notices about `news`, once per causing event and recipient
    (`erased`: as for `record_fact`)."""
    case = await storage.load_case(conn, news.case_id)
    now = utc_now()
    caseworker_email = None if case is None else case["caseworker_email"]
    notices = (
        caseworker_notice(news, caseworker_email, now, ctx.status_url(news.case_id)),
        victim_notice(news, storage.victim_reach_of(case), now),
    )
    if erased is None:
        erased = await is_erased(conn, news.case_id)
    for notice in notices:
        if notice is not None:
            kept = withheld_for_erasure(notice) if erased else notice
            await storage.queue_notice(conn, f"{cause}:{notice.recipient}", news, kept)


async def request_rerouting(
    conn: asyncpg.Connection, case_id: UUID, referral_id: UUID, agency_id: str, needs: list[str], cause: ReroutingCause
) -> None:
    request = ReroutingRequested(
        case_id=case_id,
        producer="notify",
        referral_id=referral_id,
        agency_id=agency_id,
        needs=needs,
        cause=cause,
    )
    await storage.add_to_timeline(conn, request, {"needs": needs, "cause": cause.value}, referral_id, agency_id)
    await add_to_outbox(conn, REFERRAL_REROUTING, request)


async def publish(conn: asyncpg.Connection, event: Envelope) -> None:
    """Publish an event notify decided; when it comes back from Kafka it is already applied, so mark it seen."""
    await first_time(conn, EVENTS_CONSUMER, event.event_id)
    await add_to_outbox(conn, REFERRAL_EVENTS, without_note_text(event))


def agency_copy(event: ReferralReminded | ReferralCancelled) -> ReferralReminded | ReferralCancelled:
    """The event as its agency gets it. The outbox holds each event id once, so this copy has an id of its own,
    derived from the original's: the same on every try, and the agency's idempotency key for the notice."""
    return without_note_text(event).model_copy(
        update={"event_id": uuid5(event.event_id, agency_topic(event.agency_id))}
    )


async def tell_agency(conn: asyncpg.Connection, event: ReferralReminded | ReferralCancelled) -> None:
    """Put a notice about a referral on its agency's topic, behind the referral: the agency's gateway delivers it
    through the agency's channel, and a Kafka-native agency reads it there itself."""
    await add_to_outbox(conn, agency_topic(event.agency_id), agency_copy(event))


# --- commands: the acknowledgement API, the acknowledgement topics, staff --------------------------------------


async def command(
    conn: asyncpg.Connection,
    ctx: Context,
    referral_id: UUID,
    by_agency: str | None,
    build: Callable[[asyncpg.Record], Command],
    erased: bool | None = None,
) -> tuple[Change, ReferralState]:
    """Apply a command if the state machine allows it, or refuse it before changing anything (NotFound, Conflict).

    `by_agency` is the agency acting (None for staff); `build` makes the event from the locked referral's row;
    `erased` as for `record_fact`.
    """
    row = await storage.lock_referral(conn, referral_id)
    # Another agency's referral is answered exactly as one that does not exist: an agency learns nothing of where
    # else the victim was referred.
    if row is None:
        raise NotFound(f"no referral {referral_id}", reason="unknown_referral")
    if by_agency is not None and row["agency_id"] != by_agency:
        raise NotFound(f"no referral {referral_id}", reason="wrong_agency")
    event = build(row)
    if erased is None:
        erased = await is_erased(conn, event.case_id)
    if erased:
        event = without_free_text(event)
    current, target = ReferralState(row["state"]), TARGET_STATE[type(event)]
    if by_agency is not None and answered_after_replay(current, target, replaced=bool(row["replaced_by"])):
        current = ReferralState.delivered
    outcome = change(current, target)
    if outcome is Change.duplicate:
        return outcome, current
    if outcome is not Change.applied:
        raise Conflict(f"the referral is {current}; it cannot become {target}", reason="transition_refused")
    await record_fact(conn, ctx, event, locked=row, erased=erased)
    await publish(conn, event)
    if isinstance(event, ReferralCancelled):
        await tell_agency(conn, event)
    return outcome, target


async def act(
    pool: asyncpg.Pool,
    ctx: Context,
    referral_id: UUID,
    by_agency: str | None,
    build: Callable[[asyncpg.Record], Command],
    also: Callable[[asyncpg.Connection, Command], Awaitable[None]] | None = None,
) -> tuple[Change, ReferralState]:
    """A command over HTTP: changed, recorded and published in one transaction with `also` (the access log's row,
    given the command's event), or refused with nothing changed. The acknowledgement topics apply the same
    `command` in their batch's transaction."""
    built: list[Command] = []

    def build_and_keep(row: asyncpg.Record) -> Command:
        built.append(build(row))  # for `also`, without reading the referral again
        return built[-1]

    async with transaction(pool) as conn:
        done = await command(conn, ctx, referral_id, by_agency, build_and_keep)
        if also is not None:
            await also(conn, built[-1])
    return done


def _as_sent(event: AgencyAnswer) -> Callable[[asyncpg.Record], Command]:
    """An agency's own event, checked against the referral it names."""

    def build(row: asyncpg.Record) -> Command:
        if row["case_id"] != event.case_id:
            raise Invalid("the acknowledgement names another case than its referral's", reason="wrong_case")
        return event

    return build


async def on_agency_ack(pool: asyncpg.Pool, ctx: Context, topic_agency: str, event: AgencyAnswer) -> None:
    async with transaction(pool) as conn:
        await apply_agency_ack(conn, ctx, topic_agency, event)


async def apply_agency_ack(conn: asyncpg.Connection, ctx: Context, topic_agency: str, event: AgencyAnswer) -> None:
    """An answer on `acks.<agency-id>`, in the caller's transaction: the API's rules (`command`); what they refuse
    is rejected — the caller rolls back, and the consumer sends the record to the topic's DLQ with the refusal's
    reason (kit/batches.py)."""
    if event.agency_id != topic_agency:
        raise EventRejected("wrong_agency", f"answers on {ack_topic(topic_agency)} must come from {topic_agency}")
    if not await first_time(conn, ACKS_CONSUMER, event.event_id):
        return
    event, erased = await _as_kept(conn, event)
    if await storage.lock_referral(conn, event.referral_id) is None:
        # Its case.routed has not reached notify yet: kept until it does.
        await storage.park_ack(conn, event, event.referral_id, topic_agency)
        return
    await command(conn, ctx, event.referral_id, topic_agency, _as_sent(event), erased)


async def apply_parked_acks(conn: asyncpg.Connection, ctx: Context, referral_id: UUID) -> None:
    """Answers that came on an acknowledgement topic before their referral, applied now in the order sent."""
    for parked in await storage.take_parked_acks(conn, referral_id):
        event = decode_event(bytes(parked["payload"]), AGENCY_ANSWERS)
        assert isinstance(event, AgencyAnswer)
        try:
            await command(conn, ctx, referral_id, parked["agency_id"], _as_sent(event))
        except DomainError as refused:
            log.warning("a kept acknowledgement %s was refused: %s", event.event_id, refused.detail)


# --- Kafka: consent.withdrawn ---------------------------------------------------------------------------------

CONSENTS_CONSUMER = "notify.consent-withdrawn"
CONSENT_WITHDRAWN_NOTE = "The victim withdrew their consent to share their data with this agency."
CLOSED_CONSUMER = "notify.case-closed"
CASE_CLOSED_NOTE = "The centre closed the case."


async def on_consent_withdrawn(pool: asyncpg.Pool, ctx: Context, event: ConsentWithdrawn) -> None:
    """The victim withdrew their consent to an agency: each open referral of the case to it is cancelled and the
    agency told, as a staff cancel is. A withdrawal of the sensitive items' consent only leaves the referrals standing
    (intake gives the agency no sensitive item any more); both go in the case's timeline."""

    async def withdraw(conn: asyncpg.Connection, event: ConsentWithdrawn) -> None:
        await storage.add_to_timeline(conn, event, {"scope": event.scope.value}, None, event.agency_id)
        if event.scope is not WithdrawalScope.all:
            return
        await withdrawals.record(conn, event.case_id, event.agency_id, event.withdrawn_at)
        for referral_id in await withdrawals.referrals_to(conn, event.case_id, event.agency_id):
            await cancel_if_consent_withdrawn(conn, ctx, referral_id)

    await once(pool, CONSENTS_CONSUMER, event, withdraw)


async def on_case_closed(pool: asyncpg.Pool, ctx: Context, event: CaseClosed) -> None:
    """A caseworker closed the case: each open referral is cancelled and its agency told, as a staff cancel is; its
    pending needs end; the timeline says who closed it, why, and until when its data is kept."""

    async def close(conn: asyncpg.Connection, event: CaseClosed) -> None:
        detail = event.model_dump(mode="json", include={"reason", "closed_by", "retention_until"})
        await storage.add_to_timeline(conn, event, detail)
        await pending.close(conn, event)
        for referral_id in await pending.referrals_of(conn, event.case_id):
            await cancel_if_case_closed(conn, ctx, referral_id)

    await once(pool, CLOSED_CONSUMER, event, close)


async def cancel_if_case_closed(conn: asyncpg.Connection, ctx: Context, referral_id: UUID) -> None:
    """Cancel the referral if it is still open and its case was closed (also one routed after the closing)."""
    row = await storage.lock_referral(conn, referral_id)
    if row is None or ReferralState(row["state"]) in FINAL or not await pending.closed(conn, row["case_id"]):
        return
    await _cancel(conn, ctx, referral_id, CancelReason.case_closed, CASE_CLOSED_NOTE)


async def cancel_if_consent_withdrawn(conn: asyncpg.Connection, ctx: Context, referral_id: UUID) -> None:
    """Cancel the referral if it is still open and the victim withdrew their consent to its agency."""
    row = await storage.lock_referral(conn, referral_id)
    if row is None or ReferralState(row["state"]) in FINAL:
        return
    if not await withdrawals.withdrawn(conn, row["case_id"], row["agency_id"]):
        return
    await _cancel(conn, ctx, referral_id, CancelReason.consent_withdrawn, CONSENT_WITHDRAWN_NOTE)
