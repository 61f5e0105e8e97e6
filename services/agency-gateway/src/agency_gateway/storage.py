"""SQL for delivery outcomes."""

from typing import Any
from uuid import UUID

import asyncpg
from schemas.events import ReferralDelivered, ReferralFailed


async def record_delivery(
    conn: asyncpg.Connection,
    outcome: ReferralDelivered | ReferralFailed,
    agency_status: int | None,
    reason: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO deliveries (referral_id, case_id, agency_id, channel, outcome, attempts, agency_status, reason,"
        " finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (referral_id) DO NOTHING",
        outcome.referral_id,
        outcome.case_id,
        outcome.agency_id,
        outcome.channel,
        "delivered" if isinstance(outcome, ReferralDelivered) else "failed",
        outcome.attempts,
        agency_status,
        reason,
        outcome.occurred_at,
    )


async def deliveries_of_case(pool: asyncpg.Pool, case_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT referral_id, agency_id, channel, outcome, attempts, agency_status, reason, finished_at"
        " FROM deliveries WHERE case_id = $1 ORDER BY finished_at",
        case_id,
    )
    return [
        {**dict(r), "referral_id": str(r["referral_id"]), "finished_at": r["finished_at"].isoformat()} for r in rows
    ]
