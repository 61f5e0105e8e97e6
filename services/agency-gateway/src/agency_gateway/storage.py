"""SQL for delivery attempts and outcomes, for notices about referrals, and for erasure.

Of a case erased on request (`case.erased`) the gateway keeps the bare facts of each delivery and notice: ids,
agency, channel, outcome, attempt counts, the agency's HTTP status, the names (never values) of the personal items
the agency could receive, and the times — what was sent to whom and when, for accountability. The texts go: every
attempt's and notice's detail, a failure's reason and the agency's answer (free text of the agency's, which may
quote the victim). A delivery or notice recorded after the erasure is stored the same way, without its texts.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from kit.erasure import is_erased
from schemas.events import ReferralDelivered, ReferralFailed, ReferralRequested

from .channels import Notice
from .domain import Delivered, Outcome

ERASED_DETAIL = "(erased on request)"  # stands in for a detail text once its case is erased


async def record_attempt(
    db: asyncpg.Pool | asyncpg.Connection,
    referral: ReferralRequested,
    channel: str,
    attempt: int,
    outcome: Outcome,
    *,
    erased: bool,
) -> None:
    """One attempt; `erased` (the case was erased on request, as the caller found) keeps its detail text out."""
    if isinstance(outcome, Delivered):
        kind = "delivered"
    else:
        kind = "transient_failure" if outcome.transient else "permanent_failure"
    await db.execute(
        "INSERT INTO delivery_attempts (referral_id, case_id, agency_id, channel, attempt, outcome, agency_status,"
        " detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        referral.referral_id,
        referral.case_id,
        referral.agency_id,
        channel,
        attempt,
        kind,
        outcome.agency_status,
        ERASED_DETAIL if erased else outcome.detail,
    )


async def record_delivery(
    conn: asyncpg.Connection,
    outcome: ReferralDelivered | ReferralFailed,
    agency_status: int | None,
    reason: str | None,
    agency_answer: str | None = None,
    personal_items: Sequence[str] = (),
    *,
    erased: bool,
) -> None:
    """The delivery's end; a delivery replayed from the DLQ may turn a failure into a success, never the reverse.

    `personal_items`: the names of the items the agency may fetch for this referral (a Kafka-native agency does).
    `erased`: the case was erased on request (as the caller found in this transaction): no texts are kept.
    """
    if erased:
        reason = agency_answer = None
    await conn.execute(
        "INSERT INTO deliveries (referral_id, case_id, agency_id, channel, outcome, attempts, agency_status, reason,"
        " finished_at, agency_answer, personal_items) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        " ON CONFLICT (referral_id) DO UPDATE SET outcome = EXCLUDED.outcome, attempts = EXCLUDED.attempts,"
        " agency_status = EXCLUDED.agency_status, reason = EXCLUDED.reason, finished_at = EXCLUDED.finished_at,"
        " agency_answer = EXCLUDED.agency_answer, personal_items = EXCLUDED.personal_items"
        " WHERE deliveries.outcome = 'failed' AND EXCLUDED.outcome = 'delivered'",
        outcome.referral_id,
        outcome.case_id,
        outcome.agency_id,
        outcome.channel,
        "delivered" if isinstance(outcome, ReferralDelivered) else "failed",
        outcome.attempts,
        agency_status,
        reason,
        outcome.occurred_at,
        agency_answer,
        list(personal_items),
    )


async def delivered_referral(pool: asyncpg.Pool, referral_id: UUID) -> asyncpg.Record | None:
    """A referral delivered to its agency: its case, agency and the personal items the agency may fetch."""
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT case_id, agency_id, personal_items FROM deliveries WHERE referral_id = $1 AND outcome = 'delivered'",
        referral_id,
    )
    return row


async def deliveries_of_case(pool: asyncpg.Pool, case_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT referral_id, agency_id, channel, outcome, attempts, agency_status, reason, agency_answer, finished_at"
        " FROM deliveries WHERE case_id = $1 ORDER BY finished_at",
        case_id,
    )
    attempts = await pool.fetch(
        "SELECT referral_id, agency_id, channel, attempt, outcome, agency_status, detail, attempted_at"
        " FROM delivery_attempts WHERE case_id = $1 ORDER BY id",
        case_id,
    )
    by_referral: dict[UUID, list[dict[str, Any]]] = {}
    agency_of = {a["referral_id"]: (a["agency_id"], a["channel"]) for a in attempts}
    for a in attempts:
        by_referral.setdefault(a["referral_id"], []).append(
            {
                "attempt": a["attempt"],
                "outcome": a["outcome"],
                "agency_status": a["agency_status"],
                "detail": a["detail"],
                "attempted_at": a["attempted_at"].isoformat(),
            }
        )
    finished = [
        {
            **dict(r),
            "referral_id": str(r["referral_id"]),
            "finished_at": r["finished_at"].isoformat(),
            "attempt_log": by_referral.pop(r["referral_id"], []),
        }
        for r in rows
    ]
    # Referrals still being retried: attempts made, no final outcome yet.
    retrying = [
        {
            "referral_id": str(referral_id),
            "agency_id": agency_of[referral_id][0],
            "channel": agency_of[referral_id][1],
            "outcome": "retrying",
            "attempts": len(log),
            "attempt_log": log,
        }
        for referral_id, log in by_referral.items()
    ]
    return finished + retrying


# --- notices about referrals: reminders, cancellations ------------------------------------------------------


async def record_notice(
    conn: asyncpg.Connection, notice: Notice, channel: str, attempts: int, outcome: Outcome
) -> None:
    """How delivering a notice ended; a replay from the DLQ may turn a failure into a success, never the reverse."""
    await conn.execute(
        "INSERT INTO notices (event_id, referral_id, case_id, agency_id, notice_type, channel, outcome, attempts,"
        " agency_status, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (event_id) DO UPDATE SET outcome = EXCLUDED.outcome, attempts = EXCLUDED.attempts,"
        " agency_status = EXCLUDED.agency_status, detail = EXCLUDED.detail, finished_at = now()"
        " WHERE notices.outcome = 'failed' AND EXCLUDED.outcome = 'delivered'",
        notice.event_id,
        notice.referral_id,
        notice.case_id,
        notice.agency_id,
        notice.type,
        channel,
        "delivered" if isinstance(outcome, Delivered) else "failed",
        attempts,
        outcome.agency_status,
        ERASED_DETAIL if await is_erased(conn, notice.case_id) else outcome.detail,
    )


# Whether referral $1 is no longer wanted: notify's cancellation of it has reached the gateway (delivered to the
# agency or not), or routing gave its needs to another agency (`record_ended`).
CANCELLED = (
    "(EXISTS (SELECT 1 FROM notices WHERE referral_id = {0} AND notice_type = 'referral.cancelled')"
    " OR EXISTS (SELECT 1 FROM ended_referrals WHERE referral_id = {0} AND why IN ('replaced', 'cancelled')))"
)


async def was_cancelled(db: asyncpg.Pool | asyncpg.Connection, referral_id: UUID) -> bool:
    """Whether the referral is no longer wanted (CANCELLED)."""
    return bool(await db.fetchval("SELECT " + CANCELLED.format("$1"), referral_id))


@dataclass(frozen=True)
class Standing:
    """What the gateway must know of a record before it calls the agency, asked in one round trip."""

    processed: bool  # its consumer's inbox has it: delivered already
    erased: bool  # `case.erased` has come for its case
    cancelled: bool  # a referral no longer wanted (CANCELLED); always False for a notice


async def standing(
    db: asyncpg.Pool | asyncpg.Connection, inbox: str, event_id: UUID, case_id: UUID, referral_id: UUID | None
) -> Standing:
    """The record's standing, with no lock (a check before acting, as `kit.inbox.already_processed` and
    `kit.erasure.erased_already` are; the delivery's transaction checks again under its locks). `referral_id`: a
    referral's, to ask whether it was cancelled; None for a notice."""
    row = await db.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2) AS processed,"
        " EXISTS (SELECT 1 FROM erased_cases WHERE case_id = $3) AS erased,"
        " $4::uuid IS NOT NULL AND " + CANCELLED.format("$4::uuid") + " AS cancelled",
        inbox,
        event_id,
        case_id,
        referral_id,
    )
    assert row is not None
    return Standing(row["processed"], row["erased"], row["cancelled"])


async def record_ended(db: asyncpg.Pool | asyncpg.Connection, referral_id: UUID, case_id: UUID, why: str) -> None:
    """The referral is no longer open to its agency. The first reason learnt is kept, except that being replaced or
    cancelled, which stop any later delivery, wins over the agency's own decline or completion (a decline is
    followed by the rerouting that replaces it)."""
    await db.execute(
        "INSERT INTO ended_referrals (referral_id, case_id, why) VALUES ($1, $2, $3)"
        " ON CONFLICT (referral_id) DO UPDATE SET why = EXCLUDED.why"
        " WHERE EXCLUDED.why IN ('replaced', 'cancelled') AND ended_referrals.why NOT IN ('replaced', 'cancelled')",
        referral_id,
        case_id,
        why,
    )


async def why_ended(db: asyncpg.Pool | asyncpg.Connection, referral_id: UUID) -> str | None:
    """Why the referral is no longer open to its agency, or None while it is."""
    why: str | None = await db.fetchval("SELECT why FROM ended_referrals WHERE referral_id = $1", referral_id)
    return why


async def notices_of_case(pool: asyncpg.Pool, case_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT event_id, referral_id, agency_id, notice_type, channel, outcome, attempts, agency_status, detail,"
        " finished_at FROM notices WHERE case_id = $1 ORDER BY finished_at",
        case_id,
    )
    return [
        {
            **dict(r),
            "event_id": str(r["event_id"]),
            "referral_id": str(r["referral_id"]),
            "finished_at": r["finished_at"].isoformat(),
        }
        for r in rows
    ]


# --- erasure --------------------------------------------------------------------------------------------


async def forget_texts(conn: asyncpg.Connection, case_id: UUID) -> None:
    """The case's delivery and notice texts go; the facts stay (see the module's docstring for which)."""
    await conn.execute("UPDATE delivery_attempts SET detail = $2 WHERE case_id = $1", case_id, ERASED_DETAIL)
    await conn.execute("UPDATE deliveries SET reason = NULL, agency_answer = NULL WHERE case_id = $1", case_id)
    await conn.execute("UPDATE notices SET detail = $2 WHERE case_id = $1", case_id, ERASED_DETAIL)
