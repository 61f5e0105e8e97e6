"""One consumer over many topics, each topic in a lane of its own: a slow topic holds up only itself.

A per-record consumer (`messaging.subscribe`) handles one record at a time whatever its topic, so a handler that
waits (an agency's webhook taking its time, a retry waiting for its moment) holds up every topic of the consumer;
the cure used to be one consumer group per topic, and many idle consumers. Here one consumer fetches for all of them
and hands each partition's records to its topic's lane (`lane_of`): the lanes run side by side, each one's records
one at a time in their order, while the consumer goes on fetching for the others.

- A partition whose records are in a lane is paused, so nothing more of it is fetched until they are done; then its
  offset is committed (`OffsetCommitter`) and it is resumed. Records of one partition (one case: the key is the case
  id) are therefore handled in their order, and never two at once.
- The failure rules are those of `messaging.subscribe`, per record: undecodable or rejected (`EventRejected`) → its
  topic's DLQ with the reason, and the partition goes on; a failing handler → the partition is rewound to the record
  and waits (growing backoff), and after `max_attempts` failures the record is parked (`handler_failed`); an outage
  of the system's own → the partition waits, uncounted.
- A partition taken away by a rebalance while its records are in a lane: the lane finishes them, but their offsets are
  not committed; the partition's next owner reads them again and the handler's inbox skips what was done.

`current_record()` is the record being handled (its headers, partition and offset), and `source_topic()` its topic.
"""

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.kafka.subscriber.usecase import LogicSubscriber
from faststream.message import AckStatus
from schemas.events import EventRejected

from . import metrics
from .batches import Item, decode, record_scope
from .errors import DomainError
from .messaging import (
    FLUSH_TIMEOUT_SECONDS,
    E,
    Handler,
    OffsetCommitter,
    PartitionRetries,
    attach,
    publish_dead_letter,
)
from .outages import is_outage

log = logging.getLogger(__name__)

# Records fetched at once for all lanes; a lane gets what its partitions had waiting.
LANES_MAX_RECORDS = 500
# How long one fetch waits when nothing is waiting (FastStream then sleeps as long before fetching again): the most a
# record arriving at an idle consumer waits, and the idle consumer's polling rate.
LANES_WAIT_MS = 100

Record: TypeAlias = ConsumerRecord[Any, Any]
_CURRENT_RECORD: ContextVar[ConsumerRecord[Any, Any]] = ContextVar("current_record")


def current_record() -> ConsumerRecord[Any, Any]:
    """The Kafka record a lane's handler is handling."""
    return _CURRENT_RECORD.get()


def record_headers(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    return {key: value.decode("utf-8", "replace") for key, value in record.headers or ()}


@contextmanager
def reading(record: ConsumerRecord[Any, Any]) -> Iterator[None]:
    """`current_record()` is `record` inside the block."""
    token = _CURRENT_RECORD.set(record)
    try:
        yield
    finally:
        _CURRENT_RECORD.reset(token)


class LaneCommitter(OffsetCommitter):
    """Commits the lanes' offsets; on close, gives the records in the lanes a moment to finish first."""

    def __init__(self) -> None:
        super().__init__()
        self.running: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        if self.running:
            _, unfinished = await asyncio.wait(self.running, timeout=FLUSH_TIMEOUT_SECONDS)
            for task in unfinished:  # read again after the restart; the inbox skips what was done
                task.cancel()
        await super().close()


def subscribe_lanes(
    broker: KafkaBroker,
    topics: Sequence[str],
    group_id: str,
    accepts: tuple[type[E], ...],
    handle: Handler[E],
    *,
    max_attempts: int,
    lane_of: Callable[[str], str] = lambda topic: topic,
    on_fetched: Callable[[Sequence[Record]], None] | None = None,
) -> LogicSubscriber[Any]:
    """Consume `topics` in `group_id` with one consumer, calling `handle` with each decoded event in its topic's lane
    (the module's docstring gives the rules). `on_fetched` sees each fetch's records before the lanes get them (to
    prepare work that spans lanes; it must not raise). Returns the subscriber (its lag is a metric)."""
    if not topics:
        raise ValueError("subscribe_lanes needs at least one topic")
    committer = LaneCommitter()
    retries = PartitionRetries(max_attempts)
    locks: dict[str, asyncio.Lock] = {}

    async def on_batch(received: Any) -> None:
        message: KafkaMessage = received  # the message itself: `attach`'s decoder is `_the_message`
        records: tuple[ConsumerRecord[Any, Any], ...] = message.raw_message
        consumer = getattr(message, "consumer", None)
        if isinstance(consumer, AIOKafkaConsumer):
            message.committed = AckStatus.ACKED  # offsets are committed by the lanes
        if on_fetched is not None:
            on_fetched(records)
        by_partition: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {}
        for record in records:
            by_partition.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        for tp, waiting in by_partition.items():
            if isinstance(consumer, AIOKafkaConsumer):
                consumer.pause(tp)  # nothing more of it until these are done
            lock = locks.setdefault(lane_of(tp.topic), asyncio.Lock())
            task = asyncio.create_task(run(consumer, tp, waiting, lock), name=f"lane {tp.topic}[{tp.partition}]")
            committer.running.add(task)
            task.add_done_callback(committer.running.discard)
        if not isinstance(consumer, AIOKafkaConsumer):  # the in-memory test broker: no partitions to pause
            await asyncio.gather(*committer.running)

    async def run(
        consumer: Any, tp: TopicPartition, waiting: list[ConsumerRecord[Any, Any]], lock: asyncio.Lock
    ) -> None:
        async with lock:
            for record in waiting:
                delay = await one(consumer, tp, record)
                if delay is not None:
                    _wait_then_read_again(consumer, tp, record.offset, delay)
                    return
                committer.handled_at(consumer, tp, record.offset + 1)
                retries.done_with(tp)
        _resume(consumer, tp)

    async def one(consumer: Any, tp: TopicPartition, record: ConsumerRecord[Any, Any]) -> float | None:
        """Handle one record; None when it is done with (handled or dead-lettered), else how long its partition
        waits before it is read again."""
        item = decode(record, record.topic, accepts)
        if item.event is None:
            assert item.rejected is not None
            return await _dead_letter(broker, item, group_id, retries, *item.rejected)
        event = item.event
        with reading(record), record_scope(item):
            try:
                await handle(event)  # type: ignore[arg-type]
            except (EventRejected, DomainError) as rejected:  # refused: to the DLQ with its reason
                parked = await _dead_letter(broker, item, group_id, retries, rejected.reason, rejected.detail)
                if parked is None:
                    metrics.event_handled(group_id, event, "dead_lettered")
                return parked
            except Exception as error:
                if is_outage(error):
                    delay = retries.wait_on(tp)
                    log.warning("a dependency is down (%s); %s waits %.1fs", type(error).__name__, tp, delay)
                    metrics.event_handled(group_id, event, "waiting")
                    return delay
                failures = retries.failed_at(tp, record.offset)
                if failures >= retries.max_attempts:
                    log.exception("handling %s failed %d times; parked in the DLQ", event.type, failures)
                    detail = f"{type(error).__name__} after {failures} attempts"
                    parked = await _dead_letter(broker, item, group_id, retries, "handler_failed", detail)
                    if parked is None:
                        metrics.event_handled(group_id, event, "dead_lettered")
                    return parked
                return retries.again_later(tp, group_id, event, error, failures)
        metrics.event_handled(group_id, event, "processed")
        return None

    return attach(
        broker,
        list(topics),
        group_id,
        on_batch,
        committer,
        "_lanes",
        batch=True,
        max_records=LANES_MAX_RECORDS,
        batch_timeout_ms=LANES_WAIT_MS,
    )


async def _dead_letter(
    broker: KafkaBroker, item: Item, group_id: str, retries: PartitionRetries, reason: str, detail: str
) -> float | None:
    """Copy the record to its topic's DLQ: None when done, or how long its partition waits when Kafka refused it."""
    try:
        await publish_dead_letter(broker, item.record, item.topic, group_id, reason, detail)
    except Exception as error:
        delay = retries.wait_on(item.tp)
        log.warning("dead-lettering failed (%s); %s waits %.1fs", type(error).__name__, item.tp, delay)
        return delay
    return None


def _wait_then_read_again(consumer: Any, tp: TopicPartition, offset: int, delay: float) -> None:
    """Rewind the (paused) partition to `offset` and resume it after `delay`."""
    if not isinstance(consumer, AIOKafkaConsumer) or tp not in consumer.assignment():
        return  # taken away meanwhile: its next owner reads it from the last committed offset
    consumer.seek(tp, offset)
    asyncio.get_running_loop().call_later(delay, _resume, consumer, tp)


def _resume(consumer: Any, tp: TopicPartition) -> None:
    if isinstance(consumer, AIOKafkaConsumer) and tp in consumer.assignment():
        consumer.resume(tp)


async def adopt_offsets(
    bootstrap_servers: str,
    group_id: str,
    previous: Mapping[str, str],
    client_config: Mapping[str, Any] | None = None,
) -> dict[TopicPartition, int]:
    """Start a group that replaces others where they were: when `group_id` has no offsets yet, each topic's are
    copied from the group that read it before (`previous`: topic -> group). Without it a replacing group would read
    its topics from the beginning, and the records the old groups had finished would be handled again. Returns what
    was copied (nothing when the group has offsets of its own already, or the old groups had none)."""
    config = dict(client_config or {})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="offset-adoption", **config)
    await admin.start()
    try:
        if any(meta.offset >= 0 for meta in (await admin.list_consumer_group_offsets(group_id)).values()):
            return {}
        offsets: dict[TopicPartition, int] = {}
        for old in sorted(set(previous.values())):
            for tp, meta in (await admin.list_consumer_group_offsets(old)).items():
                if meta.offset >= 0 and previous.get(tp.topic) == old:
                    offsets[tp] = int(meta.offset)
    finally:
        await admin.close()
    if not offsets:
        return {}
    # A consumer of the group with its partitions assigned by hand commits for the group without joining it.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group_id, enable_auto_commit=False, **config
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()
    log.info(
        "group %s starts where %s left off: %d partition(s)", group_id, sorted(set(previous.values())), len(offsets)
    )
    return offsets
