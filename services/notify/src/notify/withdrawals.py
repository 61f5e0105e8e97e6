"""SQL for the consents the victim withdrew (intake's `consent.withdrawn`, scope all), and the referrals they end."""

from datetime import datetime
from uuid import UUID

import asyncpg


async def record(conn: asyncpg.Connection, case_id: UUID, agency_id: str, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO consent_withdrawals (case_id, agency_id, withdrawn_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (case_id, agency_id) DO NOTHING",
        case_id,
        agency_id,
        at,
    )


async def withdrawn(conn: asyncpg.Connection, case_id: UUID, agency_id: str) -> bool:
    found = await conn.fetchval(
        "SELECT true FROM consent_withdrawals WHERE case_id = $1 AND agency_id = $2", case_id, agency_id
    )
    return bool(found)


async def agencies_withdrawn(conn: asyncpg.Connection, case_id: UUID) -> set[str]:
    """The agencies the victim withdrew their consent to, for the case."""
    rows = await conn.fetch("SELECT agency_id FROM consent_withdrawals WHERE case_id = $1", case_id)
    return {row["agency_id"] for row in rows}


async def referrals_to(conn: asyncpg.Connection, case_id: UUID, agency_id: str) -> list[UUID]:
    """The case's referrals to the agency, whatever their state."""
    rows = await conn.fetch(
        "SELECT referral_id FROM referrals WHERE case_id = $1 AND agency_id = $2 ORDER BY referral_id",
        case_id,
        agency_id,
    )
    return [r["referral_id"] for r in rows]
