"""Every agency's acknowledgement topic in one consumer (kit.messaging.subscribe with a list of topics): each record
reaches the handler with the topic it came from, and a bad one goes to its own topic's DLQ."""

from uuid import uuid4

from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from kit.messaging import source_topic, subscribe
from schemas.events import EventRejected, ReferralAccepted, encode_event

TOPICS = ["acks.police", "acks.legal-aid", "acks.smile-center"]


async def test_one_consumer_reads_every_ack_topic_and_dead_letters_to_the_source_topics_dlq() -> None:
    broker = KafkaBroker("in-memory")
    handled: list[tuple[str, str]] = []
    dead: list[tuple[str, dict[str, str]]] = []

    async def handle(event: ReferralAccepted) -> None:
        topic = source_topic()
        if event.agency_id != topic.removeprefix("acks."):
            raise EventRejected("wrong_agency", "the answer names another agency than its topic's")
        handled.append((topic, event.agency_id))

    subscriber = subscribe(broker, TOPICS, "notify.acks", (ReferralAccepted,), handle)

    @broker.subscriber(*(f"{topic}.dlq" for topic in TOPICS), group_id="dlq-reader")
    async def read_dlq(message: KafkaMessage) -> None:
        dead.append((message.raw_message.topic.removesuffix(".dlq"), dict(message.headers)))  # type: ignore[union-attr]

    def accepted(agency_id: str) -> bytes:
        event = ReferralAccepted(case_id=uuid4(), producer="agency", referral_id=uuid4(), agency_id=agency_id)
        return encode_event(event)

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(accepted("police"), "acks.police", key=b"k")
        await test_broker.publish(accepted("legal-aid"), "acks.legal-aid", key=b"k")
        await test_broker.publish(accepted("police"), "acks.smile-center", key=b"k")  # on another agency's topic
        await test_broker.publish(b"\x00garbage", "acks.legal-aid", key=b"k")

    assert len(subscriber.topics) == len(TOPICS), "one subscriber, every topic"
    assert handled == [("acks.police", "police"), ("acks.legal-aid", "legal-aid")]
    assert [(topic, h["dlq.reason"], h["dlq.source.topic"]) for topic, h in dead] == [
        ("acks.smile-center", "wrong_agency", "acks.smile-center"),
        ("acks.legal-aid", "invalid_json", "acks.legal-aid"),
    ]
    assert all(h["dlq.consumer.group"] == "notify.acks" for _, h in dead)
