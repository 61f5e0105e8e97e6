"""One consumer over many topics, a lane per topic (kit.lanes.subscribe_lanes), on a real Kafka broker:

- a topic whose handler is stuck (an agency's webhook hanging) holds up only its own lane: the other topic's records
  are handled meanwhile, and the stuck one's records follow in their order once it is free;
- a record that cannot be decoded, or that its handler rejects, goes to its own topic's DLQ and its partition goes
  on; one whose handler keeps failing holds only its partition and is parked (`handler_failed`) after
  `max_attempts`; an outage of the system's own holds its partition uncounted, never dead-lettered;
- what the lanes finished is committed;
- a group that replaces others (the gateway's one group, for a group per agency) starts where they left off.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from devstack import KafkaCluster, kafka_admin
from faststream.kafka import KafkaBroker
from kit.lanes import adopt_offsets, current_record, subscribe_lanes
from kit.messaging import ensure_topics, make_broker, source_topic
from kit.outages import DependencyUnavailable
from schemas.events import CaseSubmitted, EventRejected, encode_event

from tests.e2e.helpers import eventually, read_topic
from tests.samples import sample_case

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@dataclass
class Topics:
    slow: str
    quick: str
    producer: AIOKafkaProducer
    bootstrap: str

    async def send(self, topic: str, partition: int, *regions: str) -> None:
        for region in regions:
            if region == "garbage":
                body = b"not json {"
            else:
                body = encode_event(
                    CaseSubmitted(case_id=uuid4(), producer="test", case=sample_case(region=region).facts())
                )
            await self.producer.send_and_wait(topic, body, partition=partition)


@pytest.fixture
async def topics(kafka: KafkaCluster) -> AsyncIterator[Topics]:
    slow, quick = f"lanes.slow.{uuid4().hex[:6]}", f"lanes.quick.{uuid4().hex[:6]}"
    await ensure_topics(
        kafka.bootstrap_servers, [slow, quick, f"{slow}.dlq", f"{quick}.dlq"], partitions=2, replication=1
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        yield Topics(slow, quick, producer, kafka.bootstrap_servers)
    finally:
        await producer.stop()


@dataclass
class Handler:
    """Records (topic, region, offset) of each record handled; `stuck*` waits until `free` is set, `rejected` is
    refused, `buggy` always raises, `waits` meets an outage until `outage_over` is set."""

    handled: list[tuple[str, str, int]] = field(default_factory=list)
    tries: dict[str, int] = field(default_factory=dict)
    free: asyncio.Event = field(default_factory=asyncio.Event)
    outage_over: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, event: CaseSubmitted) -> None:
        region = event.case.region
        self.tries[region] = self.tries.get(region, 0) + 1
        if region.startswith("stuck"):
            await self.free.wait()
        if region == "rejected":
            raise EventRejected("refused_here", "the handler refuses it")
        if region == "buggy":
            raise KeyError("a bug met by this record only")
        if region == "waits" and not self.outage_over.is_set():
            raise DependencyUnavailable("intake is down")
        self.handled.append((source_topic(), region, current_record().offset))

    def regions(self, topic: str) -> list[str]:
        return [region for t, region, _ in self.handled if t == topic]


def consumer(topics: Topics, handle: Handler, group: str) -> KafkaBroker:
    broker = make_broker(topics.bootstrap, f"lanes-{uuid4().hex[:6]}")
    subscribe_lanes(broker, [topics.slow, topics.quick], group, (CaseSubmitted,), handle, max_attempts=3)
    return broker


async def _true(value: bool) -> bool:
    return value


async def test_a_stuck_lane_holds_up_only_its_own_topic_and_keeps_its_order(topics: Topics) -> None:
    group = f"lanes-{uuid4().hex[:6]}"
    await topics.send(topics.slow, 0, "stuck", "slow-2", "slow-3")
    handle = Handler()
    broker = consumer(topics, handle, group)
    await broker.start()
    try:
        await eventually(lambda: _true(handle.tries.get("stuck", 0) == 1), 60, "the slow topic's first record")
        await topics.send(topics.quick, 0, "quick-1", "quick-2")
        await topics.send(topics.quick, 1, "quick-3")
        await eventually(lambda: _true(len(handle.regions(topics.quick)) == 3), 60, "the quick topic, meanwhile")
        assert handle.regions(topics.slow) == [], "the slow lane is still stuck on its first record"
        handle.free.set()
        await eventually(lambda: _true(len(handle.regions(topics.slow)) == 3), 60, "the slow lane once free")
        ends = {
            TopicPartition(topics.slow, 0): 3,
            TopicPartition(topics.quick, 0): 2,
            TopicPartition(topics.quick, 1): 1,
        }
        await committed_to(topics.bootstrap, group, ends)
    finally:
        await broker.stop()
    assert handle.regions(topics.slow) == ["stuck", "slow-2", "slow-3"]
    quick = handle.regions(topics.quick)
    assert quick.index("quick-1") < quick.index("quick-2"), "one partition's records in their order"


async def committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    found = [g for g in await kafka_admin.consumer_groups(bootstrap) if g.group_id == group]
    return found[0].committed if found else {}


async def committed_to(bootstrap: str, group: str, expected: dict[TopicPartition, int]) -> None:
    """What the lanes finished is committed: the group's offsets reach `expected` (the partitions' ends)."""

    async def reached() -> bool:
        return await committed(bootstrap, group) == expected

    await eventually(reached, 60, f"the group's offsets at {expected}")


async def test_bad_records_go_to_their_topics_dlq_and_only_their_partition_waits(topics: Topics) -> None:
    group = f"lanes-{uuid4().hex[:6]}"
    await topics.send(topics.slow, 0, "garbage", "rejected", "after-rejected")
    await topics.send(topics.slow, 1, "buggy", "behind-buggy")
    await topics.send(topics.quick, 0, "waits", "behind-waits")
    handle = Handler()
    broker = consumer(topics, handle, group)
    await broker.start()
    try:
        behind = {"behind-buggy", "after-rejected"}
        await eventually(lambda: _true(behind <= set(handle.regions(topics.slow))), 60, "the bad ones passed")
        assert handle.tries["buggy"] == 3
        await eventually(lambda: _true(handle.tries.get("waits", 0) > 3), 60, "the outage to be waited out")
        assert handle.regions(topics.quick) == [], "behind an outage, the partition keeps its order"
        handle.outage_over.set()
        await eventually(lambda: _true(handle.regions(topics.quick) == ["waits", "behind-waits"]), 60, "after it")
        ends = {
            TopicPartition(topics.slow, 0): 3,
            TopicPartition(topics.slow, 1): 2,
            TopicPartition(topics.quick, 0): 2,
        }
        await committed_to(topics.bootstrap, group, ends)
    finally:
        await broker.stop()

    dead = await read_topic(topics.bootstrap, f"{topics.slow}.dlq")
    reasons = sorted({k: v.decode() for k, v in record.headers}["dlq.reason"] for record in dead)
    assert reasons == ["handler_failed", "invalid_json", "refused_here"]
    assert await read_topic(topics.bootstrap, f"{topics.quick}.dlq") == [], "an outage is never dead-lettered"

    # Each record was handled (or parked) once, and the group is committed past all of them: nothing is read again.
    assert handle.tries["rejected"] == handle.tries["after-rejected"] == handle.tries["behind-waits"] == 1


async def test_a_group_replacing_others_starts_where_they_left_off(topics: Topics) -> None:
    """The gateway's one group replaced a group per agency topic: it must not read those topics from the beginning
    (a referral that failed there would be tried again)."""
    old_slow, old_quick, group = (f"lanes-old-{uuid4().hex[:6]}" for _ in range(3))
    await topics.send(topics.slow, 0, "old-1", "old-2", "new-1")
    await topics.send(topics.quick, 1, "old-3", "new-2")
    # The old groups had finished the first records of each topic.
    for old, tp, offset in (
        (old_slow, TopicPartition(topics.slow, 0), 2),
        (old_quick, TopicPartition(topics.quick, 1), 1),
    ):
        committer = AIOKafkaConsumer(bootstrap_servers=topics.bootstrap, group_id=old, enable_auto_commit=False)
        await committer.start()
        try:
            committer.assign([tp])
            await committer.commit({tp: offset})
        finally:
            await committer.stop()

    previous = {topics.slow: old_slow, topics.quick: old_quick}
    adopted = await adopt_offsets(topics.bootstrap, group, previous)
    assert adopted == {TopicPartition(topics.slow, 0): 2, TopicPartition(topics.quick, 1): 1}
    assert await adopt_offsets(topics.bootstrap, group, previous) == {}, "a group with offsets keeps its own"

    handle = Handler()
    broker = consumer(topics, handle, group)
    await broker.start()
    try:
        await eventually(lambda: _true(len(handle.handled) == 2), 60, "the records the old groups had not finished")
    finally:
        await broker.stop()
    assert sorted(region for _, region, _ in handle.handled) == ["new-1", "new-2"]
    assert "old-1" not in handle.tries and "old-3" not in handle.tries
