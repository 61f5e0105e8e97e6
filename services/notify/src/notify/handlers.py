"""Applying events to referral states and the timeline, from Kafka and from the acknowledgement API."""

from collections.abc import Callable
from typing import Any
from uuid import UUID

import asyncpg
from kit.inbox import first_time
from kit.outbox import add_to_outbox
from schemas.events import (
    CaseRouted,
    CaseSubmitted,
    Envelope,
    ReferralAccepted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralFailed,
    ReroutingRequested,
)
from schemas.topics import REFERRAL_EVENTS, REFERRAL_REROUTING
from schemas.vocab import ReferralState, ReroutingCause

from . import storage
from .domain import Change, change

EVENTS_CONSUMER = "notify.referral-events"
CASES_CONSUMER = "notify.case-submitted"

ReferralEvent = ReferralDelivered | ReferralFailed | ReferralAccepted | ReferralDeclined

TARGET_STATE: dict[type[Envelope], ReferralState] = {
    ReferralDelivered: ReferralState.delivered,
    ReferralFailed: ReferralState.failed,
    ReferralAccepted: ReferralState.accepted,
    ReferralDeclined: ReferralState.declined,
}


def _detail(event: ReferralEvent) -> dict[str, Any]:
    return event.model_dump(
        mode="json", exclude={"event_id", "occurred_at", "case_id", "producer", "referral_id", "agency_id"}
    )


async def on_case_submitted(pool: asyncpg.Pool, event: CaseSubmitted) -> None:
    case = event.case
    detail = {
        "crime_type": case.crime_type,
        "urgency": case.urgency,
        "needs": case.needs,
        "intake_channel": case.intake_channel,
    }
    async with pool.acquire() as conn, conn.transaction():
        if await first_time(conn, CASES_CONSUMER, event.event_id):
            await storage.add_to_timeline(conn, event, detail)


async def on_referral_event(pool: asyncpg.Pool, event: Envelope) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if not await first_time(conn, EVENTS_CONSUMER, event.event_id):
            return
        if isinstance(event, CaseRouted):
            for r in event.referrals:
                await storage.ensure_referral(
                    conn, r.referral_id, event.case_id, r.agency_id, list(r.needs), event.occurred_at
                )
            await storage.add_to_timeline(
                conn,
                event,
                event.model_dump(mode="json", include={"referrals", "decisions", "uncovered_needs", "rerouted_from"}),
            )
        elif isinstance(event, ReferralDelivered | ReferralFailed | ReferralAccepted | ReferralDeclined):
            await storage.ensure_referral(
                conn, event.referral_id, event.case_id, event.agency_id, [], event.occurred_at
            )
            await record_transition(conn, event)


async def record_transition(conn: asyncpg.Connection, event: ReferralEvent) -> Change:
    """Apply the event's state change if the state machine allows it; the timeline records it either way."""
    row = await storage.lock_referral(conn, event.referral_id)
    assert row is not None
    target = TARGET_STATE[type(event)]
    outcome = change(ReferralState(row["state"]), target)
    if outcome is Change.applied:
        reason = event.reason if isinstance(event, ReferralFailed | ReferralDeclined) else None
        await storage.set_state(conn, event.referral_id, target, reason, event.occurred_at)
    await storage.add_to_timeline(
        conn, event, {**_detail(event), "state_change": outcome.value}, event.referral_id, event.agency_id
    )
    if outcome is Change.applied and target in _REROUTE_ON and row["needs"]:
        await request_rerouting(conn, event, list(row["needs"]), _REROUTE_ON[target])
    return outcome


# A referral that ends without help leaves its needs unmet: routing looks for the next agency.
_REROUTE_ON: dict[ReferralState, ReroutingCause] = {
    ReferralState.declined: ReroutingCause.declined,
    ReferralState.failed: ReroutingCause.delivery_failed,
}


async def request_rerouting(
    conn: asyncpg.Connection, ended: ReferralEvent, needs: list[str], cause: ReroutingCause
) -> None:
    request = ReroutingRequested(
        case_id=ended.case_id,
        producer="notify",
        referral_id=ended.referral_id,
        agency_id=ended.agency_id,
        needs=needs,
        cause=cause,
    )
    await storage.add_to_timeline(
        conn, request, {"needs": needs, "cause": cause.value}, ended.referral_id, ended.agency_id
    )
    await add_to_outbox(conn, REFERRAL_REROUTING, request)


class AckRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def acknowledge(
    pool: asyncpg.Pool,
    referral_id: UUID,
    agency_id: str,
    answer: Callable[[UUID], ReferralAccepted | ReferralDeclined],
) -> tuple[Change, ReferralState]:
    """An agency's answer: change the state, record it and publish it in one transaction, or refuse.

    `answer` builds the event once the referral's case is known.
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await storage.lock_referral(conn, referral_id)
        if row is None:
            raise AckRefused(404, f"no referral {referral_id}")
        if row["agency_id"] != agency_id:
            raise AckRefused(403, "this referral was sent to another agency")
        event = answer(row["case_id"])
        current, target = ReferralState(row["state"]), TARGET_STATE[type(event)]
        outcome = change(current, target)
        if outcome is Change.duplicate:
            return outcome, current
        if outcome is not Change.applied:
            raise AckRefused(409, f"the referral is {current}; it cannot become {target}")
        await record_transition(conn, event)
        # Our own event comes back from Kafka: mark it seen so it is not applied twice.
        await first_time(conn, EVENTS_CONSUMER, event.event_id)
        await add_to_outbox(conn, REFERRAL_EVENTS, event)
        return outcome, target
