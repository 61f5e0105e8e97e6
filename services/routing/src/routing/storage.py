"""SQL for routing decisions and the referrals they create."""

from typing import Any
from uuid import UUID

import asyncpg
from schemas.events import CaseRouted


async def save_decision(conn: asyncpg.Connection, routed: CaseRouted) -> None:
    await conn.execute(
        "INSERT INTO decisions (case_id, decided_at, decisions, uncovered_needs) VALUES ($1, $2, $3, $4)",
        routed.case_id,
        routed.occurred_at,
        [d.model_dump(mode="json") for d in routed.decisions],
        list(routed.uncovered_needs),
    )
    await conn.executemany(
        "INSERT INTO referrals (referral_id, case_id, agency_id, needs) VALUES ($1, $2, $3, $4)",
        [(r.referral_id, routed.case_id, r.agency_id, list(r.needs)) for r in routed.referrals],
    )


async def load_decision(pool: asyncpg.Pool, case_id: UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow("SELECT * FROM decisions WHERE case_id = $1", case_id)
    if row is None:
        return None
    referrals = await pool.fetch(
        "SELECT referral_id, agency_id, needs FROM referrals WHERE case_id = $1 ORDER BY agency_id", case_id
    )
    return {
        "case_id": str(case_id),
        "decided_at": row["decided_at"].isoformat(),
        "referrals": [{**dict(r), "referral_id": str(r["referral_id"])} for r in referrals],
        "decisions": row["decisions"],
        "uncovered_needs": row["uncovered_needs"],
    }
