"""Ops can follow any case, on the real stack: one trace per case across the four services and Kafka, domain
metrics that move, a flow view (API and CLI), health reports, and no personal data in logs, spans or metrics."""

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from devstack.stack import Stack
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.helpers import StackAuth, eventually, produce, timeline
from tests.e2e.otlp import OtlpReceiver, ReceivedSpan
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SERVICES = ("intake", "routing", "agency-gateway", "notify")
AGENCIES = {"police", "legal-aid", "employment-center"}

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def client(stack: Stack) -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c  # type: ignore[misc]


async def submit_and_wait(
    client: httpx.AsyncClient, stack: Stack, until: str = "referral.accepted", **overrides: Any
) -> tuple[str, list[dict]]:
    """Submit a case and wait until the timeline shows `until` for each of its three agencies.

    Normal urgency: the shared stack shortens acknowledgement deadlines, and a high-urgency referral that a
    loaded machine delivers late could breach its deadline and be re-routed before the agency accepts.
    """
    case = sample_case_json(**{"urgency": "normal", **overrides})
    answer = await client.post(f"{stack.url('intake')}/cases", json=case)
    assert answer.status_code == 201, answer.text
    case_id = str(answer.json()["case_id"])
    seen: list[dict] = []

    async def accepted() -> list[dict] | None:
        seen[:] = await timeline(client, stack.url("notify"), case_id)
        return seen if sum(e["type"] == until for e in seen) >= len(AGENCIES) else None

    try:
        return case_id, await eventually(accepted, 120, f"{until} x{len(AGENCIES)} for case {case_id}")
    except AssertionError as error:
        steps = [(e["type"], e["agency_id"]) for e in seen]
        raise AssertionError(f"{error}; its timeline: {steps}") from None


async def case_spans(otlp: OtlpReceiver, case_id: str) -> tuple[str, list[ReceivedSpan]]:
    """The case's trace id and all its spans, once every expected hop has been exported."""

    def ready() -> tuple[str, list[ReceivedSpan]] | None:
        spans = otlp.snapshot()
        tagged = [s for s in spans if s.attributes.get("onestop.case_id") == case_id]
        traces = {s.trace_id for s in tagged}
        if len(traces) != 1:
            return None if len(traces) == 0 else (",".join(sorted(traces)), tagged)
        trace_id = traces.pop()
        mine = [s for s in spans if s.trace_id == trace_id]
        acks = [s for s in mine if s.name == "referral acknowledgement"]
        # The last hop: notify's relay publishing each acceptance to referral.events (notify itself does not read
        # them back: they are in its inbox already, and the batch consumer passes over them without a span).
        relays = {s.span_id for s in mine if s.service == "notify" and s.name == "referral.accepted relay"}
        published = [s for s in mine if s.kind == "PRODUCER" and s.parent_id in relays]
        ids = {s.span_id for s in mine}
        orphans = [(s.service, s.kind, s.name) for s in mine if s.parent_id is not None and s.parent_id not in ids]
        if len(acks) == len(published) == len(AGENCIES) and not orphans:
            return trace_id, mine
        shortfall[:] = [f"acks={len(acks)}", f"acceptances published={len(published)}", f"orphans={orphans}"]
        return None

    shortfall: list[str] = ["no span tagged with the case yet"]

    async def check() -> tuple[str, list[ReceivedSpan]] | None:
        return ready()

    try:
        return await eventually(check, 60, f"all spans of case {case_id}")
    except AssertionError as error:
        raise AssertionError(f"{error}; {'; '.join(shortfall)}") from None


async def test_one_trace_per_case_across_all_services_and_kafka(
    stack: Stack, otlp: OtlpReceiver, client: httpx.AsyncClient
) -> None:
    case_id, events = await submit_and_wait(client, stack)
    trace_id, spans = await case_spans(otlp, case_id)
    assert "," not in trace_id, f"the case's spans are spread over several traces: {trace_id}"
    by_id = {s.span_id: s for s in spans}

    assert {s.service for s in spans} >= set(SERVICES)
    roots = [s for s in spans if s.parent_id is None]
    assert [(r.service, r.kind, r.name) for r in roots] == [("intake", "SERVER", "POST /cases")]

    # Across Kafka: each consumer's span is the child of the producer span that published the record it read.
    hops = set()
    for consumer in (s for s in spans if s.kind == "CONSUMER" and s.name.endswith(" process")):
        producer = by_id[consumer.parent_id or ""]
        topic = consumer.name.removesuffix(" process")
        assert producer.kind == "PRODUCER" and producer.name == f"{topic} create", (consumer, producer)
        hops.add((producer.service, topic, consumer.service))
    assert hops >= {
        ("intake", "case.submitted", "routing"),
        ("intake", "case.submitted", "notify"),
        ("routing", "referral.events", "notify"),
        ("agency-gateway", "referral.events", "notify"),
        *(("routing", f"referrals.{agency}", "agency-gateway") for agency in AGENCIES),
    }

    # No work for nothing: notify's own acceptances coming back are passed over, and the gateway's reader of
    # referral.events takes only the events that end a referral.
    echoes = [
        (s.service, s.name)
        for s in spans
        if s.kind == "CONSUMER"
        and (s.service, s.name)
        in {("notify", "referral.events process"), ("agency-gateway", "referral.events process")}
        and s.attributes.get("onestop.event_type") == "referral.accepted"
    ]
    assert echoes == [], echoes

    # Each delivery: the webhook call is made inside the gateway's handling of that agency's referral.
    def ancestors(span: ReceivedSpan) -> list[ReceivedSpan]:
        chain = []
        while span.parent_id in by_id:
            span = by_id[span.parent_id]
            chain.append(span)
        return chain

    webhooks = [s for s in spans if s.service == "agency-gateway" and s.kind == "CLIENT" and s.name.startswith("POST")]
    assert len(webhooks) >= len(AGENCIES)
    handling = [next(a for a in ancestors(w) if a.kind == "CONSUMER") for w in webhooks]
    delivered_to = {h.name.removesuffix(" process").removeprefix("referrals.") for h in handling}
    assert delivered_to == AGENCIES

    # Each acknowledgement (an agency's HTTP call, with no trace context of its own) joins the case's trace and
    # links to the request that carried it.
    everything = {s.span_id: s for s in otlp.snapshot()}
    for ack in (s for s in spans if s.name == "referral acknowledgement"):
        assert ack.service == "notify"
        requests = [everything.get(link["span_id"]) for link in ack.links]
        assert any(r is not None and r.kind == "SERVER" and r.name.endswith("/accept") for r in requests), ack

    # The flow API carries the same trace id on every step, with per-step durations.
    assert {e["trace_id"] for e in events} == {trace_id}
    for accepted in (e for e in events if e["type"] == "referral.accepted"):
        # An acceptance's step is measured from the previous event of its own referral (its delivery), or from the
        # routing when the agency's answer was stamped before the gateway stamped the delivery.
        before = [e["type"] for e in events[: events.index(accepted)] if e["referral_id"] == accepted["referral_id"]]
        expected = before[-1] if before else "case.routed"
        assert accepted["step_after"] == expected and accepted["step_ms"] >= 0, (accepted, before)
    assert [e["since_start_ms"] for e in events] == sorted(e["since_start_ms"] for e in events)

    # And the command line prints it for people.
    command = [sys.executable, "-m", "casectl", "flow", case_id, "--notify-url", stack.url("notify")]
    env = {**os.environ, "AUTH_SECRET": stack.env["AUTH_SECRET"]}  # casectl signs its own caseworker token
    printed = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, check=True, env=env
    )
    shown = printed.stdout
    assert f"trace {trace_id}" in shown
    assert shown.count("referral.accepted") == len(AGENCIES) and "case.routed" in shown


async def read_metrics(client: httpx.AsyncClient, stack: Stack, service: str) -> Metrics:
    answer = await client.get(f"{stack.url(service)}/metrics")
    assert answer.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in metrics.items() if n == name and wanted <= have)


async def test_domain_metrics_move_after_a_case(stack: Stack, client: httpx.AsyncClient) -> None:
    before = {s: await read_metrics(client, stack, s) for s in SERVICES}
    await submit_and_wait(client, stack)
    await produce(stack.kafka.bootstrap_servers, "case.submitted", b"not json at all")

    async def moved() -> dict[str, Metrics] | None:
        after = {s: await read_metrics(client, stack, s) for s in SERVICES}
        dead = value(after["routing"], "onestop_dlq_records_total", topic="case.submitted", reason="invalid_json")
        return after if dead > value(before["routing"], "onestop_dlq_records_total", topic="case.submitted") else None

    after = await eventually(moved, 60, "routing to dead-letter the poison record")

    def grew(service: str, name: str, by: float = 1, **labels: str) -> None:
        delta = value(after[service], name, **labels) - value(before[service], name, **labels)
        assert delta >= by, f"{service}: {name}{labels} grew by {delta}, expected at least {by}"

    grew("intake", "onestop_events_published_total", event_type="case.submitted")
    grew("intake", "onestop_http_request_seconds_count", method="POST", route="/cases", status="201")
    for agency in AGENCIES:
        grew("routing", "onestop_referrals_total", agency_id=agency, state="requested")
        grew("agency-gateway", "onestop_deliveries_total", agency_id=agency, outcome="delivered")
        grew("agency-gateway", "onestop_delivery_seconds_count", agency_id=agency)
        grew("notify", "onestop_referrals_total", agency_id=agency, state="accepted")
    grew("routing", "onestop_events_consumed_total", event_type="case.submitted", outcome="processed")
    grew("notify", "onestop_events_consumed_total", event_type="referral.delivered", outcome="processed", by=3)
    grew("notify", "onestop_dlq_records_total", topic="case.submitted", reason="invalid_json")
    for service in SERVICES:
        grew(service, "onestop_outbox_publish_delay_seconds_count")
        assert ("onestop_outbox_backlog", frozenset()) in after[service]
        assert ("onestop_outbox_oldest_unsent_seconds", frozenset()) in after[service]
    grew("routing", "faststream_received_messages_total", handler="case.submitted")
    lags = [dict(labels) for name, labels in after["agency-gateway"] if name == "onestop_consumer_lag"]
    # One consumer group reads every agency's topic; the lag is per topic, so per agency.
    assert {(lag["group"], lag["topic"]) for lag in lags} >= {
        ("agency-gateway.deliveries", f"referrals.{a}") for a in AGENCIES
    }


# Recognisable synthetic personal data, and the fragments of it that must appear nowhere ops can see.
PLANTED_VICTIM = {"name": "Zelda Plantedname", "phone": "+82 10-7777-3141", "email": "zelda.planted@example.org"}
PLANTED_SUMMARY = "PLANTED-SECRET-4c1e: followed home from the station by her former partner."
NEEDLES = ("plantedname", "7777-3141", "77773141", "zelda.planted", "planted-secret-4c1e", "former partner")


async def test_personal_data_appears_in_no_log_span_or_metric(
    stack: Stack, otlp: OtlpReceiver, client: httpx.AsyncClient
) -> None:
    planted: dict[str, Any] = {"victim": PLANTED_VICTIM, "summary": PLANTED_SUMMARY}
    # The unhappy paths too: a request that fails validation (its body quoted back nowhere) and a preview.
    bad = sample_case_json(victim={**PLANTED_VICTIM, "phone": "call 7777-3141 Plantedname"}, summary=PLANTED_SUMMARY)
    refused = await client.post(f"{stack.url('intake')}/cases", json=bad)
    assert refused.status_code == 422
    assert (await client.post(f"{stack.url('intake')}/cases/preview", json=sample_case_json(**planted))).is_success
    # Delivered is enough: the data has then been through intake, routing, the gateway and notify.
    case_id, _ = await submit_and_wait(client, stack, until="referral.delivered", **planted)

    async def traced_everywhere() -> bool:
        tagged = {s.service for s in otlp.snapshot() if s.attributes.get("onestop.case_id") == case_id}
        return tagged >= set(SERVICES)

    await eventually(traced_everywhere, 60, f"spans of case {case_id} from every service")
    await asyncio.sleep(1.0)  # the last batch of each service's spans

    # The data did go through the system (so the search below could have found it).
    stored = (await client.get(f"{stack.url('intake')}/cases/{case_id}")).json()
    assert stored["victim"]["name"] == PLANTED_VICTIM["name"]

    found: list[str] = []
    search: Callable[[str, str], None] = lambda where, text: found.extend(  # noqa: E731
        f"{needle!r} in {where}" for needle in NEEDLES if needle in text.lower()
    )
    for service in SERVICES:
        for log in stack.logs_dir.glob(f"{service}*.log"):
            search(str(log.name), log.read_text(encoding="utf-8", errors="replace"))
        search(f"{service} /metrics", (await client.get(f"{stack.url(service)}/metrics")).text)
    for s in otlp.snapshot():
        search(f"span {s.service}/{s.name}", repr((s.name, s.attributes, s.events, s.status_message, s.resource)))
    assert not found, found


async def test_every_service_says_what_it_depends_on_and_whether_it_answers(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    for service in SERVICES:
        answer = await client.get(f"{stack.url(service)}/health")
        assert answer.status_code == 200, answer.text
        report = answer.json()
        dependencies = {d["name"]: d for d in report["dependencies"]}
        assert dependencies["postgres"]["reachable"] and dependencies["postgres"]["required"]
        assert dependencies["kafka"]["reachable"] and dependencies["kafka"]["required"]
        assert "@" not in dependencies["postgres"]["target"], "no credentials in the health report"
        assert report["checks"]["postgres"] == report["checks"]["kafka"] == "ok"
    intake = (await client.get(f"{stack.url('intake')}/health")).json()
    routing = next(d for d in intake["dependencies"] if d["name"] == "routing")
    assert routing["kind"] == "http" and not routing["required"] and routing["reachable"]
    assert intake["produces"] == [
        "case.closed",
        "case.erased",
        "case.submitted",
        "consent.recorded",
        "consent.withdrawn",
    ]
    gateway = (await client.get(f"{stack.url('agency-gateway')}/health")).json()
    assert {"topic": "referrals.police", "group": "agency-gateway.deliveries"} in gateway["consumes"]
    assert {"topic": "referrals.police.retry", "group": "agency-gateway.deliveries"} in gateway["consumes"]
    # The gateway fetches the personal items from intake at delivery: intake is among its dependencies.
    assert any(d["name"] == "intake" and d["kind"] == "http" for d in gateway["dependencies"])

    urls = [f"--url={s}={stack.url(s)}" for s in SERVICES]
    shown = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "casectl", "health", *urls], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert [line.split()[0] for line in shown.stdout.splitlines() if not line.startswith(" ")] == list(SERVICES)
    assert sum(line.split()[:2] == ["postgres", "postgresql"] for line in shown.stdout.splitlines()) == len(SERVICES)


async def test_metrics_answer_from_memory_while_cases_flow(stack: Stack, client: httpx.AsyncClient) -> None:
    """A scrape reads gauges sampled in the background: it never waits on Kafka or PostgreSQL, so it stays far
    inside Prometheus's default 10-s scrape timeout even while cases flow (each consumer group's lag is there)."""
    cases = [sample_case_json(urgency="normal") for _ in range(20)]

    async def load() -> None:
        for case in cases:
            assert (await client.post(f"{stack.url('intake')}/cases", json=case)).status_code == 201

    async def scrape(service: str) -> float:
        started = asyncio.get_running_loop().time()
        answer = await client.get(f"{stack.url(service)}/metrics")
        assert answer.status_code == 200
        return asyncio.get_running_loop().time() - started

    loading = asyncio.create_task(load())
    took: dict[str, list[float]] = {s: [] for s in SERVICES}
    try:
        for _ in range(5):
            for service in SERVICES:
                took[service].append(await scrape(service))
    finally:
        await loading
    for service, times in took.items():
        times.sort()
        # The median, not the slowest: a 2-core machine under load may hold up any one request for a moment.
        assert times[len(times) // 2] < 0.2, f"{service} /metrics took {times} s"
        assert times[-1] < 5.0, f"{service} /metrics took {times[-1]:.1f} s, half Prometheus's scrape timeout"
    gateway = await read_metrics(client, stack, "agency-gateway")
    lagging = {
        (dict(labels)["group"], dict(labels)["topic"]) for name, labels in gateway if name == "onestop_consumer_lag"
    }
    assert {("agency-gateway.deliveries", f"referrals.{a}") for a in AGENCIES} <= lagging
