"""Kafka plumbing: the broker, topic creation, and subscribers that dead-letter bad records and retry failures."""

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.subscriber.usecase import LogicSubscriber
from faststream.message import AckStatus, StreamMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from schemas.events import Envelope, EventRejected, decode_event
from schemas.topics import dlq_topic

from . import metrics
from .errors import DomainError
from .logs import log_context
from .outages import is_outage
from .telemetry import annotate_span

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Envelope)
Handler = Callable[[E], Awaitable[None]]

MAX_RETRY_DELAY_SECONDS = 30.0
FIRST_RETRY_DELAY_SECONDS = 0.25
# How many times one record may fail its handler before it is parked in the DLQ (HANDLER_MAX_ATTEMPTS).
DEFAULT_MAX_ATTEMPTS = 5
# How long a handled record's offset may wait to be committed: one commit then covers every record handled meanwhile.
COMMIT_INTERVAL_SECONDS = 0.2
# A consumer with nothing to read waits this long on the broker per fetch; data ends the wait at once.
FETCH_MAX_WAIT_MS = 1000
FLUSH_TIMEOUT_SECONDS = 5.0


def make_broker(bootstrap_servers: str, client_id: str, client_config: Mapping[str, Any] | None = None) -> KafkaBroker:
    """The service's broker: idempotent producer with acks=all, trace context in headers, Prometheus metrics.

    `client_config` is the settings' `kafka_client_config()`: SASL credentials on a secured broker.
    """
    return KafkaBroker(
        # FastStream takes one string as one address: "host1:9092,host2:9092" must be split, or only a
        # single-broker cluster can be reached.
        [server.strip() for server in bootstrap_servers.split(",") if server.strip()],
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        middlewares=[
            KafkaTelemetryMiddleware(),
            KafkaPrometheusMiddleware(registry=metrics.REGISTRY, app_name=client_id),
        ],
        logger=logging.getLogger(f"faststream.{client_id}"),
        # FastStream's "Received" and "Processed", two lines per message handed to a handler: only when debugging.
        log_level=logging.DEBUG,
        security=broker_security(client_config or {}),
        # The kit's handlers take the message itself (`attach` gives them `_the_message` as decoder) and decode its
        # records by their own rules: no FastDepends. Its `Context("message")` would be resolved by a synchronous
        # function, which FastDepends runs in a worker thread: one thread hop per fetch, about a tenth of the
        # gateway's CPU under load (py-spy, docs/benchmark.md).
        apply_types=False,
    )


def broker_security(client_config: Mapping[str, Any]) -> BaseSecurity | None:
    """FastStream's form of the aiokafka SASL options in `client_config`."""
    protocol = client_config.get("security_protocol", "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return None
    kinds: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }
    kind = kinds.get(client_config.get("sasl_mechanism", ""))
    if kind is None:
        raise ValueError(f"unsupported Kafka security: {protocol} {client_config.get('sasl_mechanism')}")
    return kind(
        username=client_config["sasl_plain_username"],
        password=client_config["sasl_plain_password"],
        ssl_context=client_config.get("ssl_context"),
        use_ssl=protocol == "SASL_SSL",
    )


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    partitions: int,
    replication: int,
    client_config: Mapping[str, Any] | None = None,
) -> None:
    """Create the topics a service uses, if missing; an existing topic is left as it is."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="topic-setup", **(client_config or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name=t, num_partitions=partitions, replication_factor=replication)
            for t in sorted(set(topics) - existing)
        ]
        if not wanted:
            return
        response = await admin.create_topics(wanted)
        for name, code, *_ in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise RuntimeError(f"creating topic {name} failed with Kafka error code {code}")
        log.info("created topics %s", [t.name for t in wanted])
    finally:
        await admin.close()


_SOURCE_TOPIC: ContextVar[str] = ContextVar("source_topic")


def source_topic() -> str:
    """The topic of the record being handled, for a handler subscribed to several (`subscribe(broker, [...], ...)`)."""
    return _SOURCE_TOPIC.get()


def subscribe(
    broker: KafkaBroker,
    topic: str | Sequence[str],
    group_id: str,
    accepts: tuple[type[E], ...],
    handle: Handler[E],
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> LogicSubscriber[Any]:
    """Consume `topic` in `group_id`, calling `handle` with each decoded event.

    `topic` may be a list: one consumer then reads every topic of it in the one group (fewer consumers, one group
    join); each record still dead-letters to its own topic's DLQ, and `source_topic()` names it for `handle`.

    The offset is committed only after `handle` returns, so its transaction has committed; offsets of records
    handled in the same moment go in one commit (`OffsetCommitter`). The failure rules (docs/architecture.md):
    - a record that is not a known, valid event, for whatever reason (or that `handle` rejects), goes to
      `<topic>.dlq` with the reason in headers, and the partition moves on;
    - when `handle` fails, the record's partition waits (paused, with growing backoff; the consumer's other
      partitions go on) and the record is tried again; after `max_attempts` failures it is parked in the DLQ
      (`handler_failed`, with the exception's type) and the partition moves on;
    - when a dependency of the system's own is down (`is_outage`: PostgreSQL, Kafka, or `DependencyUnavailable`), the
      partition waits the same way for as long as it takes, and the record is never counted as failing.
    The consumer's span carries the event's ids (`onestop.case_id`, ...) so a case's spans can be found.
    Returns the subscriber (its consumer's lag is a metric).
    """
    topics = [topic] if isinstance(topic, str) else list(topic)
    if not topics:
        raise ValueError("subscribe needs at least one topic")
    committer = OffsetCommitter()
    retries = PartitionRetries(max_attempts)

    async def on_record(received: Any) -> None:
        message: KafkaMessage = received  # the message itself: `attach`'s decoder is `_the_message`
        source = _record_topic(message) if len(topics) > 1 else topics[0]
        reset = _SOURCE_TOPIC.set(source)
        try:
            done = await on_source_record(message, source)
        finally:
            _SOURCE_TOPIC.reset(reset)
        if done:
            retries.done(message)
            committer.handled(message)

    async def on_source_record(message: KafkaMessage, topic: str) -> bool:
        """True when the record is done with (handled or dead-lettered); False when it is to be tried again."""
        try:
            event = decode_event(message.body, accepts)
        except EventRejected as rejected:
            await dead_letter(broker, message, topic, group_id, rejected.reason, rejected.detail)
            return True
        except Exception as error:  # a bug in decoding must not stall the partition either
            await dead_letter(broker, message, topic, group_id, "undecodable", type(error).__name__)
            return True
        ids = {
            "case_id": event.case_id,
            "event_id": event.event_id,
            "referral_id": getattr(event, "referral_id", None),
            "agency_id": getattr(event, "agency_id", None),
        }
        annotate_span(event_type=event.type, **ids)
        with log_context(**ids):
            try:
                await handle(event)  # type: ignore[arg-type]
            except (EventRejected, DomainError) as rejected:  # refused: to the DLQ with its reason
                await dead_letter(broker, message, topic, group_id, rejected.reason, rejected.detail)
                return True
            except Exception as error:
                if is_outage(error):
                    delay = retries.wait(message)
                    log.warning("a dependency is down (%s); %s waits %.1fs", type(error).__name__, event.type, delay)
                    metrics.event_handled(group_id, event, "waiting")
                    await hold(message, delay)
                    return False
                failures = retries.failed(message)
                if failures >= retries.max_attempts:
                    log.exception("handling %s failed %d times; parked in the DLQ", event.type, failures)
                    detail = f"{type(error).__name__} after {failures} attempts"
                    await dead_letter(broker, message, topic, group_id, "handler_failed", detail)
                    metrics.event_handled(group_id, event, "dead_lettered")
                    return True
                delay = retries.again_later(_position(message)[0], group_id, event, error, failures)
                await hold(message, delay)
                return False
            metrics.event_handled(group_id, event, "processed")
            return True

    return attach(broker, topics, group_id, on_record, committer)


def attach(
    broker: KafkaBroker,
    topics: Sequence[str],
    group_id: str,
    handler: Callable[..., Awaitable[Any]],
    committer: "OffsetCommitter",
    suffix: str = "",
    **options: Any,
) -> LogicSubscriber[Any]:
    """Subscribe `handler` (named after its topics, for FastStream's logs) to `topics` in `group_id`, reading from the
    earliest offset a new group finds and acknowledging by the kit's rules; `committer` commits its offsets."""
    named = topics[0] if len(topics) == 1 else f"{topics[0]}_and_{len(topics) - 1}_more"
    handler.__name__ = f"on_{named.replace('.', '_').replace('-', '_')}{suffix}"
    subscriber: LogicSubscriber[Any] = broker.subscriber(
        *topics,
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=options.pop("fetch_max_wait_ms", FETCH_MAX_WAIT_MS),
        listener=committer,
        decoder=_the_message,
        **options,
    )
    subscriber(handler)
    committer.subscriber = subscriber
    _COMMITTERS.setdefault(broker, []).append(committer)
    return subscriber


async def _the_message(message: StreamMessage[Any]) -> StreamMessage[Any]:
    """The handler's argument: the message itself, its records undecoded (FastStream would parse each body as JSON,
    which the handler does again by the contracts)."""
    return message


_COMMITTERS: "weakref.WeakKeyDictionary[KafkaBroker, list[OffsetCommitter]]" = weakref.WeakKeyDictionary()


async def flush_commits(broker: KafkaBroker) -> None:
    """Commit what the broker's consumers have handled so far: before stopping them, so a restart does not repeat it."""
    for committer in _COMMITTERS.get(broker, []):
        try:
            await asyncio.wait_for(committer.close(), FLUSH_TIMEOUT_SECONDS)
        except (TimeoutError, KafkaError):
            log.warning("offsets not committed before stopping; the records after them will be read again")


class OffsetCommitter(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits a consumer's handled offsets a few times a second, instead of one round trip to Kafka per record.

    A consumer handles its records one at a time, so the offset after the last record handled on a partition is
    safe to commit: everything before it is handled (at least once). Handled records whose commit was still waiting
    when the process died, or when a rebalance moved their partition, are read again by whoever reads the partition
    next, and the inbox drops them by event_id. Nothing here waits inside a rebalance: a commit made from the
    rebalance listener can wait on the very coordinator the rebalance is waiting for (seen when the broker restarts).

    One commit is out at a time, and none is given up on: aiokafka sends a commit shielded from its caller's
    cancellation and retries it while the coordinator is away, so a commit abandoned here (on a timeout, say) could
    still land after a later one and put the group's offsets back. Seen in the `kafka` fault scenario: after the broker
    restarted, notify's `case.submitted` group had 1572 committed on a partition, then 1392 and 1396 from commits
    abandoned during the outage; a lag that was not there stayed for good, since no record came to commit again.
    """

    def __init__(self, interval_seconds: float = COMMIT_INTERVAL_SECONDS) -> None:
        self.interval_seconds = interval_seconds
        self.subscriber: LogicSubscriber[Any] | None = None
        self._pending: dict[TopicPartition, int] = {}
        self._scheduled: asyncio.Task[None] | None = None
        self._committing = asyncio.Lock()  # one flush at a time
        # The commit out now, with its offsets: waited for, even by a flush whose caller was cancelled meanwhile.
        self._out: tuple[asyncio.Future[Any], dict[TopicPartition, int]] | None = None

    def handled(self, message: KafkaMessage) -> None:
        """The record is done with (handled or dead-lettered): commit its offset with the next batch."""
        consumer = getattr(message, "consumer", None)
        if not isinstance(consumer, AIOKafkaConsumer):
            return  # the in-memory test broker: nothing to commit
        raw = message.raw_message
        record = raw[0] if isinstance(raw, tuple) else raw
        self._pending[TopicPartition(record.topic, record.partition)] = record.offset + 1
        message.committed = AckStatus.ACKED  # FastStream's acknowledgement then skips its own commit of this record
        self._schedule()

    def handled_at(self, consumer: object, tp: TopicPartition, next_offset: int) -> None:
        """Everything on `tp` before `next_offset` is done with (a batch's records, say)."""
        if not isinstance(consumer, AIOKafkaConsumer):
            return  # the in-memory test broker: nothing to commit
        self._pending[tp] = next_offset
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled is None or self._scheduled.done():
            self._scheduled = asyncio.create_task(self._flush_later(), name="offset-commit")

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.interval_seconds)
        async with self._committing:  # while a commit is out (the broker away), this one task waits, no more
            self._scheduled = None  # what is handled from now on is for the next flush
        await self.flush()

    async def flush(self) -> None:
        async with self._committing:
            await self._flush()

    async def _flush(self) -> None:
        await self._land()  # a commit a cancelled flush left out: it goes first
        consumer = None if self.subscriber is None else self.subscriber.consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        # Only the partitions assigned now: the others' offsets wait for the next assignment. In the middle of a
        # rebalance (the broker restarting, say) nothing is assigned for a moment and the same partitions usually
        # come back; dropping their offsets then left the committed offsets behind, for good on a partition that
        # got no new record (a lag that was not there, and the records read again at the next restart).
        offsets = {tp: offset for tp, offset in self._pending.items() if tp in assigned}
        self._pending = {tp: offset for tp, offset in self._pending.items() if tp not in assigned}
        if not offsets:
            return
        self._out = (asyncio.ensure_future(consumer.commit(offsets)), offsets)
        await self._land()

    async def _land(self) -> None:
        """Wait for the commit that is out (never cancelling it), then keep its offsets again if it failed."""
        if self._out is None:
            return
        request, offsets = self._out
        await asyncio.wait([request])  # a cancelled caller stops waiting here; the request goes on
        self._out = None
        if request.cancelled():
            failure = "cancelled"
        elif (error := request.exception()) is not None:
            failure = type(error).__name__
        else:
            return
        # Kept for the next commit (a later record's offset on the same partition supersedes it).
        for tp, offset in offsets.items():
            self._pending.setdefault(tp, offset)
        log.warning("committing offsets failed (%s); trying again shortly", failure)
        self._schedule()

    async def close(self) -> None:
        """Commit what is pending now (after the commit that is out, if any), and stop committing later."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        await self.flush()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Nothing: what was handled but not yet committed there is read again by the partition's next owner."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """The pending offsets of the partitions assigned here again are committed soon, by a task (nothing waits
        inside the rebalance): all before them is handled. Those of partitions now another's are dropped: a record
        finished after its partition was taken away is for the partition's new owner to read again."""
        self._pending = {tp: offset for tp, offset in self._pending.items() if tp in assigned}
        if self._pending:
            self._schedule()


def _record(message: KafkaMessage) -> Any:
    raw = message.raw_message
    return raw[0] if isinstance(raw, tuple) else raw


class PartitionRetries:
    """How often the record at the head of each partition has failed, and how long its partition waits next."""

    def __init__(self, max_attempts: int) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self._failures: dict[TopicPartition, tuple[int, int]] = {}  # partition -> (offset, failures of that record)
        self._waits: dict[TopicPartition, int] = {}  # partition -> waits in a row (the backoff's exponent)

    def failed(self, message: KafkaMessage) -> int:
        """Count one failure of this record; returns its failures so far."""
        return self.failed_at(*_position(message))

    def failed_at(self, tp: TopicPartition, offset: int) -> int:
        last, count = self._failures.get(tp, (offset, 0))
        count = count + 1 if last == offset else 1
        self._failures[tp] = (offset, count)
        return count

    def wait(self, message: KafkaMessage) -> float:
        """How long the record's partition waits before the next try: doubling per wait in a row, up to a cap."""
        return self.wait_on(_position(message)[0])

    def wait_on(self, tp: TopicPartition) -> float:
        waits = self._waits.get(tp, 0)
        self._waits[tp] = waits + 1
        return float(min(MAX_RETRY_DELAY_SECONDS, FIRST_RETRY_DELAY_SECONDS * 2**waits))

    def again_later(
        self, tp: TopicPartition, group_id: str, event: Envelope, error: BaseException, failures: int
    ) -> float:
        """The record failed its handler for the `failures`-th time, not yet the last: how long its partition waits
        before it is tried again (logged, with the stack the first time only, and counted)."""
        delay = self.wait_on(tp)
        log.warning(
            "handling %s failed (%s, %d of %d); trying again in %.1fs",
            event.type,
            type(error).__name__,
            failures,
            self.max_attempts,
            delay,
            exc_info=error if failures == 1 else None,  # the stack once per record, not once per try
        )
        metrics.event_handled(group_id, event, "retried")
        return delay

    def done(self, message: KafkaMessage) -> None:
        self.done_with(_position(message)[0])

    def done_with(self, tp: TopicPartition) -> None:
        self._failures.pop(tp, None)
        self._waits.pop(tp, None)


def _position(message: KafkaMessage) -> tuple[TopicPartition, int]:
    record = _record(message)
    return TopicPartition(record.topic, record.partition), int(record.offset)


async def hold(message: KafkaMessage, delay: float) -> None:
    """Read the record again after `delay`: its partition is rewound and paused meanwhile, while the consumer's other
    partitions go on. (The in-memory test broker has no partitions: there the consumer itself waits.)"""
    consumer = getattr(message, "consumer", None)
    if not isinstance(consumer, AIOKafkaConsumer):
        await asyncio.sleep(delay)
        raise NackMessage()
    message.committed = AckStatus.ACKED  # nothing for FastStream to commit or rewind: done here
    await wait_then_read_again(consumer, *_position(message), delay)


async def wait_then_read_again(consumer: object, tp: TopicPartition, offset: int, delay: float) -> None:
    """Rewind `tp` to `offset` and pause it for `delay` (0: just rewind), while the consumer's other partitions go
    on. (The in-memory test broker has no partitions: there the consumer itself waits.)"""
    if not isinstance(consumer, AIOKafkaConsumer):
        await asyncio.sleep(delay)
        return
    if tp not in consumer.assignment():
        return  # taken away meanwhile: its next owner reads it from the last committed offset
    consumer.seek(tp, offset)
    if delay > 0:
        consumer.pause(tp)
        asyncio.get_running_loop().call_later(delay, _resume, consumer, tp)


def _resume(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
    if tp in consumer.assignment():
        consumer.resume(tp)


def _record_topic(message: KafkaMessage) -> str:
    raw = message.raw_message
    record = raw[0] if isinstance(raw, tuple) else raw
    return str(record.topic)


async def dead_letter(
    broker: KafkaBroker, message: KafkaMessage, topic: str, group_id: str, reason: str, detail: str
) -> None:
    await publish_dead_letter(broker, _record(message), topic, group_id, reason, detail, body=message.body)


async def publish_dead_letter(
    broker: KafkaBroker, record: Any, topic: str, group_id: str, reason: str, detail: str, body: bytes | None = None
) -> None:
    """Copy the record to `<topic>.dlq` with why it is there and where it came from in headers."""
    if body is None:
        body = record.value or b""
    headers = {
        "dlq.reason": reason,
        "dlq.detail": detail,
        "dlq.source.topic": topic,
        "dlq.source.partition": str(record.partition),
        "dlq.source.offset": str(record.offset),
        "dlq.consumer.group": group_id,
        "dlq.failed_at": datetime.now(UTC).isoformat(),
    }
    try:
        await broker.publish(body, dlq_topic(topic), key=record.key, headers=headers)
    except MessageSizeTooLargeError:
        # At the broker's size limit already, it cannot be copied with the headers added: point to it instead,
        # or the partition would stall on it forever.
        headers["dlq.body_omitted"] = f"{len(body)} bytes, kept at dlq.source.topic/partition/offset"
        await broker.publish(b"", dlq_topic(topic), key=record.key, headers=headers)
    metrics.dead_lettered(topic, reason)
    log.warning("record %s/%s@%s sent to %s: %s", topic, record.partition, record.offset, dlq_topic(topic), reason)
