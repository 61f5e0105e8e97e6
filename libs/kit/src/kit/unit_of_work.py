"""The unit of work around a consumer's handler: one transaction on a connection from the pool, with the inbox's
check that the event is new (recorded in the same transaction), so the handler itself reads as its business steps —
`apply(conn, event)` — and can be tested with a fake connection, or wired in with a fake pool."""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar
from uuid import UUID

import asyncpg

from .inbox import first_time


class Event(Protocol):
    @property
    def event_id(self) -> UUID: ...


E = TypeVar("E", bound=Event)
Apply = Callable[[asyncpg.Connection, E], Awaitable[object]]


@contextlib.asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection from the pool in one transaction: committed when the block ends, rolled back when it raises."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


async def once(pool: asyncpg.Pool, consumer: str, event: E, apply: Apply[E]) -> bool:
    """`apply(conn, event)` in one transaction with the event's inbox row under `consumer`; False, and nothing done,
    when `consumer` has had the event already (a redelivery)."""
    async with transaction(pool) as conn:
        if not await first_time(conn, consumer, event.event_id):
            return False
        await apply(conn, event)
    return True
