"""Inbox: a consumer records each event_id in the same transaction as the event's effects."""

from uuid import UUID

import asyncpg


async def first_time(conn: asyncpg.Connection, consumer: str, event_id: UUID) -> bool:
    """Record the event as processed by `consumer`; False when it already was (a duplicate to skip).

    Call inside the transaction that applies the event's effects, so both commit or neither does.
    """
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
