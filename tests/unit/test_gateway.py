"""The agency gateway's rules and plugins without a broker: backoff, the circuit breaker, what an agency may see,
finding plugins, signed webhooks as the agency checks them (the scaffolding: test_scaffold.py)."""

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from agency_gateway import handlers
from agency_gateway.channels import (
    ChannelSettings,
    ChannelSetupError,
    Delivered,
    DeliveryChannel,
    Failed,
    Notice,
    Outcome,
)
from agency_gateway.channels.email import notice_email, referral_email
from agency_gateway.channels.kafka import KafkaDelivery
from agency_gateway.channels.webhook import WebhookDelivery
from agency_gateway.domain import CircuitBreaker, Done, GiveUp, Retry, RetryPolicy, after_attempt, minimise
from agency_gateway.handlers import AgencyDeliveries
from agency_gateway.personal import IntakeDisclosures, NotFetched
from agency_gateway.registry import ChannelRegistry
from agency_gateway.replay import DeadLetter, summary
from agency_gateway.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_headers
from agency_gateway.storage import Standing
from agency_simulator.main import create_app
from agency_simulator.settings import Settings
from aiokafka import ConsumerRecord
from kit.lanes import reading
from kit.outages import DependencyUnavailable
from scaffold.main import new_channel
from schemas.catalogue import Agency, KafkaChannel, WebhookChannel
from schemas.events import ReferralCase, ReferralRequested, encode_event
from schemas.vocab import CrimeType, Need, Urgency

from tests.fake_intake import FakeIntake, serving_intake
from tests.samples import cancellation_for, reminder_for
from tests.servers import serving

REPO = Path(__file__).resolve().parents[2]
POLICY = RetryPolicy(max_attempts=4, base_seconds=1.0, max_seconds=5.0)
NO_INTAKE = IntakeDisclosures("http://intake.invalid", None)  # for referrals without personal items


def referral(agency_id: str = "police", **case: Any) -> ReferralRequested:
    fields = {"crime_type": CrimeType.stalking, "needs": [Need.safety], "urgency": Urgency.urgent, **case}
    return ReferralRequested(
        case_id=uuid4(),
        producer="routing",
        referral_id=uuid4(),
        agency_id=agency_id,
        case=ReferralCase(**fields),
    )


def agency(channel: dict[str, Any], allowed: list[str] | None = None, agency_id: str = "police") -> Agency:
    return Agency.model_validate(
        {
            "id": agency_id,
            "name_ko": "경찰",
            "name_en": "Police",
            "services": ["safety"],
            "regions": ["*"],
            "languages": ["ko"],
            "channel": channel,
            "allowed_fields": allowed or [],
            "consent_notice": {"purpose": "p", "items": ["name"], "retention": "r"},
        }
    )


# --- retries and the circuit breaker ---------------------------------------------------------------------


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    assert [POLICY.delay(n, 0.5) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert POLICY.delay(2, 0.0) == 1.0 and POLICY.delay(2, 0.999) == pytest.approx(2.998)


def test_after_an_attempt_deliver_retry_or_give_up() -> None:
    assert after_attempt(Delivered("ok", 202), 1, POLICY, 0.5) == Done(1)
    assert after_attempt(Failed("answered 503", True, 503), 2, POLICY, 0.5) == Retry(2, 2.0, "answered 503")
    permanent = after_attempt(Failed("answered 410", False, 410), 1, POLICY, 0.5)
    assert isinstance(permanent, GiveUp) and permanent.dlq_reason == "permanent_failure"
    exhausted = after_attempt(Failed("timed out", True), 4, POLICY, 0.5)
    assert isinstance(exhausted, GiveUp) and exhausted.dlq_reason == "retries_exhausted"
    assert "gave up after 4 attempts" in exhausted.reason


def test_the_circuit_opens_after_repeated_failures_and_a_probe_decides() -> None:
    breaker = CircuitBreaker(threshold=3, open_seconds=10)
    down = Failed("unreachable", True)
    for now in (0, 1):
        breaker.record(down, now)
        assert breaker.allows(now)
        assert not breaker.tripped
    breaker.record(down, 2)
    assert breaker.is_open(5) and breaker.open_until == 12
    assert breaker.allows(12)  # the pause is over: one probe goes through
    assert breaker.tripped, "not closed while the probe is awaited (onestop_circuit_open stays 1)"
    breaker.record(down, 12)
    assert breaker.is_open(13), "a failed probe opens the circuit again at once"
    breaker.record(Delivered("ok"), 22)
    assert breaker.allows(22) and breaker.consecutive_failures == 0 and not breaker.tripped


def test_a_permanent_answer_shows_the_agency_is_up() -> None:
    breaker = CircuitBreaker(threshold=2, open_seconds=10)
    breaker.record(Failed("503", True), 0)
    breaker.record(Failed("410", False, 410), 1)
    breaker.record(Failed("503", True), 2)
    assert breaker.allows(3)


def test_only_the_allowed_fields_leave() -> None:
    full = referral(region="seoul", victim_name="Kim", victim_phone="010-0000-0000", summary="private")
    sent, dropped = minimise(full, ["victim.name", "region"])

    assert dropped == ["summary", "victim_phone"]
    assert {k for k, v in sent.case if v is not None} == {"crime_type", "needs", "urgency", "region", "victim_name"}
    assert b"private" not in encode_event(sent) and b"010-0000-0000" not in encode_event(sent)
    assert minimise(sent, ["victim.name", "region"]) == (sent, [])


# --- plugins ----------------------------------------------------------------------------------------------


class FaxSettings(ChannelSettings):
    number: str


class FaxDelivery(DeliveryChannel[FaxSettings]):
    settings_model = FaxSettings

    async def deliver(self, referral: ReferralRequested, body: bytes) -> Outcome:
        return Delivered(f"faxed to {self.settings.number}")


def test_the_built_in_channels_are_found_through_entry_points() -> None:
    registry = ChannelRegistry.discover()
    assert {"webhook", "email", "kafka"} <= set(registry.types)
    assert registry.plugin("kafka") is KafkaDelivery
    channel = registry.open(agency({"type": "kafka"}, agency_id="kafka-agency"))
    assert isinstance(channel, KafkaDelivery) and channel.topics() == ["acks.kafka-agency"]


def test_a_plugin_channel_gets_its_settings_checked_by_the_plugin() -> None:
    registry = ChannelRegistry({"fax": lambda: FaxDelivery})
    channel = registry.open(agency({"type": "fax", "number": "02-000-0000"}))
    assert isinstance(channel, FaxDelivery) and channel.settings.number == "02-000-0000"

    with pytest.raises(ChannelSetupError, match=r"police\.toml: channel\.colour: Extra inputs"):
        registry.open(agency({"type": "fax", "number": "1", "colour": "blue"}))
    with pytest.raises(ChannelSetupError, match=r"police\.toml: no gateway plugin for channel type 'pigeon'"):
        registry.open(agency({"type": "pigeon"}))


def test_a_webhook_without_its_secret_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBHOOK_SECRET_POLICE", raising=False)
    webhook = {"type": "webhook", "url": "http://agency.test/in", "secret_env": "WEBHOOK_SECRET_POLICE"}
    with pytest.raises(ChannelSetupError, match=r"police\.toml: the webhook secret variable WEBHOOK_SECRET_POLICE"):
        ChannelRegistry.discover().open(agency(webhook))


# --- signed webhooks, as the agency checks them -------------------------------------------------------------


def readme_verify() -> Any:
    """The agency guide's webhook verification lines (docs/agencies.md), run as an agency would paste them."""
    guide = (REPO / "docs" / "agencies.md").read_text(encoding="utf-8")
    section = re.split(r"^#+ Verify a webhook$", guide, maxsplit=1, flags=re.MULTILINE)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, "the agency guide shows the verification code"
    assert len(code.group(1).strip().splitlines()) <= 10, "a few lines"
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)
    return namespace["verify"]


def test_the_readme_lines_verify_the_gateways_signature() -> None:
    verify = readme_verify()
    body, now = encode_event(referral()), int(time.time())
    headers = signature_headers(b"s3cret", now, body)

    assert verify(body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], "s3cret")
    assert not verify(body + b" ", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], "s3cret")
    assert not verify(body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], "another")
    old = signature_headers(b"s3cret", now - 3600, body)
    assert not verify(body, old[TIMESTAMP_HEADER], old[SIGNATURE_HEADER], "s3cret"), "an old request is refused"


@asynccontextmanager
async def webhook_to_simulator(
    monkeypatch: pytest.MonkeyPatch, gateway_secret: str, agency_secret: str, seen: list[dict[str, str]] | None = None
) -> AsyncIterator[WebhookDelivery]:
    """The gateway's webhook channel posting to the agency simulator on a socket of its own, each with its own
    secret; `seen` gets each request's headers as the simulator received them."""
    simulator = create_app(
        Settings(
            notify_url="http://notify.test",
            simulator_behaviour={"default": {"action": "silent"}},
            simulator_webhook_secrets={"police": agency_secret},
        )
    )

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if seen is not None and scope["type"] == "http":
            seen.append({name.decode(): value.decode() for name, value in scope["headers"]})
        await simulator(scope, receive, send)

    async with serving(recording) as url:
        channel = webhook_channel(monkeypatch, f"{url}/agencies/police/referrals", gateway_secret)
        try:
            yield channel
        finally:
            await channel.close()


def webhook_channel(
    monkeypatch: pytest.MonkeyPatch, url: str, secret: str = "shared", timeout: float = 10.0
) -> WebhookDelivery:
    monkeypatch.setenv("WEBHOOK_SECRET_POLICE", secret)
    settings = WebhookChannel(type="webhook", url=url, secret_env="WEBHOOK_SECRET_POLICE", timeout_seconds=timeout)
    return WebhookDelivery("police", settings)


async def test_a_signed_webhook_is_accepted_by_the_agency(monkeypatch: pytest.MonkeyPatch) -> None:
    event = referral()
    async with webhook_to_simulator(monkeypatch, "shared", "shared") as channel:
        outcome = await channel.deliver(event, encode_event(event))

    assert isinstance(outcome, Delivered) and outcome.agency_status == 202
    assert json.loads(outcome.agency_answer or "{}") == {"referral_id": str(event.referral_id), "duplicate": False}


async def test_a_webhook_signed_with_another_secret_is_refused_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    event = referral()
    async with webhook_to_simulator(monkeypatch, "old-secret", "new-secret") as channel:
        outcome = await channel.deliver(event, encode_event(event))

    assert outcome == Failed("the agency's endpoint answered 401", False, 401)


async def test_an_agency_endpoint_that_refuses_connections_is_a_transient_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: the connection is refused
    channel = webhook_channel(monkeypatch, f"http://127.0.0.1:{closed.getsockname()[1]}/referrals")
    event = referral()
    try:
        outcome = await channel.deliver(event, encode_event(event))
    finally:
        await channel.close()
        closed.close()

    assert outcome == Failed("the agency's endpoint could not be reached (ClientConnectorError)", True)


async def test_an_agency_endpoint_that_does_not_answer_in_time_is_a_transient_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer = asyncio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await answer.wait()  # until the test ends: longer than the channel's timeout

    event = referral()
    async with serving(slow) as url:
        channel = webhook_channel(monkeypatch, f"{url}/referrals", timeout=0.2)
        try:
            outcome = await channel.deliver(event, encode_event(event))
        finally:
            answer.set()
            await channel.close()

    assert outcome == Failed("the agency's endpoint did not answer within 0.2s", True)


async def test_only_the_start_of_an_agencys_long_answer_is_read_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    async def verbose(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for _ in range(100):  # 1 MB in all, in chunks
            await send({"type": "http.response.body", "body": "접수".encode() * 5000, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    event = referral()
    async with serving(verbose) as url:
        channel = webhook_channel(monkeypatch, f"{url}/referrals")
        try:
            outcome = await channel.deliver(event, encode_event(event))
        finally:
            await channel.close()

    assert isinstance(outcome, Delivered) and outcome.agency_status == 200
    assert outcome.agency_answer == "접수" * 1000


# --- e-mail -------------------------------------------------------------------------------------------------


def test_the_email_holds_the_referral_and_nothing_about_the_victim_in_its_subject() -> None:
    event = referral(victim_name="Kim Example", language="ko")
    message = referral_email(event, encode_event(event), "gateway@onestop.example", "in@agency.example")

    assert message["Subject"] == f"Referral {event.referral_id} (urgent urgency)"
    assert message["Message-ID"] == f"<{event.referral_id}@referrals.onestop>"
    plain = message.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert "Victim's name: Kim Example" in text and "Language: ko" in text and "phone" not in text
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "referral.json"
    assert json.loads(attachment.get_content())["referral_id"] == str(event.referral_id)


# --- notices: reminders and cancellations through the agency's channel ----------------------------------------


async def test_a_reminder_reaches_the_agency_signed_with_its_own_idempotency_key_and_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[dict[str, str]] = []
    event = referral()
    notice = reminder_for(event)
    async with webhook_to_simulator(monkeypatch, "shared", "shared", sent) as channel:
        await channel.deliver(event, encode_event(event))
        first = await channel.deliver_notice(notice, encode_event(notice))
        again = await channel.deliver_notice(notice, encode_event(notice))  # a redelivery after a lost answer

    assert isinstance(first, Delivered) and first.agency_status == 202
    assert json.loads(first.agency_answer or "{}") == {"event_id": str(notice.event_id), "duplicate": False}
    assert isinstance(again, Delivered) and json.loads(again.agency_answer or "{}")["duplicate"] is True
    headers = sent[1]
    assert headers["x-onestop-event-type"] == "referral.reminded"
    assert headers["idempotency-key"] == str(notice.event_id) != str(event.referral_id)
    assert headers[SIGNATURE_HEADER.lower()].startswith("sha256=")


async def test_a_cancellation_signed_with_another_secret_is_refused_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    notice = cancellation_for(referral())
    async with webhook_to_simulator(monkeypatch, "old-secret", "new-secret") as channel:
        outcome = await channel.deliver_notice(notice, encode_event(notice))

    assert outcome == Failed("the agency's endpoint answered 401", False, 401)


def test_the_notice_emails_are_short_thread_under_the_referral_and_hold_nothing_about_the_victim() -> None:
    event = referral(victim_name="Kim Example")
    for notice, subject in (
        (reminder_for(event), f"Reminder: referral {event.referral_id} awaits your answer by 2026-03-02 13:00 UTC"),
        (cancellation_for(event), f"Cancelled: referral {event.referral_id}"),
    ):
        message = notice_email(notice, encode_event(notice), "gateway@onestop.example", "in@agency.example")
        assert message["Subject"] == subject
        assert message["Message-ID"] == f"<{notice.event_id}@notices.onestop>"
        assert message["In-Reply-To"] == f"<{event.referral_id}@referrals.onestop>"
        plain = message.get_body(("plain",))
        assert plain is not None and "Kim" not in plain.get_content() and str(event.referral_id) in plain.get_content()
    assert "deadline_breached" in plain.get_content()


async def test_on_kafka_the_record_on_the_agencys_topic_is_the_delivery_and_a_plugin_may_not_carry_notices() -> None:
    notice = reminder_for(referral())
    on_kafka = await KafkaDelivery("police", KafkaChannel(type="kafka")).deliver_notice(notice, encode_event(notice))
    assert isinstance(on_kafka, Delivered)

    class Fax(DeliveryChannel[ChannelSettings]):
        settings_model = ChannelSettings

        async def deliver(self, referral: ReferralRequested, body: bytes) -> Outcome:
            return Delivered("faxed")

    unsupported = await Fax("police", ChannelSettings(type="fax")).deliver_notice(notice, encode_event(notice))
    assert isinstance(unsupported, Failed) and not unsupported.transient  # to the DLQ, for an operator to see


class FakeBroker:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, str]]] = []

    async def publish(self, body: bytes, topic: str, *, key: bytes, headers: dict[str, str]) -> None:
        self.published.append((topic, headers))


def kafka_record(*headers: tuple[str, str]) -> ConsumerRecord[bytes, bytes]:
    """The record a lane is handling (its headers, partition and offset are what the gateway reads of it)."""
    encoded = [(key, value.encode()) for key, value in headers]
    return ConsumerRecord("referrals.police", 0, 7, 0, 0, b"case", b"", None, 4, 0, encoded)


class FakeConnection:
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield

    async def fetchval(self, query: str, *args: Any) -> bool:
        assert query.startswith("INSERT INTO inbox")  # kit.unit_of_work's inbox check: every event is new here
        return True


def standing(*, cancelled: bool) -> Any:
    """`storage.standing` answering: not delivered yet, not erased, cancelled or not."""

    async def known(*_: Any) -> Standing:
        return Standing(processed=False, erased=False, cancelled=cancelled)

    return known


class FakePool:
    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConnection]:
        yield FakeConnection()


class Failing(DeliveryChannel[ChannelSettings]):
    """An agency whose endpoint refuses notices: permanently (410), or for now (503)."""

    settings_model = ChannelSettings
    status = 410

    async def deliver(self, referral: ReferralRequested, body: bytes) -> Outcome:
        return Delivered("ok", 202)

    async def deliver_notice(self, notice: Notice, body: bytes) -> Outcome:
        return Failed(f"the agency's endpoint answered {self.status}", self.status >= 500, self.status)


@pytest.mark.parametrize(("status", "topic"), [(410, "referrals.police.dlq"), (503, "referrals.police.retry")])
async def test_a_notice_that_cannot_be_delivered_never_fails_its_referral(
    monkeypatch: pytest.MonkeyPatch, status: int, topic: str
) -> None:
    outbox: list[Any] = []
    recorded: list[tuple[str, Outcome]] = []

    async def not_seen(*_: Any) -> bool:
        return False

    async def seen_first_time(*_: Any) -> bool:
        return True

    async def to_outbox(conn: Any, topic: str, event: Any) -> None:
        outbox.append(event)

    async def record_notice(conn: Any, notice: Notice, channel: str, attempts: int, outcome: Outcome) -> None:
        recorded.append((notice.type, outcome))

    monkeypatch.setattr(handlers.storage, "standing", standing(cancelled=False))
    monkeypatch.setattr(handlers, "first_time", seen_first_time)
    monkeypatch.setattr(handlers, "add_to_outbox", to_outbox)
    monkeypatch.setattr(handlers.storage, "record_notice", record_notice)
    record = kafka_record()
    broker = FakeBroker()
    runtime: Any = type("Runtime", (), {"broker": broker, "pool": FakePool()})()
    channel = Failing("police", ChannelSettings(type="failing"))
    channel.status = status
    deliveries = AgencyDeliveries(
        runtime, agency({"type": "kafka"}), channel, POLICY, CircuitBreaker(5, 30), NO_INTAKE, jitter=lambda: 0.5
    )

    with reading(record):
        await deliveries.on_referral(reminder_for(referral()))

    assert [t for t, _ in broker.published] == [topic]
    assert outbox == [], "no referral.failed: the referral itself was delivered"
    if status == 410:
        assert broker.published[0][1]["dlq.reason"] == "permanent_failure"
        assert [(t, o.agency_status) for t, o in recorded] == [("referral.reminded", 410)]
    else:
        assert broker.published[0][1]["retry.attempts"] == "1" and recorded == []


@pytest.mark.parametrize(
    ("attempts", "not_before", "known_before"),
    [("2", "0", True), ("0", "0", True), ("1", "1000.02", False)],
    ids=["retried", "deferred-by-an-open-circuit", "cancelled-while-the-retry-waited"],
)
async def test_a_referral_whose_cancellation_came_through_is_not_delivered_any_more(
    monkeypatch: pytest.MonkeyPatch, attempts: str, not_before: str, known_before: bool
) -> None:
    """On every path, the first try included: a referral deferred by an open circuit comes back with 0 attempts. A
    retry that waits asks again after the wait: the cancellation may have come meanwhile."""
    delivered: list[ReferralRequested] = []
    asked_after_a_wait: list[Any] = []

    async def cancelled(*args: Any) -> bool:
        asked_after_a_wait.append(args[1])
        return True

    class Recording(Failing):
        async def deliver(self, referral: ReferralRequested, body: bytes) -> Outcome:
            delivered.append(referral)
            return Delivered("ok", 202)

    monkeypatch.setattr(handlers.storage, "standing", standing(cancelled=known_before))
    monkeypatch.setattr(handlers.storage, "was_cancelled", cancelled)
    record = kafka_record(("retry.attempts", attempts), ("retry.not_before", not_before))
    broker = FakeBroker()
    runtime: Any = type("Runtime", (), {"broker": broker, "pool": FakePool()})()
    channel = Recording("police", ChannelSettings(type="x"))
    deliveries = AgencyDeliveries(
        runtime, agency({"type": "kafka"}), channel, POLICY, CircuitBreaker(5, 30), NO_INTAKE, clock=lambda: 1000.0
    )
    waiting = referral()
    with reading(record):
        await deliveries.on_retry(waiting)

    assert delivered == [] and broker.published == []
    assert asked_after_a_wait == ([] if known_before else [waiting.referral_id])


async def test_the_channel_skeleton_carries_notices_too(tmp_path: Path) -> None:
    root = new_channel("fax", tmp_path / "plugin")
    namespace: dict[str, Any] = {}
    exec(compile((root / "src" / "onestop_channel_fax" / "__init__.py").read_text(), "fax", "exec"), namespace)
    drop = tmp_path / "drop"
    channel = namespace["FaxDelivery"]("police", namespace["FaxSettings"](type="fax", directory=drop))
    notice = reminder_for(referral())

    outcome = await channel.deliver_notice(notice, encode_event(notice))

    assert isinstance(outcome, Delivered)
    [written] = drop.glob("*.json")
    assert written.name == f"{notice.event_id}.referral.reminded.json"


@pytest.fixture
async def intake() -> AsyncIterator[FakeIntake]:
    async with serving_intake() as fake:
        yield fake


def intake_answering(intake: FakeIntake, status: int, body: dict[str, Any]) -> IntakeDisclosures:
    return intake.disclosures(lambda _: (status, body))


async def test_the_personal_items_are_fetched_from_intake_only_when_the_referral_leaves(intake: FakeIntake) -> None:
    seen = intake.seen
    wanted = referral().model_copy(update={"personal_items": ["victim.name", "summary"]})
    disclosures = intake_answering(intake, 200, {"items": {"victim.name": "Synthetic Name", "summary": "text"}})

    filled = await disclosures.with_items(wanted)

    assert not isinstance(filled, NotFetched)
    assert filled.case.victim_name == "Synthetic Name" and filled.case.summary == "text"
    [request] = seen
    assert request.path == f"/cases/{wanted.case_id}/disclosures"
    assert request.headers["Authorization"].startswith("Bearer ")
    assert request.body == {
        "referral_id": str(wanted.referral_id),
        "agency_id": wanted.agency_id,
        "items": ["victim.name", "summary"],
    }
    plain = referral()
    assert await disclosures.with_items(plain) is plain, "no items: nothing to ask"
    assert len(seen) == 1


@pytest.mark.parametrize("status", [410, 409])
async def test_when_intake_refuses_the_items_for_the_case_nothing_is_sent_and_it_is_final(
    status: int, intake: FakeIntake
) -> None:
    disclosures = intake_answering(intake, status, {"detail": "case erased"})
    wanted = referral().model_copy(update={"personal_items": ["victim.name"]})

    outcome = await disclosures.with_items(wanted)

    assert isinstance(outcome, NotFetched)
    assert outcome.transient is False and outcome.intake_status == status


@pytest.mark.parametrize("status", [503, 500, 429, 401, 403])
async def test_intake_failing_or_refusing_the_gateways_credential_is_the_systems_outage(
    status: int, intake: FakeIntake
) -> None:
    """Not the agency's failure, nor the referral's: the consumer waits (kit.messaging) and tries it again."""
    disclosures = intake_answering(intake, status, {"detail": "down"})
    with pytest.raises(DependencyUnavailable):
        await disclosures.with_items(referral().model_copy(update={"personal_items": ["victim.name"]}))


async def test_an_intake_outage_uses_no_attempt_and_never_opens_the_agencys_circuit(
    monkeypatch: pytest.MonkeyPatch, intake: FakeIntake
) -> None:
    sent: list[ReferralRequested] = []

    class Recording(Failing):
        async def deliver(self, referral: ReferralRequested, body: bytes) -> Outcome:
            sent.append(referral)
            return Delivered("ok", 202)

    async def not_seen(*_: Any) -> bool:
        return False

    async def record_attempt(*_: Any, **__: Any) -> None:
        return None

    monkeypatch.setattr(handlers.storage, "standing", standing(cancelled=False))
    monkeypatch.setattr(handlers.storage, "record_attempt", record_attempt)
    record = kafka_record()
    broker = FakeBroker()
    runtime: Any = type("Runtime", (), {"broker": broker, "pool": FakePool()})()
    breaker = CircuitBreaker(1, 30)  # one agency failure would open it
    channel = Recording("police", ChannelSettings(type="recording"))
    deliveries = AgencyDeliveries(
        runtime,
        agency({"type": "kafka"}),
        channel,
        POLICY,
        breaker,
        intake_answering(intake, 503, {}),
        jitter=lambda: 0.5,
    )

    with reading(record), pytest.raises(DependencyUnavailable):  # the partition is held; the record tried again
        await deliveries.on_referral(referral().model_copy(update={"personal_items": ["victim.name"]}))

    assert len(intake.seen) == 1 and sent == []
    assert broker.published == [], "not put on the retry topic: no delivery attempt was used"
    assert breaker.consecutive_failures == 0 and not breaker.is_open(time.time())


def test_a_kafka_native_agency_fetches_its_items_itself() -> None:
    assert KafkaDelivery.sends_personal_items is False and WebhookDelivery.sends_personal_items is True


def test_the_dead_letter_summary_counts_per_agency_and_reason_and_what_still_waits_for_a_replay() -> None:
    def letter(offset: int, reason: str, hour: int, replayed: bool) -> DeadLetter:
        at = datetime(2026, 12, 6, hour, tzinfo=UTC)
        return DeadLetter(offset, 0, str(uuid4()), reason, "referrals.police", at, replayed)

    found = {
        "police": [letter(0, "permanent_failure", 9, True), letter(1, "permanent_failure", 7, False)],
        "legal-aid": [letter(0, "retries_exhausted", 8, False)],
    }
    assert summary(found) == [
        {
            "agency_id": "legal-aid",
            "topic": "referrals.legal-aid.dlq",
            "reason": "retries_exhausted",
            "count": 1,
            "waiting": 1,
            "first_seen": "2026-12-06T08:00:00+00:00",
            "last_seen": "2026-12-06T08:00:00+00:00",
        },
        {
            "agency_id": "police",
            "topic": "referrals.police.dlq",
            "reason": "permanent_failure",
            "count": 2,
            "waiting": 1,
            "first_seen": "2026-12-06T07:00:00+00:00",
            "last_seen": "2026-12-06T09:00:00+00:00",
        },
    ]
