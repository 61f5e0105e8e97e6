"""SQL for delivery attempts and outcomes, and for notices about referrals."""

from typing import Any
from uuid import UUID

import asyncpg
from schemas.events import ReferralDelivered, ReferralFailed, ReferralRequested

from .channels import Notice
from .domain import Delivered, Outcome


async def record_attempt(
    db: asyncpg.Pool | asyncpg.Connection, referral: ReferralRequested, channel: str, attempt: int, outcome: Outcome
) -> None:
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
        outcome.detail,
    )


async def record_delivery(
    conn: asyncpg.Connection,
    outcome: ReferralDelivered | ReferralFailed,
    agency_status: int | None,
    reason: str | None,
    agency_answer: str | None = None,
) -> None:
    """The delivery's end; a delivery replayed from the DLQ may turn a failure into a success, never the reverse."""
    await conn.execute(
        "INSERT INTO deliveries (referral_id, case_id, agency_id, channel, outcome, attempts, agency_status, reason,"
        " finished_at, agency_answer) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (referral_id) DO UPDATE SET outcome = EXCLUDED.outcome, attempts = EXCLUDED.attempts,"
        " agency_status = EXCLUDED.agency_status, reason = EXCLUDED.reason, finished_at = EXCLUDED.finished_at,"
        " agency_answer = EXCLUDED.agency_answer"
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
    )


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
        outcome.detail,
    )


async def was_cancelled(db: asyncpg.Pool | asyncpg.Connection, referral_id: UUID) -> bool:
    """Whether notify's cancellation of the referral has reached the gateway (delivered to the agency or not)."""
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM notices WHERE referral_id = $1 AND notice_type = 'referral.cancelled')",
            referral_id,
        )
    )


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
