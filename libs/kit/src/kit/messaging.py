"""Kafka plumbing: the broker, topic creation, and subscribers that dead-letter bad records and retry failures."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError, TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.subscriber.usecase import LogicSubscriber
from schemas.events import Envelope, EventRejected, decode_event
from schemas.topics import dlq_topic

from . import metrics
from .logs import log_context
from .telemetry import annotate_span

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Envelope)
Handler = Callable[[E], Awaitable[None]]

MAX_RETRY_DELAY_SECONDS = 30.0


def make_broker(bootstrap_servers: str, client_id: str) -> KafkaBroker:
    """The service's broker: idempotent producer with acks=all, trace context in headers, Prometheus metrics."""
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
    )


async def ensure_topics(bootstrap_servers: str, topics: Iterable[str], partitions: int, replication: int) -> None:
    """Create the topics a service uses, if missing; an existing topic is left as it is."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="topic-setup")
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


def subscribe(
    broker: KafkaBroker,
    topic: str,
    group_id: str,
    accepts: tuple[type[E], ...],
    handle: Handler[E],
) -> LogicSubscriber[Any]:
    """Consume `topic` in `group_id`, calling `handle` with each decoded event.

    The offset is committed only after `handle` returns, so its transaction has committed. A record that is
    not a known, valid event (or that `handle` rejects) goes to `<topic>.dlq` with the reason in headers,
    and consumption goes on.
    When `handle` fails (a database outage, say) the record is retried after a growing pause, never skipped.
    The consumer's span carries the event's ids (`onestop.case_id`, ...) so a case's spans can be found.
    Returns the subscriber (its consumer's lag is a metric).
    """
    consecutive_failures = 0

    async def on_record(message: KafkaMessage) -> None:
        nonlocal consecutive_failures
        try:
            event = decode_event(message.body, accepts)
        except EventRejected as rejected:
            await dead_letter(broker, message, topic, group_id, rejected.reason, rejected.detail)
            return
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
            except EventRejected as rejected:
                await dead_letter(broker, message, topic, group_id, rejected.reason, rejected.detail)
                return
            except Exception:
                consecutive_failures += 1
                delay = min(MAX_RETRY_DELAY_SECONDS, 0.25 * 2**consecutive_failures)
                log.exception("handling %s failed; retrying in %.1fs", event.type, delay)
                metrics.event_handled(group_id, event, "retried")
                await asyncio.sleep(delay)
                raise NackMessage() from None
            consecutive_failures = 0
            metrics.event_handled(group_id, event, "processed")

    on_record.__name__ = f"on_{topic.replace('.', '_').replace('-', '_')}"
    subscriber = broker.subscriber(
        topic,
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )
    subscriber(on_record)
    return subscriber


async def dead_letter(
    broker: KafkaBroker, message: KafkaMessage, topic: str, group_id: str, reason: str, detail: str
) -> None:
    raw = message.raw_message
    record = raw[0] if isinstance(raw, tuple) else raw
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
        await broker.publish(message.body, dlq_topic(topic), key=record.key, headers=headers)
    except MessageSizeTooLargeError:
        # At the broker's size limit already, it cannot be copied with the headers added: point to it instead,
        # or the partition would stall on it forever.
        headers["dlq.body_omitted"] = f"{len(message.body)} bytes, kept at dlq.source.topic/partition/offset"
        await broker.publish(b"", dlq_topic(topic), key=record.key, headers=headers)
    metrics.dead_lettered(topic, reason)
    log.warning("record %s/%s@%s sent to %s: %s", topic, record.partition, record.offset, dlq_topic(topic), reason)
