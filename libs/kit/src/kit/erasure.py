"""Cases erased on request, as each service remembers them once `case.erased` came (the kit's migration
`002_erased_cases.sql` makes the `erased_cases` table in every service's schema).

A service purges what it holds of the case when the event comes, then must not let a later event of the case (a late
acknowledgement, a re-routing) bring personal data back. A per-case advisory lock orders the two: the purge takes it
exclusively (`mark_erased`), a transaction writing about a case takes it shared (`is_erased`) and holds it to its
end, so the purge waits for what such a transaction writes and nothing written escapes it.
"""

from datetime import datetime
from uuid import UUID

import asyncpg

_LOCK = "SELECT {}(hashtext('erasure:' || $1::uuid::text))"


async def mark_erased(conn: asyncpg.Connection, case_id: UUID, erased_at: datetime) -> None:
    """Record the erasure, first waiting for the transactions that found the case not erased (see `is_erased`).
    Call in the purge's transaction, before purging."""
    await conn.execute(_LOCK.format("pg_advisory_xact_lock"), case_id)
    await conn.execute(
        "INSERT INTO erased_cases (case_id, erased_at) VALUES ($1, $2) ON CONFLICT (case_id) DO NOTHING",
        case_id,
        erased_at,
    )


async def is_erased(conn: asyncpg.Connection | asyncpg.Pool, case_id: UUID) -> bool:
    """Whether the case is erased. In a transaction, the shared per-case lock held to its end makes a purge wait for
    what the transaction writes about the case."""
    await conn.execute(_LOCK.format("pg_advisory_xact_lock_shared"), case_id)
    return await erased_already(conn, case_id)


async def erased_already(db: asyncpg.Connection | asyncpg.Pool, case_id: UUID) -> bool:
    """Whether `case.erased` has come for the case; no lock, for a check before acting."""
    return bool(await db.fetchval("SELECT true FROM erased_cases WHERE case_id = $1", case_id))
