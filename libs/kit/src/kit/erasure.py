"""Cases erased on request, as each service remembers them once `case.erased` came (the kit's migration
`002_erased_cases.sql` makes the `erased_cases` table in every service's schema).

A service purges what it holds of the case when the event comes, then must not let a later event of the case (a late
acknowledgement, a re-routing) bring personal data back. A per-case advisory lock orders the two: the purge takes it
exclusively (`mark_erased`), a transaction writing about a case takes it shared (`is_erased`) and holds it to its
end, so the purge waits for what such a transaction writes and nothing written escapes it.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from uuid import UUID

import asyncpg

_LOCK = "SELECT {}(hashtext('erasure:' || $1::uuid::text))"
# Answers `check_erasures` gave for a transaction (its connection, then case id -> erased), under locks it holds.
_KNOWN: ContextVar[tuple[object, dict[UUID, bool]] | None] = ContextVar("erasures_known", default=None)


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
    what the transaction writes about the case. Inside `erasures_known` for the same connection, the answer it holds
    (no statement: the lock is held already)."""
    known = _KNOWN.get()
    if known is not None and known[0] is conn and case_id in known[1]:
        return known[1][case_id]
    await conn.execute(_LOCK.format("pg_advisory_xact_lock_shared"), case_id)
    return await erased_already(conn, case_id)


async def erased_already(db: asyncpg.Connection | asyncpg.Pool, case_id: UUID) -> bool:
    """Whether `case.erased` has come for the case; no lock, for a check before acting."""
    return bool(await db.fetchval("SELECT true FROM erased_cases WHERE case_id = $1", case_id))


async def check_erasures(conn: asyncpg.Connection, case_ids: Iterable[UUID]) -> dict[UUID, bool]:
    """`is_erased` for the cases of a batch in two statements, not two for each: every case's shared lock (held to
    the transaction's end), then which of them are erased. Call inside the transaction, before writing."""
    ids = sorted(set(case_ids))
    if not ids:
        return {}
    await conn.execute(
        "SELECT pg_advisory_xact_lock_shared(hashtext('erasure:' || c::text)) FROM unnest($1::uuid[]) AS c", ids
    )
    rows = await conn.fetch("SELECT case_id FROM erased_cases WHERE case_id = ANY($1::uuid[])", ids)
    erased = {row["case_id"] for row in rows}
    return {case_id: case_id in erased for case_id in ids}


@contextmanager
def erasures_known(conn: asyncpg.Connection, answers: dict[UUID, bool]) -> Iterator[None]:
    """`is_erased(conn, case)` answers from `answers` (from `check_erasures` on `conn`) inside the block."""
    token = _KNOWN.set((conn, answers))
    try:
        yield
    finally:
        _KNOWN.reset(token)
