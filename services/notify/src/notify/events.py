"""notify's consumers, each record applied in one transaction (a batch's, or its own): `case.submitted`,
`referral.events` (routing's decisions, deliveries, answers, deadlines), every agency's `acks.<agency-id>` under the
API's rules, `consent.withdrawn` and `case.closed`."""

from uuid import UUID

import asyncpg
from kit.erasure import is_erased
from kit.inbox import first_time
from kit.unit_of_work import once, transaction
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
    ReferralOverdue,
    ReferralReminded,
    current_form,
)
from schemas.topics import ack_topic
from schemas.vocab import CancelReason, ReferralState, Urgency, WithdrawalScope

from . import follow_ups, pending, plans, storage, withdrawals
from .commands import apply_parked_acks, as_sent, cancel, command, record_deadline_event, record_fact
from .context import (
    ACKS_CONSUMER,
    CASES_CONSUMER,
    CLOSED_CONSUMER,
    CONSENTS_CONSUMER,
    EVENTS_CONSUMER,
    STATE_EVENTS,
    AgencyAnswer,
    Context,
)
from .deadlines import ack_deadline
from .domain import FINAL, Fact, Standing, attention, superseded
from .erasure import E, without_free_text
from .follow_up_actions import close_with_case
from .notices import VictimReach, victim_reach
from .rerouting import REROUTE_ON, request_rerouting

# --- case.submitted -------------------------------------------------------------------------------------------------


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


# --- referral.events ------------------------------------------------------------------------------------------------


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
        await follow_ups.note_needs(conn, routed.referral_id, needs)
        state = ReferralState(row["state"])
        if not row["needs"] and state in REROUTE_ON and needs:
            # It ended before its routing was known: its needs are known only now.
            await request_rerouting(conn, event.case_id, routed.referral_id, routed.agency_id, needs, REROUTE_ON[state])
    if event.rerouted_from is not None and event.referrals:
        await storage.set_replaced_by(conn, event.rerouted_from, [r.referral_id for r in event.referrals])
        await cancel_if_superseded(conn, ctx, event.rerouted_from)
    elif event.referrals:
        await _replace_left_behind(conn, ctx, event)
    await storage.add_to_timeline(
        conn,
        event,
        event.model_dump(mode="json", include={"referrals", "decisions", "uncovered_needs", "rerouted_from"}),
    )
    await pending.note_routing(conn, event)
    await schedule_deadlines(conn, ctx, event.case_id)
    for referral_id in new:
        await apply_parked_acks(conn, ctx, referral_id)
    # Routed just before the victim withdrew their consent, or the case was closed: two questions for the case, and
    # only the referrals they concern are looked at again (not four statements for each referral).
    withdrawn = await withdrawals.agencies_withdrawn(conn, event.case_id) if event.referrals else set()
    closed = bool(event.referrals) and await pending.closed(conn, event.case_id)
    for routed in event.referrals:
        if routed.agency_id in withdrawn:
            await cancel_if_consent_withdrawn(conn, ctx, routed.referral_id)
        if closed:
            await cancel_if_case_closed(conn, ctx, routed.referral_id)


async def _replace_left_behind(conn: asyncpg.Connection, ctx: Context, event: CaseRouted) -> None:
    """A need routed again without a re-routing request naming the referral it replaces — a pending need's retry, a
    need held after its re-routing found nobody — ends what its old referral asked of the staff: a declined, failed
    or overdue referral for that need is replaced by the new one (and an overdue one cancelled, its agency told), as
    if the re-routing had found the agency at once."""
    made = {r.referral_id for r in event.referrals}
    needs = sorted({str(n) for r in event.referrals for n in r.needs})
    for row in await storage.unreplaced_of_case(conn, event.case_id, needs):
        if row["referral_id"] in made or attention(storage.summary_of(row)) is None:
            continue
        replacements = [r.referral_id for r in event.referrals if {str(n) for n in r.needs} & set(row["needs"])]
        await storage.set_replaced_by(conn, row["referral_id"], replacements)
        await cancel_if_superseded(conn, ctx, row["referral_id"])


SUPERSEDED_NOTE = "Re-routed to another agency after the acknowledgement deadline passed unanswered."


async def cancel_if_superseded(conn: asyncpg.Connection, ctx: Context, referral_id: UUID) -> None:
    """An overdue referral whose needs routing has just given to another agency is cancelled, and its agency told.

    From then on a late answer from that agency is refused (409) like any answer to a cancelled referral.
    """
    row = await storage.lock_referral(conn, referral_id)
    if row is None or not superseded(storage.summary_of(row)):
        return
    await cancel(conn, ctx, referral_id, CancelReason.deadline_breached, SUPERSEDED_NOTE)


# --- acks.<agency-id>: the API's rules on each agency's topic -------------------------------------------------------


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
    await command(conn, ctx, event.referral_id, topic_agency, as_sent(event), erased)


# --- consent.withdrawn, case.closed ---------------------------------------------------------------------------------


CONSENT_WITHDRAWN_NOTE = "The victim withdrew their consent to share their data with this agency."
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
    pending needs and open follow-ups end; the timeline says who closed it, why, and until when its data is kept."""

    async def close(conn: asyncpg.Connection, event: CaseClosed) -> None:
        detail = event.model_dump(mode="json", include={"reason", "closed_by", "retention_until"})
        await storage.add_to_timeline(conn, event, detail)
        await pending.close(conn, event)
        await close_with_case(conn, event.case_id, event.closed_by)
        for referral_id in await pending.referrals_of(conn, event.case_id):
            await cancel_if_case_closed(conn, ctx, referral_id)

    await once(pool, CLOSED_CONSUMER, event, close)


async def cancel_if_case_closed(conn: asyncpg.Connection, ctx: Context, referral_id: UUID) -> None:
    """Cancel the referral if it is still open and its case was closed (also one routed after the closing)."""
    row = await storage.lock_referral(conn, referral_id)
    if row is None or ReferralState(row["state"]) in FINAL or not await pending.closed(conn, row["case_id"]):
        return
    await cancel(conn, ctx, referral_id, CancelReason.case_closed, CASE_CLOSED_NOTE)


async def cancel_if_consent_withdrawn(conn: asyncpg.Connection, ctx: Context, referral_id: UUID) -> None:
    """Cancel the referral if it is still open and the victim withdrew their consent to its agency."""
    row = await storage.lock_referral(conn, referral_id)
    if row is None or ReferralState(row["state"]) in FINAL:
        return
    if not await withdrawals.withdrawn(conn, row["case_id"], row["agency_id"]):
        return
    await cancel(conn, ctx, referral_id, CancelReason.consent_withdrawn, CONSENT_WITHDRAWN_NOTE)
