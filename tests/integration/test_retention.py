"""Retention on a real PostgreSQL: sent outbox rows and old inbox ids are purged, what the guarantees need is kept,
and an erasure finds a case's outbox rows by an index."""

import asyncio
import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import notify
import pytest
from devstack import PostgresServer
from kit.db import create_pool, migrate
from kit.inbox import already_processed, first_time
from kit.outbox import CASE_EVENTS, add_to_outbox, rewrite_case_events
from kit.retention import Purge, purge, purge_all, standard_purges
from notify.timers import finished_timers
from schemas.events import CaseErased, Envelope

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DATABASE = "retention_check"
SCHEMA = "retention"  # the kit's migrations only, as in every service's schema
OUTBOX_KEEP = timedelta(hours=24)
INBOX_KEEP = timedelta(days=30)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A server of the module's own, the kit's migrations applied in `retention` (as in every service's schema)."""
    state = Path(tempfile.mkdtemp(prefix="onestop-retention-"))
    state.chmod(0o755)  # PostgreSQL runs as its own user
    no_service_migrations = Path(tempfile.mkdtemp(prefix="onestop-retention-none-"))
    server = PostgresServer(state, fast=True)
    try:
        server.start()
        server.wait_ready()
        server.create_database(DATABASE)
        asyncio.run(migrate(server.dsn(DATABASE), SCHEMA, no_service_migrations))
        yield server.dsn(DATABASE)
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(no_service_migrations, ignore_errors=True)


@pytest.fixture
async def pool(postgres: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(postgres, SCHEMA, max_size=4)
    try:
        await pool.execute("TRUNCATE outbox, inbox")
        yield pool
    finally:
        await pool.close()


def event(case_id: UUID | None = None) -> CaseErased:
    return CaseErased(case_id=case_id or uuid4(), producer="test", erased_at=datetime.now(UTC))


async def queue(
    pool: asyncpg.Pool, *, sent_ago: timedelta | None, created_ago: timedelta, case_id: UUID | None = None
) -> UUID:
    """An outbox row written `created_ago`, and sent `sent_ago` (None: not sent yet)."""
    e = event(case_id)
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, "case.erased", e)
        await conn.execute(
            "UPDATE outbox SET created_at = now() - $2::interval, sent_at = now() - $3::interval WHERE event_id = $1",
            e.event_id,
            created_ago,
            sent_ago,
        )
    return e.event_id


async def outbox_ids(pool: asyncpg.Pool) -> set[UUID]:
    return {r["event_id"] for r in await pool.fetch("SELECT event_id FROM outbox")}


async def test_sent_outbox_rows_past_the_retention_are_purged_and_unsent_ones_never(pool: asyncpg.Pool) -> None:
    long_ago, recently = timedelta(days=40), timedelta(hours=1)
    old_sent = {await queue(pool, sent_ago=timedelta(hours=25), created_ago=long_ago) for _ in range(23)}
    recent_sent = {await queue(pool, sent_ago=recently, created_ago=long_ago) for _ in range(3)}
    # Written long ago and never published (Kafka was away for days): it is still to be sent, whatever its age.
    unsent = {await queue(pool, sent_ago=None, created_ago=long_ago) for _ in range(4)}

    deleted = await purge_all(pool, standard_purges(OUTBOX_KEEP, INBOX_KEEP), batch_size=5)  # several batches

    assert deleted["outbox"] == len(old_sent)
    assert await outbox_ids(pool) == recent_sent | unsent
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == len(unsent)
    # Even with no retention at all, an unsent row stays.
    await purge(pool, Purge("outbox", "sent_at IS NOT NULL AND sent_at < $1", timedelta(0)))
    assert await outbox_ids(pool) == unsent


async def test_the_purge_skips_rows_another_transaction_holds_instead_of_waiting(pool: asyncpg.Pool) -> None:
    case_id = uuid4()
    held = await queue(pool, sent_ago=timedelta(days=2), created_ago=timedelta(days=2), case_id=case_id)
    await queue(pool, sent_ago=timedelta(days=2), created_ago=timedelta(days=2))
    outbox = standard_purges(OUTBOX_KEEP, INBOX_KEEP)[0]
    async with pool.acquire() as erasure, erasure.transaction():
        await erasure.fetch(CASE_EVENTS, str(case_id))  # an erasure rewriting the case's events holds its rows
        assert await asyncio.wait_for(purge(pool, outbox), 5) == 1
        assert await outbox_ids(pool) == {held}
    assert await purge(pool, outbox) == 1  # the next round takes it
    assert await outbox_ids(pool) == set()


async def test_old_inbox_ids_are_purged_recent_ones_kept_and_a_recent_duplicate_still_skipped(
    pool: asyncpg.Pool,
) -> None:
    old, recent = [uuid4() for _ in range(7)], [uuid4() for _ in range(3)]
    async with pool.acquire() as conn:
        for event_id in old + recent:
            assert await first_time(conn, "notify.events", event_id)
        await conn.execute(
            "UPDATE inbox SET processed_at = now() - interval '31 days' WHERE event_id = ANY($1::uuid[])", old
        )

    deleted = await purge_all(pool, standard_purges(OUTBOX_KEEP, INBOX_KEEP), batch_size=3)

    assert deleted["inbox"] == len(old)
    assert {r["event_id"] for r in await pool.fetch("SELECT event_id FROM inbox")} == set(recent)
    async with pool.acquire() as conn:
        for event_id in recent:  # a duplicate of a recent event is still skipped
            assert not await first_time(conn, "notify.events", event_id)
            assert await already_processed(conn, "notify.events", event_id)


def _index_scans(plan: Any) -> list[str]:
    """The indexes an EXPLAIN (FORMAT JSON) plan reads."""
    if isinstance(plan, list):
        return [name for item in plan for name in _index_scans(item)]
    if not isinstance(plan, dict):
        return []
    found = [plan["Index Name"]] if "Index Name" in plan else []
    for key in ("Plan", "Plans"):
        if key in plan:
            found += _index_scans(plan[key])
    return found


async def test_an_erasure_finds_the_cases_outbox_rows_by_an_index(pool: asyncpg.Pool) -> None:
    case_id = uuid4()
    for _ in range(200):
        await queue(pool, sent_ago=timedelta(minutes=5), created_ago=timedelta(minutes=5))
    mine = {await queue(pool, sent_ago=None, created_ago=timedelta(0), case_id=case_id) for _ in range(2)}
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ANALYZE outbox")
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {CASE_EVENTS}", str(case_id))
        assert "outbox_by_case" in _index_scans(json.loads(plan) if isinstance(plan, str) else plan), plan

        def rewrite(e: Envelope) -> Envelope:
            return e.model_copy(update={"producer": "rewritten"})

        assert await rewrite_case_events(conn, case_id, rewrite) == len(mine)


async def test_notify_purges_timers_that_fired_long_ago_and_keeps_the_others(postgres: str) -> None:
    await migrate(postgres, "notify", Path(notify.__file__).parent / "migrations")
    pool = await create_pool(postgres, "notify", max_size=2)
    try:
        referral_id = uuid4()
        await pool.execute(
            "INSERT INTO referrals (referral_id, case_id, agency_id, state, state_changed_at)"
            " VALUES ($1, $2, 'seoul-shelter', 'requested', now())",
            referral_id,
            uuid4(),
        )
        other = uuid4()
        await pool.execute(
            "INSERT INTO referrals (referral_id, case_id, agency_id, state, state_changed_at)"
            " VALUES ($1, $2, 'seoul-shelter', 'requested', now())",
            other,
            uuid4(),
        )
        await pool.execute(
            "INSERT INTO timers (referral_id, kind, due_at, fired_at, outcome) VALUES"
            " ($1, 'reminder', now() - interval '40 days', now() - interval '40 days', 'fired'),"
            " ($1, 'deadline', now() - interval '1 day', now() - interval '1 day', 'skipped: answered'),"
            " ($2, 'deadline', now() - interval '40 days', NULL, NULL)",  # due, not fired yet (notify was away)
            referral_id,
            other,
        )
        assert await purge_all(pool, [finished_timers(timedelta(days=30))]) == {"timers": 1}
        left = await pool.fetch("SELECT referral_id, kind FROM timers ORDER BY kind")
        assert [(r["referral_id"], r["kind"]) for r in left] == [(referral_id, "deadline"), (other, "deadline")]
    finally:
        await pool.close()


class _AwayPool:
    """A pool whose database cannot be reached."""

    async def fetchval(self, *_: Any) -> Any:
        raise ConnectionRefusedError("connection refused")

    async def execute(self, *_: Any) -> str:
        raise ConnectionRefusedError("connection refused")


async def test_a_round_finding_the_database_away_is_skipped_quietly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kit.retention"):
        deleted = await purge_all(_AwayPool(), standard_purges(OUTBOX_KEEP, INBOX_KEEP))
    assert deleted == {}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_purge_names_a_plain_table_only() -> None:
    with pytest.raises(ValueError):
        Purge("outbox; DROP TABLE inbox", "true", timedelta(0))
