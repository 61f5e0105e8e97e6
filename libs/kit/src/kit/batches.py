"""Batch consumption: the records waiting on a consumer's partitions handled in one database transaction.

A per-record consumer (`messaging.subscribe`) pays a transaction, a commit and its round trips for every record; here
one transaction covers up to `max_records`. When a record of it fails, the transaction is rolled back and the batch
applied again with each record in a savepoint of its own, so the failure rules stay per record
(docs/architecture.md) while the cost of a commit is shared, and a batch that goes through pays for no savepoint:

- a record that cannot be decoded, or that the handler rejects (`EventRejected`, its savepoint rolled back), goes to
  `<topic>.dlq` with its reason after the commit; its neighbours are not touched;
- a record whose handler fails has its savepoint rolled back; the records behind it *on its partition* wait (the
  partition is rewound to it and paused, with growing backoff), the other partitions' records commit; after
  `max_attempts` failures it is parked (`handler_failed`) and the partition goes on after it;
- an outage of the system's own (`is_outage`) rolls the whole batch back and every partition of it waits, uncounted;
- any other failure of the batch as a whole (its commit, say) is retried at once one record per transaction, so a
  record that breaks only in company is isolated the same way.

Records of one partition (one case: the key is the case id) are handled in their order. Offsets are committed after
the transaction (`OffsetCommitter`); a crash or a rebalance between the two means the batch is read again, and the
inbox, written in the same transaction as the effects, skips what was done.
"""

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.kafka.subscriber.usecase import LogicSubscriber
from faststream.message import AckStatus
from opentelemetry.trace import SpanKind
from schemas.events import Envelope, EventRejected, decode_event

from . import metrics
from .erasure import check_erasures, erasures_known
from .errors import DomainError
from .inbox import claim, claimed, seen_before
from .logs import log_context
from .messaging import (
    _SOURCE_TOPIC,
    E,
    OffsetCommitter,
    PartitionRetries,
    attach,
    publish_dead_letter,
    wait_then_read_again,
)
from .outages import is_outage
from .telemetry import annotate_span, context_from_headers, tracer

log = logging.getLogger(__name__)

Apply = Callable[[asyncpg.Connection, E], Awaitable[None]]

DEFAULT_MAX_RECORDS = 200
# How long one fetch waits for records when none are waiting; FastStream then sleeps as long before the next fetch,
# so this is also the most a record arriving at an idle consumer waits.
BATCH_WAIT_MS = 20
# A consumer given a gathering window asks the broker for at least this much per fetch, so the broker answers when the
# window ends (or this much is waiting): one fetch, one batch and one transaction per window, not per record.
GATHER_MIN_BYTES = 1024 * 1024


@dataclass
class Item:
    """One record of a batch and what became of it."""

    record: ConsumerRecord[Any, Any]
    topic: str
    event: Envelope | None = None
    rejected: tuple[str, str] | None = None  # (reason, detail): to the DLQ
    error: BaseException | None = None  # the handler failed: the partition waits

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.record.topic, self.record.partition)


class Outage(Exception):
    """The system's own dependency is down: the whole batch waits (carries the original error)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


def decode(record: ConsumerRecord[Any, Any], topic: str, accepts: tuple[type[Envelope], ...]) -> Item:
    item = Item(record, topic)
    try:
        item.event = decode_event(record.value or b"", accepts)
    except EventRejected as rejected:
        item.rejected = (rejected.reason, rejected.detail)
    except Exception as error:  # a bug in decoding must not stall the partition either
        item.rejected = ("undecodable", type(error).__name__)
    return item


async def handle_items(
    pool: asyncpg.Pool,
    items: Sequence[Item],
    apply: Apply[Any],
    *,
    one_transaction: bool,
    inbox: str | None = None,
    wants: Callable[[Any], bool] | None = None,
    checks_erasure: bool = False,
) -> None:
    """Apply each decoded item in order, in one transaction (or one transaction each), marking it rejected or failed;
    the records behind a failed one on its partition are left untouched (`_settle` stops the partition at the failed
    one). With `inbox`, the events seen before are skipped without any work, and so are those `wants` says no to (no
    connection is taken when that is all of them). Raises `Outage` when a dependency of the system's own is down.

    In one transaction the records are first applied one after the other with nothing in between; only when one of
    them fails is that transaction rolled back and the batch applied again with a savepoint for each record (the one
    that failed is not tried again: it is rejected or failed as it was), so a batch that goes through, the usual case,
    pays no savepoint's two round trips per record."""
    if wants is not None:
        items = [item for item in items if item.event is not None and item.rejected is None and wants(item.event)]
    if not any(item.event is not None and item.rejected is None for item in items):
        return
    try:
        async with pool.acquire() as conn:  # PostgreSQL away here is an outage as much as inside the transaction
            if not one_transaction:  # each record its own transaction: nothing shared between them
                await _apply_each(conn, items, apply, inbox, savepoints=True)
                return
            try:
                async with conn.transaction():
                    await _apply_each(conn, items, apply, inbox, savepoints=False, checks_erasure=checks_erasure)
                return
            except _Isolate as failed:
                log.debug("a record of a batch of %d failed (%s); again, each in a savepoint", len(items), failed)
            async with conn.transaction():
                await _apply_each(conn, items, apply, inbox, savepoints=True, checks_erasure=checks_erasure)
    except Outage:
        raise
    except Exception as error:
        if is_outage(error):
            raise Outage(error) from error
        raise


class _Isolate(Exception):
    """A record failed in a batch applied without savepoints: apply it again with one per record."""


async def _apply_each(
    conn: asyncpg.Connection,
    items: Sequence[Item],
    apply: Apply[Any],
    inbox: str | None,
    *,
    savepoints: bool,
    checks_erasure: bool = False,
) -> None:
    """Without savepoints (the whole batch commits or nothing of it does) the inbox rows of all its events are written
    in one statement first (`kit.inbox.claim`); with them, each record writes its own in its savepoint, so a rejected
    record is not recorded as processed. `checks_erasure`: the erasure locks and answers of all the batch's cases in
    two statements (`kit.erasure.check_erasures`), which `is_erased` then answers from."""
    blocked: set[TopicPartition] = set()
    events = [item.event for item in items if item.event is not None and item.rejected is None]
    ids = [event.event_id for event in events]
    with ExitStack() as scope:
        fresh: set[UUID] | None = None  # without savepoints: the claimed events not yet applied
        known: set[UUID] = set()
        if inbox is not None and ids:
            if savepoints:
                known = await seen_before(conn, inbox, ids)
            else:
                fresh = await claim(conn, inbox, ids)
                scope.enter_context(claimed(conn, inbox, fresh))  # a copy of its own: `fresh` is the loop's
        if checks_erasure and events:
            scope.enter_context(erasures_known(conn, await check_erasures(conn, (e.case_id for e in events))))
        for item in items:
            if item.rejected is not None or item.event is None:
                continue
            if item.tp in blocked:
                continue  # behind a failed record of its partition: read again with it
            if item.error is not None:  # failed when the batch went without savepoints: not applied a second time
                blocked.add(item.tp)
                continue
            if item.event.event_id in known or (fresh is not None and item.event.event_id not in fresh):
                continue  # done before (a redelivery, or the service's own event coming back), or twice in the batch
            if fresh is not None:
                fresh.discard(item.event.event_id)
            await _apply_one(conn, item, apply, blocked, savepoints=savepoints)


async def _apply_one(
    conn: asyncpg.Connection, item: Item, apply: Apply[Any], blocked: set[TopicPartition], *, savepoints: bool
) -> None:
    assert item.event is not None
    with record_scope(item):
        try:
            if savepoints:
                async with conn.transaction():  # a savepoint inside the batch's transaction
                    await apply(conn, item.event)
            else:
                await apply(conn, item.event)
        except (EventRejected, DomainError) as rejected:  # refused: to the DLQ with its reason
            item.rejected = (rejected.reason, rejected.detail)
            if not savepoints:
                raise _Isolate(rejected.reason) from rejected
        except Exception as error:
            if is_outage(error):
                raise Outage(error) from error
            item.error = error
            blocked.add(item.tp)
            if not savepoints:
                raise _Isolate(type(error).__name__) from error


@contextmanager
def record_scope(item: Item) -> Iterator[None]:
    """The record's own consumer span (the child of the span that produced it), its ids in the logs and on the span,
    and its topic for `source_topic()`."""
    assert item.event is not None
    event = item.event
    headers = {k: v.decode("utf-8", "replace") for k, v in (item.record.headers or ())}
    ids = {
        "case_id": event.case_id,
        "event_id": event.event_id,
        "referral_id": getattr(event, "referral_id", None),
        "agency_id": getattr(event, "agency_id", None),
    }
    attributes = {
        "messaging.system": "kafka",
        "messaging.destination.name": item.topic,
        "messaging.operation": "process",
        "messaging.kafka.destination.partition": item.record.partition,
        "messaging.kafka.message.offset": item.record.offset,
    }
    token = _SOURCE_TOPIC.set(item.topic)
    try:
        with (
            tracer.start_as_current_span(
                f"{item.topic} process",
                context=context_from_headers(headers),
                kind=SpanKind.CONSUMER,
                attributes=attributes,
            ),
            log_context(**ids),
        ):
            annotate_span(event_type=event.type, **ids)
            yield
    finally:
        _SOURCE_TOPIC.reset(token)


def subscribe_batch(
    broker: KafkaBroker,
    topic: str | Sequence[str],
    group_id: str,
    accepts: tuple[type[E], ...],
    apply: Apply[E],
    pool: Callable[[], asyncpg.Pool],
    *,
    max_records: int = DEFAULT_MAX_RECORDS,
    max_attempts: int,
    inbox: str | None = None,
    wants: Callable[[E], bool] | None = None,
    checks_erasure: bool = False,
    gather_ms: int | None = None,
) -> LogicSubscriber[Any]:
    """Consume `topic` in `group_id` in batches of up to `max_records`, calling `apply(conn, event)` for each record
    inside the batch's transaction (the module's docstring gives the rules). `apply` must do all its work on `conn`
    (its inbox check included) and nothing outside the database; `inbox`, the consumer name `apply` records its
    events under, lets the batch skip the events seen before with one query; `wants`, the events `apply` does something
    with, lets it skip the others without a savepoint (or a transaction, when the batch has none it wants).
    `gather_ms`, for a consumer no one waits on: the broker holds each fetch that long (unless GATHER_MIN_BYTES are
    waiting), so the records arriving meanwhile make one batch, a record waiting at most that much longer. Returns
    the subscriber (its lag is a metric)."""
    topics = [topic] if isinstance(topic, str) else list(topic)
    if not topics:
        raise ValueError("subscribe_batch needs at least one topic")
    committer = OffsetCommitter()
    retries = PartitionRetries(max_attempts)

    async def on_batch(received: Any) -> None:
        message: KafkaMessage = received  # the message itself: `attach`'s decoder is `_the_message`
        records: tuple[ConsumerRecord[Any, Any], ...] = message.raw_message
        consumer = getattr(message, "consumer", None)
        if isinstance(consumer, AIOKafkaConsumer):
            message.committed = AckStatus.ACKED  # offsets are committed here, record by record
        items = [decode(r, r.topic if len(topics) > 1 else topics[0], accepts) for r in records]
        try:
            try:
                await handle_items(
                    pool(), items, apply, one_transaction=True, inbox=inbox, wants=wants, checks_erasure=checks_erasure
                )
            except Outage:
                raise
            except Exception as error:
                log.warning("a batch of %d failed as a whole (%s); one record at a time", len(items), error)
                for item in items:
                    item.error = None
                    if item.rejected is not None and item.event is not None:
                        item.rejected = None  # decided inside the rolled-back transaction: decided again
                await handle_items(pool(), items, apply, one_transaction=False, inbox=inbox, wants=wants)
        except Outage as outage:
            await _all_wait(consumer, items, retries, group_id, outage.error)
            return
        except Exception as error:  # a bug, or a failure twice over: nothing of the batch committed, all of it waits
            log.exception("a batch of %d could not be handled", len(items))
            await _all_wait(consumer, items, retries, group_id, error)
            return
        await _settle(broker, consumer, items, group_id, committer, retries)

    return attach(
        broker,
        topics,
        group_id,
        on_batch,
        committer,
        "_batch",
        batch=True,
        max_records=max_records,
        batch_timeout_ms=BATCH_WAIT_MS,
        **({} if gather_ms is None else {"fetch_max_wait_ms": gather_ms, "fetch_min_bytes": GATHER_MIN_BYTES}),
    )


async def _all_wait(
    consumer: Any, items: Sequence[Item], retries: PartitionRetries, group_id: str, error: BaseException
) -> None:
    """Nothing of the batch committed: each of its partitions is read again from its first record of the batch."""
    firsts: dict[TopicPartition, Item] = {}
    for item in items:
        firsts.setdefault(item.tp, item)
        if item.event is not None:
            metrics.event_handled(group_id, item.event, "waiting")
    for tp, item in firsts.items():
        delay = retries.wait_on(tp)
        log.warning("a dependency is down (%s); %s waits %.1fs", type(error).__name__, tp, delay)
        await wait_then_read_again(consumer, tp, item.record.offset, delay)


async def _settle(
    broker: KafkaBroker,
    consumer: Any,
    items: Sequence[Item],
    group_id: str,
    committer: OffsetCommitter,
    retries: PartitionRetries,
) -> None:
    """After the commit, per partition in order: dead-letter what was rejected, commit the offsets of what is done,
    and make a partition whose record failed wait (or park that record once it has failed too often)."""
    stopped: set[TopicPartition] = set()
    for item in items:
        tp, offset = item.tp, item.record.offset
        if tp in stopped:
            continue
        try:
            if item.error is not None:
                stopped.add(tp)
                await _failed(broker, consumer, item, group_id, committer, retries)
                continue
            if item.rejected is not None:
                reason, detail = item.rejected
                await publish_dead_letter(broker, item.record, item.topic, group_id, reason, detail)
                if item.event is not None:
                    metrics.event_handled(group_id, item.event, "dead_lettered")
            elif item.event is not None:
                metrics.event_handled(group_id, item.event, "processed")
        except Exception as error:  # Kafka away while dead-lettering: the partition is read again from this record
            stopped.add(tp)
            delay = retries.wait_on(tp)
            log.warning("dead-lettering failed (%s); %s waits %.1fs", type(error).__name__, tp, delay)
            await wait_then_read_again(consumer, tp, offset, delay)
            continue
        committer.handled_at(consumer, tp, offset + 1)
        retries.done_with(tp)


async def _failed(
    broker: KafkaBroker,
    consumer: Any,
    item: Item,
    group_id: str,
    committer: OffsetCommitter,
    retries: PartitionRetries,
) -> None:
    assert item.event is not None and item.error is not None
    tp, offset, error, event = item.tp, item.record.offset, item.error, item.event
    failures = retries.failed_at(tp, offset)
    if failures >= retries.max_attempts:
        log.error("handling %s failed %d times; parked in the DLQ", event.type, failures, exc_info=error)
        detail = f"{type(error).__name__} after {failures} attempts"
        await publish_dead_letter(broker, item.record, item.topic, group_id, "handler_failed", detail)
        metrics.event_handled(group_id, event, "dead_lettered")
        committer.handled_at(consumer, tp, offset + 1)
        retries.done_with(tp)
        await wait_then_read_again(consumer, tp, offset + 1, 0.0)  # the records behind it were not handled
        return
    delay = retries.again_later(tp, group_id, event, error, failures)
    await wait_then_read_again(consumer, tp, offset, delay)
