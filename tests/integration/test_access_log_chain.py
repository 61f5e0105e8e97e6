"""The access log on a real PostgreSQL, the kit's migrations in schemas of their own: a lock per schema, the keyed
chain, signed checkpoints outside the table, and the rows written before the key."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from kit.access_log import (
    GENESIS,
    HMAC_SHA256,
    SHA256,
    Access,
    AccessLog,
    Checkpoint,
    CheckpointStore,
    derive_key,
    row_hash,
)
from kit.auth import Principal, Role
from kit.db import _KIT_MIGRATIONS, create_pool, migrate
from kit.metrics import ACCESS_LOG_CHAIN_BROKEN, REGISTRY
from schemas.events import utc_now

from tests.integration.servers import postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DATABASE = "access_log_check"
KEY = derive_key("integration-test-access-log-key-32-bytes")
WHO = Principal("cw-1", Role.caseworker, None, "10.0.0.1")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A server of the module's own; its DSN. Each test migrates the kit's SQL into schemas of its own."""
    with postgres_database("onestop-access-log-", DATABASE) as dsn:
        yield dsn


@pytest.fixture
async def schemas(server: str, tmp_path: Path) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """Two new schemas, the kit's migrations applied to each (no service's own), and a pool for each."""
    names = [f"s_{uuid4().hex[:10]}" for _ in range(2)]
    no_service_migrations = tmp_path / "none"
    no_service_migrations.mkdir()
    for name in names:
        await migrate(server, name, no_service_migrations)
    pools = [await create_pool(server, name, max_size=4) for name in names]
    try:
        yield pools[0], pools[1]
    finally:
        for pool in pools:
            await pool.close()


def access_log(store: CheckpointStore | None = None) -> AccessLog:
    return AccessLog(365, key=KEY, checkpoints=store or CheckpointStore())


def chain_broken() -> float | None:
    """What /metrics says: onestop_access_log_chain_broken."""
    return REGISTRY.get_sample_value("onestop_access_log_chain_broken")


async def write(log: AccessLog, pool: asyncpg.Pool, count: int) -> None:
    for _ in range(count):
        await log.record_now(pool, WHO, Access("case.read", uuid4()))


async def test_each_schema_has_its_own_lock(schemas: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    """Two transactions in two schemas each append while the other holds its lock; in one schema, one waits."""
    first, second = schemas
    log = access_log()
    async with first.acquire() as a, second.acquire() as b, first.acquire() as c, a.transaction(), b.transaction():
        await log.record(a, WHO, Access("case.read", uuid4()))  # holds the first schema's lock to its end
        await asyncio.wait_for(log.record(b, WHO, Access("case.read", uuid4())), 5)  # not held back
        held = await a.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = ANY($1::int[])",
            [a.get_server_pid(), b.get_server_pid()],
        )
        assert held == 2  # two locks, one per schema, held at once
        async with c.transaction():
            await c.execute("SET LOCAL lock_timeout = '300ms'")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await log.record(c, WHO, Access("case.read", uuid4()))  # same schema: waits for the first
    for pool in schemas:
        assert await pool.fetchval("SELECT count(*) FROM access_log") == 1
        assert (await log.verify(pool))["intact"] is True


async def rows_of(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM access_log ORDER BY seq"))


async def restore(pool: asyncpg.Pool, rows: list[asyncpg.Record]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM access_log")
        await conn.copy_records_to_table("access_log", records=[tuple(r) for r in rows], columns=list(rows[0].keys()))


async def rewrite_from(pool: asyncpg.Pool, seq: int, scheme: str, key: bytes | None = None) -> None:
    """Change the row at `seq` and recompute it and every later row, as whoever can write to the table could."""
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchrow("SELECT hash FROM access_log WHERE seq = $1", seq - 1)
        previous = GENESIS if before is None else before["hash"]
        await conn.execute("UPDATE access_log SET client = '203.0.113.7' WHERE seq = $1", seq)
        for row in await conn.fetch("SELECT * FROM access_log WHERE seq >= $1 ORDER BY seq", seq):
            access = Access(row["action"], row["case_id"], row["referral_id"])
            digest = row_hash(previous, row["seq"], row["at"], row["actor"], row["role"], row["client"], access, key)
            await conn.execute(
                "UPDATE access_log SET previous_hash = $2, hash = $3, scheme = $4 WHERE seq = $1",
                row["seq"],
                previous,
                digest,
                scheme,
            )
            previous = digest


async def test_keyed_rows_verify_and_a_row_recomputed_with_plain_sha256_is_detected(
    schemas: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    pool, _ = schemas
    log = access_log()
    await write(log, pool, 5)
    assert await pool.fetchval("SELECT count(*) FROM access_log WHERE scheme = $1", HMAC_SHA256) == 5
    assert await log.verify(pool) == {
        "intact": True,
        "rows_checked": 5,
        "first_broken_seq": None,
        "reason": None,
        "checkpoint": None,
    }
    original = await rows_of(pool)
    # Someone with write access hides where a read came from and recomputes the chain from that row on with the
    # plain SHA-256 anyone can compute, claiming either scheme.
    for claimed in (HMAC_SHA256, SHA256):
        await rewrite_from(pool, 3, claimed)
        answer = await log.verify(pool)
        assert (answer["intact"], answer["first_broken_seq"], answer["reason"]) == (False, 3, "broken"), claimed
        await restore(pool, original)
    assert (await log.verify(pool))["intact"] is True
    # Without the key nothing fits: the same rewrite under another key is as broken.
    await rewrite_from(pool, 3, HMAC_SHA256, derive_key("someone-else-s-key-of-32-bytes-or-more"))
    assert (await log.verify(pool))["first_broken_seq"] == 3


async def test_a_chain_rewritten_from_its_first_row_is_detected_by_the_checkpoint(
    schemas: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    """Every row recomputed as plain SHA-256 makes a consistent chain of its own; the signed head does not fit it."""
    pool, other = schemas
    log = access_log()
    await write(log, pool, 4)
    checkpoint = await log.checkpoint(pool)
    assert checkpoint is not None and checkpoint.seq == 4
    await write(log, pool, 2)
    await rewrite_from(pool, 1, SHA256)
    # The periodic checkpointer finds the break and says so on /metrics (the alert AccessLogChainBroken).
    ACCESS_LOG_CHAIN_BROKEN.set(0)
    # The checkpointer does not sign the rewritten head: the last good checkpoint stays.
    assert await log.checkpoint(pool) is None
    assert log.checkpoints.latest(checkpoint.schema) == checkpoint
    assert chain_broken() == 1
    answer = await log.verify(pool)
    assert (answer["intact"], answer["reason"], answer["first_broken_seq"]) == (False, "rewritten", 4)
    assert chain_broken() == 1
    # Only a verify of a whole chain found intact clears it.
    await write(log, other, 2)
    assert (await log.verify(other))["intact"] is True and chain_broken() == 0


async def test_deleting_the_newest_rows_is_detected_by_the_checkpoint(
    schemas: tuple[asyncpg.Pool, asyncpg.Pool], tmp_path: Path
) -> None:
    pool, other = schemas
    folder = tmp_path / "checkpoints"
    log = access_log(CheckpointStore(folder))
    await write(log, pool, 6)
    await write(log, other, 2)
    taken = await log.checkpoint(pool)
    assert taken is not None and (taken.seq, taken.hash) == (
        6,
        await pool.fetchval("SELECT hash FROM access_log WHERE seq = 6"),
    )
    assert await log.checkpoint(other) is not None
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{s}.json" for s in (taken.schema, await schema_of(other))
    )
    # The newest rows cut off: the chain that is left is intact in itself.
    await pool.execute("DELETE FROM access_log WHERE seq > 4")
    # Another process (a restart, another replica) reads the checkpoint from the folder.
    answer = await access_log(CheckpointStore(folder)).verify(pool)
    assert answer == {
        "intact": False,
        "rows_checked": 4,
        "first_broken_seq": 5,
        "reason": "truncated",
        "checkpoint": {"seq": 6, "at": taken.at},
    }
    assert (await log.verify(other))["intact"] is True  # the other schema's checkpoint is its own
    # Nor is the truncated head signed later.
    assert await log.checkpoint(pool) is None and log.checkpoints.latest(taken.schema) == taken


async def test_a_checkpoint_not_signed_with_the_key_is_reported(
    schemas: tuple[asyncpg.Pool, asyncpg.Pool], tmp_path: Path
) -> None:
    pool, _ = schemas
    store = CheckpointStore(tmp_path)
    log = access_log(store)
    await write(log, pool, 3)
    schema = await schema_of(pool)
    # Whoever moves the checkpoint back to hide a truncation cannot sign it.
    store.save(Checkpoint(schema, 2, await pool.fetchval("SELECT hash FROM access_log WHERE seq = 2"), "x", "00" * 32))
    answer = await log.verify(pool)
    assert (answer["intact"], answer["reason"], answer["rows_checked"]) == (False, "checkpoint_invalid", 3)
    assert await log.checkpoint(pool) is None  # left as it is, for the auditor to see
    (tmp_path / f"{schema}.json").unlink()
    assert (await log.checkpoint(pool)) is not None and (await log.verify(pool))["intact"] is True


async def test_rows_hashed_before_the_key_still_verify_and_chain_into_keyed_ones(server: str, tmp_path: Path) -> None:
    """A schema migrated before the key, with rows written as then; migrated again, then written to as now."""
    schema = f"s_{uuid4().hex[:10]}"
    earlier = sorted(p for p in _KIT_MIGRATIONS.glob("*.sql") if p.name < "004")
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for path in earlier:
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", f"kit/{path.name}")
        previous = GENESIS
        for seq in range(1, 4):  # as kit.access_log wrote them before the key
            access, at = Access("case.read", uuid4()), utc_now()
            digest = row_hash(previous, seq, at, WHO.credential, WHO.role.value, WHO.client, access)
            await conn.execute(
                "INSERT INTO access_log (seq, at, actor, role, client, action, case_id, referral_id, previous_hash,"
                " hash) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9)",
                seq, at, WHO.credential, WHO.role.value, WHO.client, access.action, access.case_id, previous, digest,
            )  # fmt: skip
            previous = digest
    finally:
        await conn.close()
    empty = tmp_path / "none"
    empty.mkdir()
    assert "kit/004_access_log_keyed.sql" in await migrate(server, schema, empty)
    pool = await create_pool(server, schema, max_size=2)
    try:
        log = access_log()
        assert [r["scheme"] for r in await rows_of(pool)] == [SHA256] * 3
        assert (await log.verify(pool))["rows_checked"] == 3
        await write(log, pool, 3)
        assert [r["scheme"] for r in await rows_of(pool)] == [SHA256] * 3 + [HMAC_SHA256] * 3
        assert await log.verify(pool) == {
            "intact": True,
            "rows_checked": 6,
            "first_broken_seq": None,
            "reason": None,
            "checkpoint": None,
        }
        checkpoint = await log.checkpoint(pool)
        assert checkpoint is not None and checkpoint.seq == 6
        # A purge of old rows leaves an unkeyed anchor, and the chain verifies from it.
        written = await rows_of(pool)
        assert await log.purge(pool, before=written[2]["at"]) == 2
        assert await pool.fetchval("SELECT scheme FROM access_log_anchor") == SHA256
        assert (await log.verify(pool))["rows_checked"] == 4
        # Purged past the first keyed row, the anchor is keyed: an unkeyed row after it is a break.
        assert await log.purge(pool, before=written[4]["at"]) == 2
        assert await pool.fetchval("SELECT scheme FROM access_log_anchor") == HMAC_SHA256
        assert (await log.verify(pool)) == {
            "intact": True,
            "rows_checked": 2,
            "first_broken_seq": None,
            "reason": None,
            "checkpoint": {"seq": 6, "at": checkpoint.at},
        }
        access, at = Access("case.read", uuid4()), utc_now()
        digest = row_hash(written[5]["hash"], 7, at, WHO.credential, WHO.role.value, WHO.client, access)
        await pool.execute(  # as a writer without the key (or an old replica) would
            "INSERT INTO access_log (seq, at, actor, role, client, action, case_id, previous_hash, hash)"
            " VALUES (7, $1, $2, $3, $4, $5, $6, $7, $8)",
            at, WHO.credential, WHO.role.value, WHO.client, access.action, access.case_id, written[5]["hash"], digest,
        )  # fmt: skip
        answer = await log.verify(pool)
        assert (answer["intact"], answer["first_broken_seq"], answer["reason"]) == (False, 7, "broken")
    finally:
        await pool.close()


async def schema_of(pool: asyncpg.Pool) -> str:
    return str(await pool.fetchval("SELECT current_schema()"))


async def test_the_accesses_of_one_call_are_rows_in_their_order_that_verify(
    schemas: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    """A disclosure logs an access per item in one call (one statement): each its own row, in the order given,
    chained to the row before it and to the next call's."""
    pool, _ = schemas
    log = access_log()
    case_id, referral_id = uuid4(), uuid4()
    accesses = [
        Access("case.personal.disclose:name", case_id, referral_id),
        Access("case.personal.disclose:phone", case_id, referral_id),
        Access("dead_letters.read"),
        Access("case.read", case_id),
    ]
    await write(log, pool, 1)
    await log.record_now(pool, WHO, *accesses)
    await write(log, pool, 1)
    rows = await pool.fetch(
        "SELECT seq, at, actor, role, client, action, case_id, referral_id, scheme FROM access_log ORDER BY seq"
    )
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [(r["action"], r["case_id"], r["referral_id"]) for r in rows[1:5]] == [
        (a.action, a.case_id, a.referral_id) for a in accesses
    ]
    assert {(r["actor"], r["role"], r["client"], r["scheme"]) for r in rows} == {
        (WHO.credential, WHO.role.value, WHO.client, HMAC_SHA256)
    }
    assert len({r["at"] for r in rows[1:5]}) == 1  # one moment for one call
    assert (await log.verify(pool))["intact"] is True
    assert (await log.verify(pool))["rows_checked"] == 6
