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
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from kit.access_log import Access, AccessLog, Instant
from kit.auth import STAFF, Principal, Role, require
from kit.http import Problem
from kit.outbox import add_to_outbox
from pydantic import BaseModel, ConfigDict
from schemas.events import CaseClosed, CaseErased
from schemas.topics import CASE_CLOSED, CASE_ERASED
from schemas.vocab import CaseClosedReason, CrimeType, ErasureCause

from . import storage

# Who destroys a case whose retention ended, as the access log names it.
RETENTION_TIMER = Principal(subject="retention-timer", role=Role.service, agency=None, client="intake")


class Closing(BaseModel):
    """Why the case is closed: a code; who closed it comes from the credential."""

    model_config = ConfigDict(extra="forbid")

    reason: CaseClosedReason


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
    """Close the case and queue `case.closed`, in the caller's transaction; a Problem when it cannot be closed."""
    row = await conn.fetchrow(
        "SELECT crime_type, erased_at, closed_at FROM cases WHERE case_id = $1 FOR UPDATE", case_id
    )
    if row is None:
        raise Problem(404, f"no case {case_id}")
    if row["erased_at"] is not None:
        raise Problem(410, f"case {case_id} was erased", title="Erased")
    if row["closed_at"] is not None:
        raise Problem(409, f"case {case_id} was closed already, at {row['closed_at'].isoformat()}", title="Closed")
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


def closing_routes(access_log: AccessLog, default: timedelta, by_crime_type: dict[CrimeType, timedelta]) -> APIRouter:
    router = APIRouter(tags=["cases"])
    staff = Depends(require(*STAFF))
    supervisor = Depends(require(Role.supervisor))

    @router.post("/cases/{case_id}/close")
    async def close(case_id: UUID, closing: Closing, request: Request, who: Principal = staff) -> dict[str, Any]:
        """Close the case: its open referrals are cancelled and the agencies told, its pending needs end, and its
        personal data is destroyed when the retention period after closing ends."""
        pool = request.app.state.runtime.pool
        async with pool.acquire() as conn, conn.transaction():
            event = await close_case(conn, case_id, closing.reason, who, default, by_crime_type)
            await access_log.record(conn, who, Access("case.close", case_id))
        return {
            "case_id": str(case_id),
            "status": "closed",
            "reason": event.reason,
            "closed_by": event.closed_by,
            "closed_at": event.closed_at.isoformat(),
            "retention_until": event.retention_until.isoformat(),
        }

    @router.get("/retention/destroyed")
    async def destroyed(
        request: Request,
        since: Instant | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        who: Principal = supervisor,
    ) -> dict[str, Any]:
        """Cases whose personal data was destroyed because their retention period ended: when each was closed,
        why, when it was due and when it was destroyed. No personal data (there is none left)."""
        rows = await request.app.state.runtime.pool.fetch(
            "SELECT case_id, crime_type, closed_at, closed_reason, retention_until, erased_at FROM cases"
            " WHERE erasure_cause = 'retention_ended' AND erased_at >= coalesce($1, '-infinity'::timestamptz)"
            " ORDER BY erased_at, case_id LIMIT $2",
            since,
            limit,
        )
        return {
            "destroyed": [
                {
                    "case_id": str(r["case_id"]),
                    "crime_type": r["crime_type"],
                    "closed_at": r["closed_at"].isoformat(),
                    "reason": r["closed_reason"],
                    "retention_until": r["retention_until"].isoformat(),
                    "destroyed_at": r["erased_at"].isoformat(),
                }
                for r in rows
            ]
        }

    return router
