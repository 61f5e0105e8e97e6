"""End to end on the real stack: an agency that stays silent is reminded through its own channel (the simulator
records the signed reminder), then breaches its (shortened) deadline; the caseworker gets an e-mail, routing gets the
needs to re-route, and once another agency has them the silent referral is cancelled and its agency told. A timer
due while notify is down fires once when it is back. The first test runs two replicas of notify and routing. The stack
runs with ACK_DEADLINE_HOUR_SECONDS=10: the police's 4 hours for a high case are 40 s."""

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4, uuid5

import httpx
import pytest
from devstack.stack import Stack
from schemas.events import decode_event

from tests.e2e.conftest import Mailbox
from tests.e2e.helpers import StackAuth, eventually, read_topic, timeline
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c


@pytest.fixture
async def silent_police(stack: Stack, client: httpx.AsyncClient) -> Any:
    simulator = stack.url("agency-simulator")
    answer = await client.put(f"{simulator}/behaviour/police", json={"action": "silent"})
    assert answer.status_code == 200, answer.text
    try:
        yield
    finally:
        await client.delete(f"{simulator}/behaviour/police")


@pytest.fixture
async def two_of_each(stack: Stack) -> AsyncIterator[None]:
    """A second notify and a second routing in their consumer groups, for the length of a test: Kafka shares the
    partitions out, and both notify replicas poll the same timers and notices (`FOR UPDATE SKIP LOCKED`)."""
    replicas = [stack.replica(service) for service in ("notify", "routing")]
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            await asyncio.to_thread(replica.wait_ready, 120)
        yield
    finally:
        for replica in replicas:
            await asyncio.to_thread(replica.stop)


def investigation_case(caseworker_email: str) -> dict[str, Any]:
    """Police is first for investigation; the prosecution is next, and has the victim's consent too."""
    return sample_case_json(
        needs=["investigation"],
        urgency="high",  # not urgent: office hours do not matter, so the re-route does not depend on the time of day
        consents=[
            {"agency_id": "police", "granted": True, "sensitive_granted": True},
            {"agency_id": "prosecution", "granted": True},
        ],
        caseworker={"id": "caseworker-7", "email": caseworker_email},
    )


async def submit(client: httpx.AsyncClient, stack: Stack, case: dict[str, Any]) -> str:
    answer = await client.post(f"{stack.url('intake')}/cases", json=case)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["case_id"])


async def police_referral(client: httpx.AsyncClient, stack: Stack, case_id: str) -> dict[str, Any]:
    """The police referral once it is delivered and its deadline is set."""

    async def delivered() -> dict[str, Any] | None:
        answer = await client.get(f"{stack.url('notify')}/cases/{case_id}/referrals")
        found = [r for r in answer.json() if r["agency_id"] == "police"] if answer.status_code == 200 else []
        ready = found and found[0]["state"] == "delivered" and found[0]["ack_deadline"] is not None
        return found[0] if ready else None

    return await eventually(delivered, 90, f"police referral of {case_id} delivered with a deadline")


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == event_type]


async def events_of(client: httpx.AsyncClient, stack: Stack, case_id: str, event_type: str) -> list[dict[str, Any]]:
    return of_type(await timeline(client, stack.url("notify"), case_id), event_type)


async def breach_email(mailbox: Mailbox, caseworker: str) -> list[Any] | None:
    return [m for m in mailbox.to(caseworker) if "missed its acknowledgement deadline" in m["Subject"]] or None


async def notices_to(
    client: httpx.AsyncClient, stack: Stack, agency_id: str, referral_id: str, notice_type: str
) -> list[dict[str, Any]] | None:
    """What the agency's own record (the simulator's) shows it received about the referral, besides the referral."""
    answer = await client.get(f"{stack.url('agency-simulator')}/agencies/{agency_id}/notices")
    assert answer.status_code == 200, answer.text
    found = [n for n in answer.json() if n["referral_id"] == referral_id and n["type"] == notice_type]
    return found or None


async def rerouting_requests(stack: Stack, case_id: str) -> list[Any]:
    records = await read_topic(stack.kafka.bootstrap_servers, "referral.rerouting")
    return [decode_event(r.value) for r in records if r.key == case_id.encode()]


async def test_a_silent_agency_is_reminded_then_overdue_and_its_needs_go_to_the_next_agency(
    stack: Stack, client: httpx.AsyncClient, mailbox: Mailbox, silent_police: None, two_of_each: None
) -> None:
    # With two replicas of notify and routing, each reminder, breach, e-mail and cancellation still happens once.
    notify = stack.url("notify")
    caseworker = f"cw-{uuid4().hex[:8]}@centre.example"
    case_id = await submit(client, stack, investigation_case(caseworker))
    police = await police_referral(client, stack, case_id)
    deadline = datetime.fromisoformat(police["ack_deadline"])

    [reminder] = await eventually(lambda: events_of(client, stack, case_id, "referral.reminded"), 90, "a reminder")
    assert reminder["agency_id"] == "police" and datetime.fromisoformat(reminder["occurred_at"]) < deadline
    assert datetime.fromisoformat(reminder["detail"]["deadline"]) == deadline
    # The agency itself has it, through its webhook, signed, before the deadline, and not as a new referral.
    [received] = await eventually(
        lambda: notices_to(client, stack, "police", police["referral_id"], "referral.reminded"),
        60,
        "the reminder in the police's own record",
    )
    # The agency's copy has an id of its own, derived from the timeline's (the outbox holds each event id once).
    assert received["event_id"] == str(uuid5(UUID(reminder["event_id"]), "referrals.police"))
    assert received["signature"] == "valid"
    assert received["known_referral"] and datetime.fromisoformat(received["deadline"]) == deadline
    assert datetime.fromisoformat(received["first_received_at"]) < deadline

    [overdue] = await eventually(lambda: events_of(client, stack, case_id, "referral.overdue"), 60, "the breach")
    assert datetime.fromisoformat(overdue["occurred_at"]) >= deadline
    [email] = await eventually(lambda: breach_email(mailbox, caseworker), 30, "the caseworker's e-mail")
    assert case_id in email.get_content() and police["referral_id"] in email.get_content()
    assert "Kim" not in email.get_content()  # the victim's name stays out of e-mails

    [rerouting] = await events_of(client, stack, case_id, "referral.rerouting")
    assert rerouting["detail"] == {"needs": ["investigation"], "cause": "deadline_breached", "requested_by": "notify"}
    [request] = await eventually(lambda: rerouting_requests(stack, case_id), 30, "the request on referral.rerouting")
    assert (str(request.referral_id), request.cause, request.needs) == (
        police["referral_id"],
        "deadline_breached",
        ["investigation"],
    )

    # Routing takes the request: the prosecution, next for investigation, gets a referral of its own.
    async def prosecution_accepted() -> list[dict[str, Any]] | None:
        referrals = (await client.get(f"{notify}/cases/{case_id}/referrals")).json()
        return [r for r in referrals if r["agency_id"] == "prosecution" and r["state"] == "accepted"] or None

    await eventually(prosecution_accepted, 60, "the re-routed referral accepted by the prosecution")

    # Another agency has the needs now: the silent referral is cancelled, and the police are told through their channel.
    async def police_cancelled() -> dict[str, Any] | None:
        found = (await client.get(f"{notify}/referrals/{police['referral_id']}")).json()
        return found if found["state"] == "cancelled" else None

    cancelled = await eventually(police_cancelled, 60, "the overdue police referral cancelled")
    assert cancelled["reason"] == "deadline_breached"
    [told] = await eventually(
        lambda: notices_to(client, stack, "police", police["referral_id"], "referral.cancelled"),
        60,
        "the cancellation in the police's own record",
    )
    assert told["signature"] == "valid" and told["reason"] == "deadline_breached" and told["deliveries"] == 1
    late = await client.post(f"{notify}/referrals/{police['referral_id']}/accept", json={"agency_id": "police"})
    assert late.status_code == 409, "a late acceptance of the cancelled referral is refused"

    status = (await client.get(f"{notify}/cases/{case_id}/status")).json()
    assert status["status"] == "all_accepted" and status["attention"] == []
    listed = (await client.get(f"{notify}/cases/needing-attention")).json()
    assert case_id not in {c["case_id"] for c in listed}
    assert len(await events_of(client, stack, case_id, "referral.overdue")) == 1
    # Once each: the reminder was delivered one time, and the referral itself was not taken as a new one.
    [reminded] = await notices_to(client, stack, "police", police["referral_id"], "referral.reminded") or [None]
    assert reminded is not None and reminded["deliveries"] == 1
    record = (await client.get(f"{stack.url('agency-simulator')}/agencies/police/referrals")).json()
    assert [r["deliveries"] for r in record["referrals"] if r["referral_id"] == police["referral_id"]] == [1]
    delivered = (await client.get(f"{stack.url('agency-gateway')}/cases/{case_id}/notices")).json()
    assert sorted((n["notice_type"], n["outcome"]) for n in delivered if n["agency_id"] == "police") == [
        ("referral.cancelled", "delivered"),
        ("referral.reminded", "delivered"),
    ]
    # What a Kafka-native agency would read on its own topic: the referral, then the reminder, then the cancellation.
    on_topic = await read_topic(stack.kafka.bootstrap_servers, "referrals.police")
    assert [decode_event(r.value).type for r in on_topic if r.key == case_id.encode()] == [
        "referral.requested",
        "referral.reminded",
        "referral.cancelled",
    ]


async def test_a_deadline_that_passes_while_notify_is_down_fires_once_when_it_is_back(
    stack: Stack, client: httpx.AsyncClient, mailbox: Mailbox, silent_police: None
) -> None:
    caseworker = f"cw-{uuid4().hex[:8]}@centre.example"
    case_id = await submit(client, stack, investigation_case(caseworker))
    police = await police_referral(client, stack, case_id)
    deadline = datetime.fromisoformat(police["ack_deadline"])

    notify = stack.processes["notify"]
    notify.stop()
    try:
        await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 2)
    finally:
        back = time.time()
        notify.start()
        notify.wait_ready(120)

    [overdue] = await eventually(lambda: events_of(client, stack, case_id, "referral.overdue"), 60, "the breach")
    assert datetime.fromisoformat(overdue["recorded_at"]).timestamp() >= back
    await eventually(lambda: breach_email(mailbox, caseworker), 30, "the caseworker's e-mail")
    await eventually(lambda: rerouting_requests(stack, case_id), 30, "the request on referral.rerouting")
    await asyncio.sleep(3)  # time for a second firing, were there one

    events = await timeline(client, stack.url("notify"), case_id)
    assert len(of_type(events, "referral.overdue")) == 1
    assert of_type(events, "referral.reminded") == [], "a reminder due only after the deadline is not sent"
    assert await notices_to(client, stack, "police", police["referral_id"], "referral.reminded") is None
    assert len(of_type(events, "referral.rerouting")) == 1
    assert len(await rerouting_requests(stack, case_id)) == 1
    assert len(await breach_email(mailbox, caseworker) or []) == 1
    on_topic = [
        decode_event(r.value)
        for r in await read_topic(stack.kafka.bootstrap_servers, "referral.events")
        if r.key == case_id.encode()
    ]
    assert [e.type for e in on_topic].count("referral.overdue") == 1
