"""Inbox: a consumer records each event_id in the same transaction as the event's effects."""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from uuid import UUID

import asyncpg

# Events `claim` recorded for a transaction (its connection, the consumer, the ids not yet asked for by `first_time`).
_CLAIMED: ContextVar[tuple[object, str, set[UUID]] | None] = ContextVar("inbox_claimed", default=None)


async def first_time(conn: asyncpg.Connection, consumer: str, event_id: UUID) -> bool:
    """Record the event as processed by `consumer`; False when it already was (a duplicate to skip).

    Call inside the transaction that applies the event's effects, so both commit or neither does. Inside `claimed`
    for the same connection and consumer, an event the batch claimed is answered True once, without a statement.
    """
    claims = _CLAIMED.get()
    if claims is not None and claims[0] is conn and claims[1] == consumer and event_id in claims[2]:
        claims[2].discard(event_id)
        return True
    inserted = await conn.fetchval(
        "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        consumer,
        event_id,
    )
    return bool(inserted)


async def already_processed(conn: asyncpg.Connection | asyncpg.Pool, consumer: str, event_id: UUID) -> bool:
    """For effects outside the database (a delivery): check before acting, record with `first_time` after."""
    return bool(await conn.fetchval("SELECT true FROM inbox WHERE consumer = $1 AND event_id = $2", consumer, event_id))


async def seen_before(conn: asyncpg.Connection, consumer: str, event_ids: list[UUID]) -> set[UUID]:
    """Which of the events `consumer` has processed already: one query for a batch, whose duplicates (a service's
    own events coming back to it, a redelivery) are then skipped without any work."""
    rows = await conn.fetch(
        "SELECT event_id FROM inbox WHERE consumer = $1 AND event_id = ANY($2::uuid[])", consumer, event_ids
    )
    return {row["event_id"] for row in rows}


async def claim(conn: asyncpg.Connection, consumer: str, event_ids: list[UUID]) -> set[UUID]:
    """Record a batch's events as processed by `consumer` in one statement; the ones not processed before. Call in the
    transaction that applies them all (a failure of any one must roll the claims back with it)."""
    rows = await conn.fetch(
        "INSERT INTO inbox (consumer, event_id) SELECT $1, e FROM unnest($2::uuid[]) AS e"
        " ON CONFLICT DO NOTHING RETURNING event_id",
        consumer,
        list(dict.fromkeys(event_ids)),
    )
    return {row["event_id"] for row in rows}


@contextmanager
def claimed(conn: asyncpg.Connection, consumer: str, event_ids: set[UUID]) -> Iterator[None]:
    """`first_time(conn, consumer, id)` is True, once, for each of `event_ids` (from `claim`) inside the block."""
    token = _CLAIMED.set((conn, consumer, set(event_ids)))
    try:
        yield
    finally:
        _CLAIMED.reset(token)
