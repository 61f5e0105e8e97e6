"""Batch consumption (kit.batches.subscribe_batch) on a real Kafka broker and a real PostgreSQL:

- a batch is one transaction: its records' effects commit together, in each partition's order (two cases sharing a
  partition included), and a record that cannot be decoded or that its handler rejects goes to the DLQ with its
  reason while its savepoint's writes are rolled back and its neighbours are applied;
- a record whose handler keeps failing holds up only the records behind it on its partition, and is parked
  (`handler_failed`) after `max_attempts`; an outage of the system's own (PostgreSQL unreachable when the batch
  begins included) holds every partition of the batch uncounted;
- a crash between the transaction's commit and the offsets' commit reads the batch again, and the inbox skips it;
- a rebalance in the middle of a batch (a second consumer joining the group) loses nothing and applies nothing
  twice.
"""

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from devstack import KafkaCluster, kafka_admin
from faststream.kafka import KafkaBroker
from kit import messaging, metrics
from kit.batches import subscribe_batch
from kit.db import create_pool, migrate
from kit.inbox import first_time
from kit.messaging import ensure_topics, make_broker
from kit.outages import DependencyUnavailable
from schemas.events import CaseSubmitted, EventRejected, encode_event

from tests.e2e.helpers import eventually, read_topic
from tests.integration.servers import postgres_database
from tests.samples import sample_case

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DATABASE = "batch_check"
CONSUMER = "batch-test"
GROUP = "batch-group"


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_database("onestop-batch-pg-", DATABASE) as dsn:
        yield dsn


@pytest.fixture
async def pool(postgres: str, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    """A schema of the test's own with the kit's tables (the inbox) and a table of what was applied."""
    schema = f"s_{uuid4().hex[:10]}"
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "001_applied.sql").write_text(
        "CREATE TABLE applied (id bigserial PRIMARY KEY, region text NOT NULL, tx bigint NOT NULL);"
    )
    await migrate(postgres, schema, tmp_path / "sql")
    created = await create_pool(postgres, schema, max_size=4)
    try:
        yield created
    finally:
        await created.close()


@dataclass
class Topic:
    name: str
    producer: AIOKafkaProducer
    bootstrap: str

    async def send(self, partition: int, *regions: str, case: CaseSubmitted | None = None) -> None:
        for region in regions:
            body = b"not json {" if region == "garbage" else encode_event(case_in(region, case))
            await self.producer.send_and_wait(self.name, body, partition=partition)


@pytest.fixture
async def topic(kafka: KafkaCluster) -> AsyncIterator[Topic]:
    name = f"batch.{uuid4().hex[:8]}"
    await ensure_topics(kafka.bootstrap_servers, [name, f"{name}.dlq"], partitions=2, replication=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        yield Topic(name, producer, kafka.bootstrap_servers)
    finally:
        await producer.stop()


def case_in(region: str, like: CaseSubmitted | None = None) -> CaseSubmitted:
    """A case.submitted whose region names what the handler does with it (`like`: the same case id, another
    event)."""
    case_id = like.case_id if like is not None else uuid4()
    return CaseSubmitted(case_id=case_id, producer="test", case=sample_case(region=region).facts())


@dataclass
class Handler:
    """Writes each record's region into `applied` (with its transaction's id) after the inbox check, then fails as
    the region says: `rejected*` is refused, `buggy` raises, `waits` meets an outage until `outage_over`."""

    tries: dict[str, int] = field(default_factory=dict)
    outage_over: asyncio.Event = field(default_factory=asyncio.Event)
    slow_first: float = 0.0
    statements: list[str] = field(default_factory=list)  # what the connections it was given ran from then on
    _watched: set[int] = field(default_factory=set)

    async def __call__(self, conn: asyncpg.Connection, event: CaseSubmitted) -> None:
        region = event.case.region
        self.tries[region] = self.tries.get(region, 0) + 1
        if conn.get_server_pid() not in self._watched:  # asyncpg's own query log, on the real connection
            self._watched.add(conn.get_server_pid())
            conn.add_query_logger(lambda logged: self.statements.append(logged.query))
        if not await first_time(conn, CONSUMER, event.event_id):
            return
        await conn.execute("INSERT INTO applied (region, tx) VALUES ($1, txid_current())", region)
        if self.slow_first:
            delay, self.slow_first = self.slow_first, 0.0
            await asyncio.sleep(delay)
        if region.startswith("rejected"):
            raise EventRejected("refused_here", "the handler refuses it")
        if region == "buggy":
            raise KeyError("a bug met by this record only")
        if region == "waits" and not self.outage_over.is_set():
            raise DependencyUnavailable("intake is down")


async def applied(pool: asyncpg.Pool) -> list[tuple[str, int]]:
    return [(r["region"], r["tx"]) for r in await pool.fetch("SELECT region, tx FROM applied ORDER BY id")]


def consumer(
    topic: Topic, pool: asyncpg.Pool, handle: Handler, inbox: str | None = None, gather_ms: int | None = None
) -> KafkaBroker:
    """A consumer of the topic in the tests' group, in batches."""
    broker = make_broker(topic.bootstrap, f"batch-{uuid4().hex[:6]}")
    subscribe_batch(
        broker,
        topic.name,
        GROUP,
        (CaseSubmitted,),
        handle,
        lambda: pool,
        max_attempts=3,
        inbox=inbox,
        gather_ms=gather_ms,
    )
    return broker


def processed() -> float:
    """How many records the group has counted as processed (kit's metric), duplicates skipped by the inbox too."""
    return float(metrics.EVENTS_CONSUMED.labels(GROUP, "case.submitted", "processed")._value.get())


async def test_a_batch_commits_together_in_order_and_parks_only_its_bad_records(
    topic: Topic, pool: asyncpg.Pool
) -> None:
    first = case_in("a-1")
    # Partition 0: two cases interleaved, garbage and a refused record among them. Partition 1: a buggy record.
    await topic.send(0, "a-1", case=first)
    await topic.send(0, "b-1", "garbage", "rejected-1", "b-2")
    await topic.send(0, "a-2", case=first)
    await topic.send(1, "buggy", "behind-buggy")
    handle = Handler()
    broker = consumer(topic, pool, handle)
    await broker.start()
    try:
        await eventually(lambda: _has(pool, "behind-buggy", "a-2"), 60, "the records behind the bad ones to be applied")
    finally:
        await broker.stop()

    rows = await applied(pool)
    regions = [region for region, _ in rows]
    assert [r for r in regions if r != "behind-buggy"] == ["a-1", "b-1", "b-2", "a-2"], "partition order, no rollback"
    assert "rejected-1" not in regions and "buggy" not in regions, "a refused or failed record's writes are undone"
    assert handle.tries["buggy"] == 3
    partition_0 = {tx for region, tx in rows if region != "behind-buggy"}
    assert len(partition_0) < 4, f"the records waiting together were applied in one transaction: {rows}"

    dead = await read_topic(topic.bootstrap, f"{topic.name}.dlq")
    reasons = sorted({k: v.decode() for k, v in record.headers}["dlq.reason"] for record in dead)
    assert reasons == ["handler_failed", "invalid_json", "refused_here"]
    assert any(q.startswith("SAVEPOINT") for q in handle.statements), "a batch with a bad record: a savepoint each"


async def test_a_batch_that_goes_through_applies_each_record_once_and_pays_for_no_savepoint(
    topic: Topic, pool: asyncpg.Pool
) -> None:
    """Savepoints (two round trips a record) are paid only when a record of the batch fails (the test above), and
    the batch's inbox rows are written in one statement (`kit.inbox.claim`), a record sent twice applied once."""
    first = case_in("c-1")
    await topic.send(0, "c-1", case=first)
    await topic.send(0, "d-1", "d-2")
    twice = encode_event(case_in("twice"))
    for _ in range(2):  # a producer's retry: the same event twice in a row
        await topic.producer.send_and_wait(topic.name, twice, partition=0)
    await topic.send(0, "c-2", case=first)
    await topic.send(1, "e-1", "e-2")
    handle = Handler()
    broker = consumer(topic, pool, handle, inbox=CONSUMER)
    await broker.start()
    try:
        await eventually(lambda: _has(pool, "c-2", "e-2"), 60, "every record to be applied")
    finally:
        await broker.stop()
    regions = [region for region, _ in await applied(pool)]
    assert [r for r in regions if not r.startswith("e-")] == ["c-1", "d-1", "d-2", "twice", "c-2"], "in order"
    assert sorted(regions) == sorted(handle.tries) and set(handle.tries.values()) == {1}, "each applied once"
    assert handle.statements, "the connections were watched"
    assert not [q for q in handle.statements if q.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK"))]
    per_record = "INSERT INTO inbox (consumer, event_id) VALUES"  # kit.inbox.first_time's own statement
    assert not [q for q in handle.statements if q.startswith(per_record)], "the inbox rows claimed by the batch"


async def test_a_consumer_with_a_gathering_window_applies_what_arrives_one_by_one_in_one_transaction(
    topic: Topic, pool: asyncpg.Pool
) -> None:
    """`gather_ms` (routing's reader of referral.events): the broker holds each fetch for the window, so records
    sent one at a time make one batch, one transaction, instead of one each (as they do without it)."""
    handle = Handler()
    broker = consumer(topic, pool, handle, inbox=CONSUMER, gather_ms=3000)
    await broker.start()
    try:
        await topic.send(0, "first")
        await eventually(lambda: _has(pool, "first"), 60, "the consumer to read its first record")
        one_by_one = [f"single-{n}" for n in range(6)]
        for region in one_by_one:  # a tenth of a second apart: without the window, a batch each
            await topic.send(0, region)
            await asyncio.sleep(0.1)
        await eventually(lambda: _has(pool, *one_by_one), 60, "the records sent one at a time")
    finally:
        await broker.stop()

    transactions = {tx for region, tx in await applied(pool) if region in one_by_one}
    # Sent within a second, they fall in one window of 3 s, or two when one ended while they were being sent.
    assert len(transactions) <= 2, f"gathered: {await applied(pool)}"


async def test_an_outage_holds_the_batch_uncounted_while_a_failure_holds_only_its_partition(
    topic: Topic, pool: asyncpg.Pool
) -> None:
    await topic.send(0, "waits", "behind-waits")
    handle = Handler()
    broker = consumer(topic, pool, handle)
    await broker.start()
    try:
        await eventually(lambda: _true(handle.tries.get("waits", 0) > 3), 60, "the waiting record to be tried again")
        assert await applied(pool) == [], "nothing of a batch that met an outage is committed"
        await topic.send(1, "meanwhile")
        await eventually(lambda: _has(pool, "meanwhile"), 60, "the other partition to go on")
        assert "behind-waits" not in [r for r, _ in await applied(pool)], "a waiting partition keeps its order"
        handle.outage_over.set()
        await eventually(lambda: _has(pool, "behind-waits"), 60, "the partition after the outage")
    finally:
        await broker.stop()
    assert [r for r, _ in await applied(pool) if r != "meanwhile"] == ["waits", "behind-waits"]
    assert await read_topic(topic.bootstrap, f"{topic.name}.dlq") == [], "an outage is never dead-lettered"


async def test_postgresql_away_when_a_batch_begins_holds_every_partition_of_it_and_skips_nothing(
    topic: Topic, pool: asyncpg.Pool
) -> None:
    """The pool cannot give a connection (PostgreSQL stopped): the batch's records on both partitions are read again
    once it is back, none of them skipped by an offset committed past it, none dead-lettered."""
    # Nothing listens on a port of a socket closed at once: connecting is refused, as with PostgreSQL stopped.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    away = await asyncpg.create_pool(f"postgresql://nobody@127.0.0.1:{dead_port}/none", min_size=0, max_size=1)
    state = {"away": True}
    await topic.send(0, "p0-1", "p0-2")
    await topic.send(1, "p1-1", "p1-2")
    handle = Handler()
    broker = make_broker(topic.bootstrap, f"batch-{uuid4().hex[:6]}")
    subscribe_batch(
        broker, topic.name, GROUP, (CaseSubmitted,), handle, lambda: away if state["away"] else pool, max_attempts=3
    )
    waited = metrics.EVENTS_CONSUMED.labels(GROUP, "case.submitted", "waiting")
    before = waited._value.get()
    await broker.start()
    try:
        await eventually(lambda: _true(waited._value.get() >= before + 4), 60, "the batch to wait for PostgreSQL")
        state["away"] = False
        await eventually(lambda: _has(pool, "p0-1", "p0-2", "p1-1", "p1-2"), 60, "every record once PostgreSQL is back")
    finally:
        await broker.stop()
        await away.close()
    assert sorted(r for r, _ in await applied(pool)) == ["p0-1", "p0-2", "p1-1", "p1-2"]
    assert await read_topic(topic.bootstrap, f"{topic.name}.dlq") == [], "an outage is never dead-lettered"


async def test_events_the_consumer_does_not_want_are_passed_over_without_any_work_and_committed(
    topic: Topic, pool: asyncpg.Pool
) -> None:
    await topic.send(0, "skip-1", "kept", "skip-2")
    await topic.send(1, "skip-3")
    handle = Handler()
    broker = make_broker(topic.bootstrap, f"batch-{uuid4().hex[:6]}")
    subscribe_batch(
        broker,
        topic.name,
        GROUP,
        (CaseSubmitted,),
        handle,
        lambda: pool,
        max_attempts=3,
        wants=lambda event: not event.case.region.startswith("skip"),
    )
    await broker.start()
    try:
        await eventually(lambda: _has(pool, "kept"), 60, "the wanted record")
        await eventually(lambda: _committed(topic, {0: 3, 1: 1}), 60, "every offset committed, the passed-over too")
    finally:
        await broker.stop()
    assert handle.tries == {"kept": 1}, "the others were never handed to the handler"
    assert [r for r, _ in await applied(pool)] == ["kept"]


async def _committed(topic: Topic, expected: dict[int, int]) -> bool:
    group = next(g for g in await kafka_admin.consumer_groups(topic.bootstrap) if g.group_id == GROUP)
    return {tp.partition: offset for tp, offset in group.committed.items() if tp.topic == topic.name} == expected


@pytest.mark.parametrize("inbox", [None, CONSUMER], ids=["handler-checks-inbox", "batch-checks-inbox"])
async def test_a_batch_read_again_after_a_crash_before_its_offsets_were_committed_changes_nothing(
    topic: Topic, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, inbox: str | None
) -> None:
    await topic.send(0, "one", "two", "three")
    handle = Handler()

    async def crash_before_committing(self: messaging.OffsetCommitter) -> None:
        """The process dies after the transaction committed and before its offsets reached Kafka."""

    with monkeypatch.context() as patch:
        patch.setattr(messaging.OffsetCommitter, "flush", crash_before_committing)
        broker = consumer(topic, pool, handle, inbox)
        await broker.start()
        try:
            await eventually(lambda: _has(pool, "three"), 60, "the first reading")
        finally:
            await broker.stop()
    assert handle.tries == {"one": 1, "two": 1, "three": 1}

    before = processed()
    again = consumer(topic, pool, handle, inbox)  # the same group: nothing committed, so it reads the batch again
    await again.start()
    try:
        await topic.send(0, "four")
        await eventually(lambda: _true(processed() - before >= 4), 60, "the batch read again, and one more record")
    finally:
        await again.stop()
    assert [r for r, _ in await applied(pool)] == ["one", "two", "three", "four"], "the inbox skipped every record"
    # The handler's own inbox check skips them; a batch told the inbox's name skips them before any handler runs.
    assert (
        handle.tries == {"one": 2, "two": 2, "three": 2, "four": 1}
        if inbox is None
        else {
            "one": 1,
            "two": 1,
            "three": 1,
            "four": 1,
        }
    )


async def test_a_rebalance_in_the_middle_of_a_batch_loses_nothing_and_applies_nothing_twice(
    topic: Topic, pool: asyncpg.Pool
) -> None:
    regions = [f"r-{i}" for i in range(40)]
    await topic.send(0, *regions[:20])
    await topic.send(1, *regions[20:])
    handle = Handler(slow_first=3.0)  # the first batch is still open when the second consumer joins
    first = consumer(topic, pool, handle)
    await first.start()
    second = consumer(topic, pool, Handler())
    try:
        await eventually(lambda: _true(bool(handle.tries)), 60, "the first batch to begin")
        await second.start()
        await eventually(lambda: _has(pool, *regions), 120, "every record applied")
    finally:
        await second.stop()
        await first.stop()
    done = [r for r, _ in await applied(pool)]
    assert sorted(done) == sorted(regions), "each record applied exactly once"
    for part in (regions[:20], regions[20:]):
        assert [r for r in done if r in part] == part, "each partition in order"


async def _has(pool: asyncpg.Pool, *regions: str) -> bool:
    done = {r for r, _ in await applied(pool)}
    return all(region in done for region in regions)


async def _true(value: bool) -> bool:
    return value
