"""SQL for referral states and the case timeline."""

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from schemas.events import Envelope
from schemas.vocab import ReferralState


async def add_to_timeline(
    conn: asyncpg.Connection,
    event: Envelope,
    detail: dict[str, Any],
    referral_id: UUID | None = None,
    agency_id: str | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO timeline (case_id, event_id, event_type, occurred_at, producer, referral_id, agency_id, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING",
        event.case_id,
        event.event_id,
        event.type,
        event.occurred_at,
        event.producer,
        referral_id,
        agency_id,
        detail,
    )


async def ensure_referral(
    conn: asyncpg.Connection, referral_id: UUID, case_id: UUID, agency_id: str, needs: list[str], at: datetime
) -> None:
    """Create the referral in `requested` unless known; events about it may arrive before case.routed."""
    await conn.execute(
        "INSERT INTO referrals (referral_id, case_id, agency_id, needs, state, state_changed_at)"
        " VALUES ($1, $2, $3, $4, 'requested', $5)"
        " ON CONFLICT (referral_id) DO UPDATE SET needs = EXCLUDED.needs WHERE cardinality(referrals.needs) = 0",
        referral_id,
        case_id,
        agency_id,
        needs,
        at,
    )


async def lock_referral(conn: asyncpg.Connection, referral_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM referrals WHERE referral_id = $1 FOR UPDATE", referral_id)


async def set_state(
    conn: asyncpg.Connection, referral_id: UUID, state: ReferralState, reason: str | None, at: datetime
) -> None:
    await conn.execute(
        "UPDATE referrals SET state = $2, reason = $3, state_changed_at = $4 WHERE referral_id = $1",
        referral_id,
        state,
        reason,
        at,
    )


def _referral(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "referral_id": str(row["referral_id"]),
        "case_id": str(row["case_id"]),
        "agency_id": row["agency_id"],
        "needs": row["needs"],
        "state": row["state"],
        "reason": row["reason"],
        "state_changed_at": row["state_changed_at"].isoformat(),
    }


async def load_referral(pool: asyncpg.Pool, referral_id: UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow("SELECT * FROM referrals WHERE referral_id = $1", referral_id)
    return None if row is None else _referral(row)


async def referrals_of_case(pool: asyncpg.Pool, case_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM referrals WHERE case_id = $1 ORDER BY agency_id", case_id)
    return [_referral(r) for r in rows]


async def timeline_of_case(pool: asyncpg.Pool, case_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT event_id, event_type, occurred_at, recorded_at, producer, referral_id, agency_id, detail"
        " FROM timeline WHERE case_id = $1 ORDER BY occurred_at, id",
        case_id,
    )
    return [
        {
            "event_id": str(r["event_id"]),
            "type": r["event_type"],
            "occurred_at": r["occurred_at"].isoformat(),
            "recorded_at": r["recorded_at"].isoformat(),
            "producer": r["producer"],
            "referral_id": None if r["referral_id"] is None else str(r["referral_id"]),
            "agency_id": r["agency_id"],
            "detail": r["detail"],
        }
        for r in rows
    ]
