"""kit.unit_of_work: a handler's business steps run once per event, in one transaction with the event's inbox row;
shown with a fake pool (no database), as a service's handler can be."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast
from uuid import UUID, uuid4

import asyncpg
import pytest
from kit.unit_of_work import once


class FakeConnection:
    """Keeps inbox rows and the transaction's outcome in memory; rows written in a rolled-back one are dropped."""

    def __init__(self, inbox: set[tuple[str, UUID]]) -> None:
        self.inbox = inbox
        self.outcomes: list[str] = []

    async def fetchval(self, query: str, consumer: str, event_id: UUID) -> bool | None:
        assert query.startswith("INSERT INTO inbox")
        if (consumer, event_id) in self.inbox:
            return None
        self.inbox.add((consumer, event_id))
        return True

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        before = set(self.inbox)
        try:
            yield
        except BaseException:
            self.inbox.clear()
            self.inbox.update(before)
            self.outcomes.append("rolled back")
            raise
        self.outcomes.append("committed")


class FakePool:
    def __init__(self) -> None:
        self.inbox: set[tuple[str, UUID]] = set()
        self.connection = FakeConnection(self.inbox)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConnection]:
        yield self.connection


class Event:
    def __init__(self) -> None:
        self.event_id = uuid4()


async def test_an_event_is_applied_once_in_the_transaction_of_its_inbox_row() -> None:
    pool, event, applied = FakePool(), Event(), []

    async def apply(conn: asyncpg.Connection, e: Event) -> None:
        applied.append((cast(Any, conn), e.event_id))

    assert await once(cast(asyncpg.Pool, pool), "svc.consumer", event, apply)
    assert not await once(cast(asyncpg.Pool, pool), "svc.consumer", event, apply), "a redelivery does nothing"
    assert applied == [(pool.connection, event.event_id)]
    assert pool.connection.outcomes == ["committed", "committed"]
    assert await once(cast(asyncpg.Pool, pool), "other.consumer", event, apply), "the inbox is per consumer"


async def test_a_failing_step_rolls_back_the_inbox_row_so_the_event_is_tried_again() -> None:
    pool, event = FakePool(), Event()

    async def fail(conn: asyncpg.Connection, e: Event) -> None:
        raise ConnectionResetError("the database went away mid-way")

    with pytest.raises(ConnectionResetError):
        await once(cast(asyncpg.Pool, pool), "svc.consumer", event, fail)
    assert pool.connection.outcomes == ["rolled back"] and pool.inbox == set()

    async def succeed(conn: asyncpg.Connection, e: Event) -> None:
        return None

    assert await once(cast(asyncpg.Pool, pool), "svc.consumer", event, succeed)
