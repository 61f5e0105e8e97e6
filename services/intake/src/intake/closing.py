"""Closing a case, and keeping its personal data no longer than promised (PIPA Art. 21).

A caseworker closes a case with a reason code: `case.closed` tells notify to cancel its open referrals (each agency
told through its channel) and end its pending needs, and routing to stop looking for agencies for it. The closing
starts the centre's retention period (`CASE_RETENTION`, per crime type with `CASE_RETENTION_BY_CRIME_TYPE`); when it
ends, a durable timer — the case's `retention_until`, polled by every intake replica — destroys the case's personal
data by the same crypto-shredding as an erasure on request, writes an access-log entry, and publishes `case.erased`
with cause `retention_ended`, so every service purges as on an erasure. What is left is what reports need: ids,
crime type, needs, dates, codes — nothing about the victim.
"""

from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
from kit.access_log import Access, AccessLog
from kit.auth import Principal, Role
from kit.errors import Conflict, Gone, NotFound
from kit.outbox import add_to_outbox
from schemas.events import CaseClosed, CaseErased
from schemas.topics import CASE_CLOSED, CASE_ERASED
from schemas.vocab import CaseClosedReason, CrimeType, ErasureCause

from . import storage

# Who destroys a case whose retention ended, as the access log names it.
RETENTION_TIMER = Principal(subject="retention-timer", role=Role.service, agency=None, client="intake")


def retention_for(crime_type: str, default: timedelta, by_crime_type: dict[CrimeType, timedelta]) -> timedelta:
    """How long the case's personal data is kept after closing: per crime type where the law asks, else the
    centre's default."""
    return by_crime_type.get(CrimeType(crime_type), default)


async def close_case(
    conn: asyncpg.Connection,
    case_id: UUID,
    reason: CaseClosedReason,
    who: Principal,
    default: timedelta,
    by_crime_type: dict[CrimeType, timedelta],
) -> CaseClosed:
    """Close the case and queue `case.closed`, in the caller's transaction; refused (NotFound, Gone, Conflict) when it
    cannot be closed."""
    row = await conn.fetchrow(
        "SELECT crime_type, erased_at, closed_at FROM cases WHERE case_id = $1 FOR UPDATE", case_id
    )
    if row is None:
        raise NotFound(f"no case {case_id}")
    if row["erased_at"] is not None:
        raise Gone(f"case {case_id} was erased", title="Erased")
    if row["closed_at"] is not None:
        raise Conflict(f"case {case_id} was closed already, at {row['closed_at'].isoformat()}", title="Closed")
    keep = retention_for(row["crime_type"], default, by_crime_type)
    closed_at: datetime = await conn.fetchval(
        "UPDATE cases SET closed_at = now(), closed_reason = $2, closed_by = $3, retention_until = now() + $4"
        " WHERE case_id = $1 RETURNING closed_at",
        case_id,
        reason.value,
        who.credential,
        keep,
    )
    event = CaseClosed(
        case_id=case_id,
        producer="intake",
        reason=reason,
        closed_by=who.credential,
        closed_at=closed_at,
        retention_until=closed_at + keep,
    )
    await add_to_outbox(conn, CASE_CLOSED, event)
    return event


async def destroy_expired(pool: asyncpg.Pool, access_log: AccessLog, limit: int = 50) -> int:
    """Destroy the personal data of the cases whose retention period ended; how many were destroyed (0: none due).

    Each is erased as on request — data key and personal fields gone, `case.erased` queued — with its cause
    recorded and an access-log entry, in one transaction; a replica running the same round skips the rows locked.
    """
    async with pool.acquire() as conn, conn.transaction():
        due = await conn.fetch(
            "SELECT case_id FROM cases WHERE retention_until <= now() AND erased_at IS NULL"
            " ORDER BY retention_until LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
        for row in due:
            erased_at = await storage.erase_case(conn, row["case_id"])
            assert erased_at is not None  # locked above, not erased
            await conn.execute("UPDATE cases SET erasure_cause = 'retention_ended' WHERE case_id = $1", row["case_id"])
            cause = ErasureCause.retention_ended
            event = CaseErased(case_id=row["case_id"], producer="intake", erased_at=erased_at, cause=cause)
            await add_to_outbox(conn, CASE_ERASED, event)
            await access_log.record(conn, RETENTION_TIMER, Access("case.destroy.retention_ended", row["case_id"]))
    return len(due)


async def destroyed_cases(pool: asyncpg.Pool, since: datetime | None, limit: int) -> list[asyncpg.Record]:
    """The cases whose personal data was destroyed because their retention period ended, oldest first."""
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT case_id, crime_type, closed_at, closed_reason, retention_until, erased_at FROM cases"
        " WHERE erasure_cause = 'retention_ended' AND erased_at >= coalesce($1, '-infinity'::timestamptz)"
        " ORDER BY erased_at, case_id LIMIT $2",
        since,
        limit,
    )
    return rows
