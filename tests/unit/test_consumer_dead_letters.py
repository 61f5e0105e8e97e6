"""The shared consumer: bad records go to the topic's DLQ with the reason in headers; good ones reach the handler."""

from uuid import uuid4

from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from kit.messaging import subscribe
from schemas.events import CaseSubmitted, EventRejected, encode_event

from tests.samples import sample_case


async def test_bad_records_are_dead_lettered_and_consumption_goes_on() -> None:
    broker = KafkaBroker("in-memory")
    handled: list[CaseSubmitted] = []
    dead: list[tuple[bytes, dict[str, str]]] = []

    async def handle(event: CaseSubmitted) -> None:
        if event.case.region == "reject-me":
            raise EventRejected("not_for_us", "the handler refused it")
        handled.append(event)

    subscribe(broker, "case.submitted", "test-group", (CaseSubmitted,), handle)

    @broker.subscriber("case.submitted.dlq", group_id="dlq-reader")
    async def read_dlq(message: KafkaMessage) -> None:
        dead.append((message.body, dict(message.headers)))

    good = CaseSubmitted(case_id=uuid4(), producer="test", case=sample_case().facts())
    refused = CaseSubmitted(case_id=uuid4(), producer="test", case=sample_case(region="reject-me").facts())
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b"\x00garbage", "case.submitted", key=b"k")
        await test_broker.publish(b'{"type": "case.submitted", "version": 7}', "case.submitted", key=b"k")
        await test_broker.publish(encode_event(refused), "case.submitted", key=b"k")
        await test_broker.publish(encode_event(good), "case.submitted", key=b"k")

    assert handled == [good]
    reasons = [headers["dlq.reason"] for _, headers in dead]
    assert reasons == ["invalid_json", "unknown_event", "not_for_us"]
    assert dead[0][0] == b"\x00garbage", "the DLQ keeps the original bytes for replay"
    assert all(h["dlq.source.topic"] == "case.submitted" and h["dlq.consumer.group"] == "test-group" for _, h in dead)


def test_the_systems_own_outages_are_told_from_a_records_failure() -> None:
    from aiokafka.errors import KafkaConnectionError, UnsupportedVersionError
    from kit.outages import DependencyUnavailable, is_outage

    assert is_outage(DependencyUnavailable("intake is down"))
    assert is_outage(ConnectionRefusedError()) and is_outage(KafkaConnectionError())
    assert not is_outage(KeyError("a bug")) and not is_outage(ValueError()) and not is_outage(UnsupportedVersionError())
