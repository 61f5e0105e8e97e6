"""Tracing and metrics plumbing of the kit, in process: the relay continues the writer's trace through Kafka,
an acknowledgement joins its case's trace, no personal data leaves in a span, and the domain metrics count."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from kit import metrics
from kit.messaging import make_broker, subscribe
from kit.outbox import OutboxRelay
from kit.runtime import ServiceRuntime
from kit.settings import ServiceSettings
from kit.telemetry import PrivacyFilter, continue_trace, current_trace_headers, current_trace_ids
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from schemas.events import CaseSubmitted, ReferralAccepted, ReferralOverdue, encode_event
from schemas.topics import CASE_SUBMITTED

from tests.samples import sample_case

EXPORTED = InMemorySpanExporter()
# The global provider can be set once per process: join the one another test module set, if any.
_provider = trace.get_tracer_provider()
if not isinstance(_provider, TracerProvider):
    _provider = TracerProvider()
    trace.set_tracer_provider(_provider)
_provider.add_span_processor(PrivacyFilter(SimpleSpanProcessor(EXPORTED)))
tracer = trace.get_tracer("test")


@pytest.fixture(autouse=True)
def fresh_spans() -> None:
    EXPORTED.clear()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class FakeRelayConnection:
    """What the relay asks of its PostgreSQL connection: the unsent rows, then (with the next batch) marking them."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.marked: list[int] = []

    async def fetch(self, _: str, *args: Any) -> list[dict[str, Any]]:
        if len(args) == 2:  # the ids just published, and the batch size
            self.marked += args[0]
        rows, self.rows = self.rows, []
        return [{**row, "now": datetime.now(UTC)} for row in rows]


async def test_an_event_published_by_the_relay_continues_the_trace_of_the_request_that_wrote_it() -> None:
    broker = make_broker("in-memory", "test-service")
    handled: list[tuple[str | None, str | None]] = []

    async def handle(_: CaseSubmitted) -> None:
        handled.append(current_trace_ids())

    subscribe(broker, CASE_SUBMITTED, "test-group", (CaseSubmitted,), handle)
    event = CaseSubmitted(case_id=uuid4(), producer="test", case=sample_case().facts())
    with tracer.start_as_current_span("POST /cases", kind=SpanKind.SERVER) as request:
        stored_headers = current_trace_headers()  # what add_to_outbox keeps with the row
    row = {
        "id": 1,
        "topic": CASE_SUBMITTED,
        "key": str(event.case_id),
        "event_type": event.type,
        "payload": encode_event(event),
        "headers": stored_headers,
        "created_at": datetime.now(UTC) - timedelta(seconds=2),
    }
    relay = OutboxRelay("postgresql://unused", "test", broker)
    published_before = sample("onestop_events_published_total", event_type="case.submitted")
    consumed_before = sample(
        "onestop_events_consumed_total", consumer="test-group", event_type="case.submitted", outcome="processed"
    )
    connection = FakeRelayConnection([row])

    async with TestKafkaBroker(broker):
        await relay._publish_all(connection)  # type: ignore[arg-type]

    assert connection.marked == [1]
    request_trace = format(request.get_span_context().trace_id, "032x")
    assert handled and handled[0][0] == request_trace, "the consumer runs in the request's trace"
    spans = {s.context.span_id: s for s in EXPORTED.get_finished_spans()}
    process = next(s for s in spans.values() if s.name == "case.submitted process")
    create = spans[process.parent.span_id]  # type: ignore[union-attr]
    assert create.kind == SpanKind.PRODUCER and create.name == "case.submitted create"
    relayed = spans[create.parent.span_id]  # type: ignore[union-attr]
    assert relayed.name == "case.submitted relay"
    assert relayed.parent.span_id == request.get_span_context().span_id  # type: ignore[union-attr]
    assert process.attributes["onestop.case_id"] == str(event.case_id)  # type: ignore[index]
    assert sample("onestop_events_published_total", event_type="case.submitted") == published_before + 1
    assert (
        sample("onestop_events_consumed_total", consumer="test-group", event_type="case.submitted", outcome="processed")
        == consumed_before + 1
    )
    assert sample("onestop_outbox_publish_delay_seconds_count") >= 1


async def test_a_dead_lettered_record_is_counted_by_topic_and_reason() -> None:
    broker = make_broker("in-memory", "test-service")

    async def handle(_: CaseSubmitted) -> None:
        raise AssertionError("never called")

    subscribe(broker, CASE_SUBMITTED, "dlq-group", (CaseSubmitted,), handle)
    before = sample("onestop_dlq_records_total", topic=CASE_SUBMITTED, reason="invalid_json")
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b"\x00not json", CASE_SUBMITTED, key=b"k")
    assert sample("onestop_dlq_records_total", topic=CASE_SUBMITTED, reason="invalid_json") == before + 1


def test_an_acknowledgement_without_trace_context_joins_the_case_trace_and_links_the_request() -> None:
    with tracer.start_as_current_span("referral.events process") as earlier:
        stored = current_trace_headers()
    with (
        tracer.start_as_current_span("POST /referrals/{referral_id}/accept", kind=SpanKind.SERVER) as request,
        continue_trace(stored, "referral acknowledgement") as ack,
    ):
        assert current_trace_ids()[0] == format(earlier.get_span_context().trace_id, "032x")
    finished = {s.name: s for s in EXPORTED.get_finished_spans()}
    joined = finished["referral acknowledgement"]
    assert joined.context.trace_id == earlier.get_span_context().trace_id
    assert joined.parent.span_id == earlier.get_span_context().span_id  # type: ignore[union-attr]
    assert [link.context.span_id for link in joined.links] == [request.get_span_context().span_id]
    assert ack.get_span_context().trace_id != request.get_span_context().trace_id


def test_inside_the_case_trace_already_the_acknowledgement_is_a_plain_child() -> None:
    with tracer.start_as_current_span("earlier") as earlier:
        stored = current_trace_headers()
        with continue_trace(stored, "referral acknowledgement"):
            pass
    joined = next(s for s in EXPORTED.get_finished_spans() if s.name == "referral acknowledgement")
    assert joined.parent.span_id == earlier.get_span_context().span_id  # type: ignore[union-attr]
    assert not joined.links
    with continue_trace({}, "nothing stored"):
        assert current_trace_ids()[0] is not None


def test_no_personal_data_leaves_in_a_span() -> None:
    secret = "Kim Plantedname +82 10-7777-3141"
    with (
        pytest.raises(ValueError),
        tracer.start_as_current_span(
            "INSERT",
            kind=SpanKind.CLIENT,
            attributes={
                "db.statement": "INSERT INTO cases (name) VALUES ($1)",
                "db.statement.parameters": f"('{secret}',)",
                "http.url": f"http://agency.example/hook?name={secret}",
                "url.full": f"https://user:pw@agency.example/hook?phone={secret}#x",
                "client.address": "10.1.2.3",
                "http.user_agent": "Mozilla/5.0",
                "http.request.header.authorization": ("Bearer x",),
            },
        ),
    ):
        raise ValueError(f"duplicate key value violates unique constraint: ({secret})")
    span = EXPORTED.get_finished_spans()[0]
    shown = repr((dict(span.attributes or {}), [(e.name, dict(e.attributes or {})) for e in span.events]))
    assert "Plantedname" not in shown and "7777" not in shown and "pw@" not in shown
    assert span.status.description is None
    assert span.attributes["db.statement"] == "INSERT INTO cases (name) VALUES ($1)"  # type: ignore[index]
    assert span.attributes["http.url"] == "http://agency.example/hook"  # type: ignore[index]
    assert span.attributes["url.full"] == "https://agency.example/hook"  # type: ignore[index]
    assert "client.address" not in span.attributes  # type: ignore[operator]
    exception = next(e for e in span.events if e.name == "exception")
    assert exception.attributes["exception.type"] == "ValueError"  # type: ignore[index]
    assert "test_telemetry.py" in exception.attributes["exception.stacktrace"]  # type: ignore[index,operator]


def test_published_referral_events_count_as_referrals_by_agency_and_state_and_sla_breaches() -> None:
    case_id, referral_id = uuid4(), uuid4()
    accepted = ReferralAccepted(case_id=case_id, producer="notify", referral_id=referral_id, agency_id="unit-agency")
    overdue = ReferralOverdue(
        case_id=case_id,
        producer="notify",
        referral_id=referral_id,
        agency_id="unit-agency",
        deadline=datetime.now(UTC),
    )
    before = sample("onestop_referrals_total", agency_id="unit-agency", state="accepted")
    breaches = sample("onestop_sla_breaches_total", agency_id="unit-agency")
    metrics.event_published(accepted.type, encode_event(accepted))
    metrics.event_published(overdue.type, encode_event(overdue))
    assert sample("onestop_referrals_total", agency_id="unit-agency", state="accepted") == before + 1
    assert sample("onestop_sla_breaches_total", agency_id="unit-agency") == breaches + 1


def unreachable_runtime(**extra: Any) -> ServiceRuntime:
    class Settings(ServiceSettings):
        service_name: str = "unit"
        db_schema: str = "unit"
        http_port: int = 8999
        kafka_bootstrap_servers: str = "127.0.0.1:9"
        database_url: str = "postgresql://onestop:secret-password@127.0.0.1:9/onestop"
        routing_url: str = "http://127.0.0.1:9"

    return ServiceRuntime(Settings(**extra))


async def test_health_names_each_dependency_and_answers_503_when_a_required_one_is_unreachable() -> None:
    from fastapi import FastAPI

    runtime = unreachable_runtime()
    app = FastAPI()
    runtime.instrument(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://unit") as client:
        answer = await client.get("/health")
        scraped = await client.get("/metrics")
        missing = await client.get("/cases/123")
    assert answer.status_code == 503
    report = answer.json()
    assert report["status"] == "degraded" and report["checks"]["postgres"].startswith("unreachable")
    kinds = {d["name"]: (d["kind"], d["required"], d["reachable"]) for d in report["dependencies"]}
    assert kinds == {
        "postgres": ("postgresql", True, False),
        "kafka": ("kafka", True, False),
        "routing": ("http", False, False),
    }
    assert "secret-password" not in answer.text
    assert scraped.status_code == 200 and "onestop_outbox_backlog" in scraped.text
    assert missing.status_code == 404
    assert 'onestop_http_request_seconds_count{method="GET",route="/health",status="503"}' in scraped.text
    assert "/cases/123" not in (await metrics_text())


async def metrics_text() -> str:
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY).decode()


def test_a_request_path_is_shown_as_its_route_template_never_as_sent() -> None:
    sent = "/cases/planted.name@example.org"
    with tracer.start_as_current_span(
        "GET /cases/{case_id}",
        kind=SpanKind.SERVER,
        attributes={
            "http.route": "/cases/{case_id}",
            "http.target": sent,
            "url.path": sent,
            "http.url": f"http://intake.example{sent}?x=1",
        },
    ):
        pass
    span = EXPORTED.get_finished_spans()[-1]
    assert "planted" not in repr(dict(span.attributes or {}))
    assert span.attributes["http.target"] == "/cases/{case_id}"  # type: ignore[index]
    assert span.attributes["http.url"] == "http://intake.example/cases/{case_id}"  # type: ignore[index]
