"""Acknowledgement deadlines that act: a reminder to the agency (on its own topic, so its channel carries it), then,
past the deadline, escalation.

Timers are rows in PostgreSQL. Every notify replica polls for due ones with `FOR UPDATE SKIP LOCKED`, so each
timer is claimed by one replica and fires once; one that fell due while notify was down fires when it is back.
Firing and its effects (the event, the caseworker's notice, the re-routing request) commit together. A timer that
fired is purged after `TIMER_RETENTION_DAYS` (`finished_timers`): a referral's timers are armed once, when its deadline
is set (`referrals.ack_due_at`, never unset), so nothing arms it again.
"""

import logging
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
from kit.db import UNAVAILABLE_ERRORS
from kit.logs import log_context
from kit.retention import Purge
from schemas.events import ReferralOverdue, ReferralReminded
from schemas.vocab import ReferralState, ReroutingCause

from . import storage
from .commands import publish, record_deadline_event, tell, tell_agency
from .context import Context
from .deadlines import reminder_still_useful
from .domain import AWAITING_ACK
from .notices import News, ReferralNews
from .rerouting import request_rerouting

log = logging.getLogger(__name__)


def finished_timers(keep: timedelta) -> Purge:
    """Timers that fired (or were skipped, or failed: `fired_at` is set on each) longer ago than `keep`."""
    return Purge("timers", "fired_at IS NOT NULL AND fired_at < $1", keep)


async def fire_due_timers(pool: asyncpg.Pool, ctx: Context, batch: int = 50) -> int:
    """Fire the timers due now that no other replica holds; how many were handled."""
    async with pool.acquire() as conn, conn.transaction():
        now: datetime = await conn.fetchval("SELECT now()")
        timers = await storage.claim_due_timers(conn, batch)
        for timer in timers:
            with log_context(referral_id=timer["referral_id"]):
                try:
                    async with conn.transaction():  # a savepoint: one timer's failure does not hold up the others
                        outcome = await _fire(conn, ctx, timer["kind"], timer["referral_id"], now)
                except UNAVAILABLE_ERRORS:
                    raise  # the database is away: the whole round is retried
                except Exception as error:
                    log.exception("a %s timer could not fire", timer["kind"])
                    outcome = f"failed: {type(error).__name__}"
                await storage.finish_timer(conn, timer["id"], outcome)
                log.info("%s timer: %s", timer["kind"], outcome)
        return len(timers)


async def _fire(conn: asyncpg.Connection, ctx: Context, kind: str, referral_id: UUID, now: datetime) -> str:
    referral = await storage.lock_referral(conn, referral_id)
    assert referral is not None
    if ReferralState(referral["state"]) not in AWAITING_ACK:
        return "skipped: answered"
    due_at: datetime = referral["ack_due_at"]
    common = {
        "case_id": referral["case_id"],
        "producer": "notify",
        "referral_id": referral["referral_id"],
        "agency_id": referral["agency_id"],
        "deadline": due_at,
    }
    if kind == "reminder":
        if not reminder_still_useful(now, due_at):
            return "skipped: past the deadline"
        reminder = ReferralReminded(**common)
        await record_deadline_event(conn, reminder)
        await publish(conn, reminder)
        await tell_agency(conn, reminder)
        return "fired"
    overdue = ReferralOverdue(**common)
    await record_deadline_event(conn, overdue)
    await publish(conn, overdue)
    news = ReferralNews(
        what=News.deadline_breached,
        case_id=overdue.case_id,
        referral_id=overdue.referral_id,
        agency_id=overdue.agency_id,
        agency_name=ctx.agency_name(overdue.agency_id),
        deadline=due_at,
    )
    await tell(conn, ctx, news, overdue.event_id)
    if referral["needs"]:
        await request_rerouting(
            conn,
            overdue.case_id,
            overdue.referral_id,
            overdue.agency_id,
            list(referral["needs"]),
            ReroutingCause.deadline_breached,
        )
    return "fired"
