"""A batch's inbox rows and erasure checks in two statements each, not one or two per record (kit.inbox.claim,
kit.erasure.check_erasures), on a real PostgreSQL: what `first_time` and `is_erased` answer inside their blocks, that
they send nothing there, and that the erasure locks are really held to the transaction's end."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from kit.db import create_pool, migrate
from kit.erasure import check_erasures, erasures_known, is_erased, mark_erased
from kit.inbox import claim, claimed, first_time

from tests.integration.servers import postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_database("onestop-claims-pg-", "claims_check") as dsn:
        yield dsn


@pytest.fixture
async def pool(postgres: str, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    schema = f"s_{uuid4().hex[:10]}"
    (tmp_path / "sql").mkdir()
    await migrate(postgres, schema, tmp_path / "sql")  # the kit's own tables: the inbox, erased_cases
    created = await create_pool(postgres, schema, max_size=4)
    try:
        yield created
    finally:
        await created.close()


def statements_of(conn: asyncpg.Connection) -> list[str]:
    """What `conn` sends from now on (asyncpg's query log; see `logged`)."""
    sent: list[str] = []
    conn.add_query_logger(lambda logged: sent.append(logged.query))
    return sent


async def logged(sent: list[str]) -> int:
    """How many statements were sent: asyncpg calls its query loggers with `call_soon`, so they have all run once
    the loop has gone round once (its ready callbacks run first in, first out)."""
    await asyncio.sleep(0)
    return len(sent)


async def test_claimed_events_are_first_time_once_each_without_a_statement(pool: asyncpg.Pool) -> None:
    done_before, new, again = uuid4(), uuid4(), uuid4()
    async with pool.acquire() as conn:
        assert await first_time(conn, "c", done_before)
        async with conn.transaction():
            fresh = await claim(conn, "c", [done_before, new, again, again])  # a record twice in the batch
            assert fresh == {new, again}, "what the consumer processed before is not claimed again"
            sent = statements_of(conn)
            with claimed(conn, "c", fresh):
                assert await first_time(conn, "c", new) and await first_time(conn, "c", again)
                assert await logged(sent) == 0, "answered from the claim"
                assert not await first_time(conn, "c", again), "the second copy: a duplicate"
                assert not await first_time(conn, "c", done_before)
                assert await first_time(conn, "other", new), "another consumer's inbox is its own"
            assert await logged(sent) == 3
        rows = await conn.fetch("SELECT consumer, event_id FROM inbox ORDER BY consumer")
    assert sorted((r["consumer"], r["event_id"]) for r in rows) == sorted(
        [("c", done_before), ("c", new), ("c", again), ("other", new)]
    )


async def test_a_claim_rolled_back_with_its_batch_leaves_the_events_unprocessed(pool: asyncpg.Pool) -> None:
    event = uuid4()
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                assert await claim(conn, "c", [event]) == {event}
                raise RuntimeError("a record of the batch failed")
        assert await first_time(conn, "c", event), "read again, it is processed then"


async def test_a_batch_erasure_check_answers_each_case_and_holds_their_locks_to_the_end(pool: asyncpg.Pool) -> None:
    erased, kept = uuid4(), uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await mark_erased(conn, erased, datetime.now(UTC))
    async with pool.acquire() as conn:
        async with conn.transaction():
            answers = await check_erasures(conn, [kept, erased, kept])
            assert answers == {erased: True, kept: False}
            pid = conn.get_server_pid()
            held = await pool.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted"
                " AND pid = $1",
                pid,
            )
            assert held == 2, "a shared erasure lock per case, held by the batch's transaction"
            sent = statements_of(conn)
            with erasures_known(conn, answers):
                assert await is_erased(conn, erased) and not await is_erased(conn, kept)
                assert await logged(sent) == 0, "answered from the batch's check"
                other = uuid4()
                assert not await is_erased(conn, other), "a case the batch did not check: asked as before"
                assert await logged(sent) == 2
            async with pool.acquire() as elsewhere:  # another transaction asks PostgreSQL
                elsewhere_sent = statements_of(elsewhere)
                with erasures_known(conn, answers):
                    assert await is_erased(elsewhere, erased)
                assert await logged(elsewhere_sent) == 2
        released = await pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", conn.get_server_pid()
        )
        assert released == 0, "the locks end with the transaction"
