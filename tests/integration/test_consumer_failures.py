"""The failure rules every consumer follows (kit.messaging.subscribe), on a real Kafka broker:

- a record whose handler keeps failing is parked in `<topic>.dlq` (`handler_failed`, the exception's type) after
  `max_attempts` tries, and the record behind it on the same partition is handled;
- while one partition waits out a dependency's outage, the consumer's other partitions go on, and the waiting
  record is never dead-lettered however long the outage lasts.
"""

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from devstack import KafkaCluster
from kit.messaging import ensure_topics, make_broker, subscribe
from kit.outages import DependencyUnavailable
from schemas.events import CaseSubmitted, encode_event

from tests.e2e.helpers import eventually, read_topic
from tests.samples import sample_case

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOPIC = "consumer.failures"


def case_in(region: str) -> CaseSubmitted:
    return CaseSubmitted(case_id=uuid4(), producer="test", case=sample_case(region=region).facts())


@pytest.fixture
async def producer(kafka: KafkaCluster) -> AsyncIterator[AIOKafkaProducer]:
    await ensure_topics(kafka.bootstrap_servers, [TOPIC, f"{TOPIC}.dlq"], partitions=2, replication=1)
    started = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def test_a_record_failing_again_and_again_is_parked_and_the_partition_moves_on(
    kafka: KafkaCluster, producer: AIOKafkaProducer
) -> None:
    handled: list[str] = []
    tries: dict[str, int] = {}
    outage_over = asyncio.Event()

    async def handle(event: CaseSubmitted) -> None:
        region = event.case.region
        tries[region] = tries.get(region, 0) + 1
        if region == "buggy":
            raise KeyError("a bug met by this record only")
        if region == "waits" and not outage_over.is_set():
            raise DependencyUnavailable("intake is down")
        handled.append(region)

    broker = make_broker(kafka.bootstrap_servers, "failure-rules")
    subscribe(broker, TOPIC, "failure-rules", (CaseSubmitted,), handle, max_attempts=3)
    # Partition 0: the buggy record, then a good one behind it. Partition 1: one waiting out an outage, then another.
    for region, partition in [("buggy", 0), ("behind-buggy", 0), ("waits", 1), ("behind-waits", 1)]:
        await producer.send_and_wait(TOPIC, encode_event(case_in(region)), partition=partition)
    await broker.start()
    try:
        await eventually(lambda: _true("behind-buggy" in handled), 60, "the record behind the buggy one")
        assert tries["buggy"] == 3 and "buggy" not in handled
        # The outage has lasted longer than the buggy record's three tries: still waiting, never dead-lettered.
        await eventually(lambda: _true(tries.get("waits", 0) > 3), 60, "the waiting record to be tried again")
        assert "behind-waits" not in handled, "a partition keeps its order while it waits"
        outage_over.set()
        await eventually(lambda: _true("behind-waits" in handled), 60, "the partition after the outage")
        assert handled.index("waits") < handled.index("behind-waits")
    finally:
        await broker.stop()

    dead = await read_topic(kafka.bootstrap_servers, f"{TOPIC}.dlq")
    headers = [{k: v.decode() for k, v in record.headers} for record in dead]
    assert [(h["dlq.reason"], h["dlq.detail"]) for h in headers] == [("handler_failed", "KeyError after 3 attempts")]
    assert "a bug met" not in str(headers), "the exception's type only, never its message"


async def _true(value: bool) -> bool:
    return value
