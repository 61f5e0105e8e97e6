"""A referral's state changes, each in the caller's transaction: a fact placed by `domain.settle` whatever order it
arrives in (`record_fact`), a command — an agency's answer over HTTP or on its acknowledgement topic, a staff or
notify's own cancel — checked by `domain.change` and either refused, changing nothing, or applied and published on
`referral.events` through the outbox (`command`, `act`); and what follows a change: re-routing, notices, the agency
told."""

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID, uuid5

import asyncpg
from kit.erasure import is_erased
from kit.errors import Conflict, DomainError, Invalid, NotFound
from kit.inbox import first_time
from kit.outbox import add_to_outbox
from kit.unit_of_work import transaction
from schemas.events import (
    Envelope,
    ReferralCancelled,
    ReferralCompleted,
    ReferralOverdue,
    ReferralReminded,
    decode_event,
    utc_now,
)
from schemas.topics import REFERRAL_EVENTS, agency_topic
from schemas.vocab import CancelReason, ReferralState

from . import follow_ups, storage
from .context import (
    AGENCY_ANSWERS,
    EVENTS_CONSUMER,
    TARGET_STATE,
    AgencyAnswer,
    Command,
    Context,
    StateEvent,
    event_detail,
    fact_of,
)
from .domain import Change, Standing, answered_after_replay, change, revived, settle
from .erasure import without_free_text, without_note_text
from .notices import (
    News,
    ReferralNews,
    caseworker_notice,
    victim_notice,
    withheld_for_erasure,
)
from .rerouting import REROUTE_ON, request_rerouting

log = logging.getLogger(__name__)


NEWS_ON: dict[ReferralState, News] = {
    ReferralState.accepted: News.accepted,
    ReferralState.declined: News.declined,
    ReferralState.failed: News.failed,
    ReferralState.completed: News.completed,
}


async def cancel(conn: asyncpg.Connection, ctx: Context, referral_id: UUID, reason: CancelReason, note: str) -> None:
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


# --- facts: a state placed whatever order it arrives in, and what follows -------------------------------------------


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
        conn, event, {**event_detail(event), "state_change": outcome.value}, event.referral_id, event.agency_id
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
    if erased is None:
        erased = await is_erased(conn, event.case_id)
    if isinstance(event, ReferralCompleted) and not erased:  # the caseworker checks with the victim
        opened = await follow_ups.open_after(conn, ctx, event, needs)
        if opened is not None:
            await publish(conn, opened)
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
    await storage.add_to_timeline(conn, event, event_detail(event), event.referral_id, event.agency_id)


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


# --- commands: the acknowledgement API, the acknowledgement topics, staff, notify's own cancels ---------------------


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


def as_sent(event: AgencyAnswer) -> Callable[[asyncpg.Record], Command]:
    """An agency's own event, checked against the referral it names."""

    def build(row: asyncpg.Record) -> Command:
        if row["case_id"] != event.case_id:
            raise Invalid("the acknowledgement names another case than its referral's", reason="wrong_case")
        return event

    return build


async def apply_parked_acks(conn: asyncpg.Connection, ctx: Context, referral_id: UUID) -> None:
    """Answers that came on an acknowledgement topic before their referral, applied now in the order sent."""
    for parked in await storage.take_parked_acks(conn, referral_id):
        event = decode_event(bytes(parked["payload"]), AGENCY_ANSWERS)
        assert isinstance(event, AgencyAnswer)
        try:
            await command(conn, ctx, referral_id, parked["agency_id"], as_sent(event))
        except DomainError as refused:
            log.warning("a kept acknowledgement %s was refused: %s", event.event_id, refused.detail)
