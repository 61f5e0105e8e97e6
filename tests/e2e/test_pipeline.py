"""End to end on the real stack: one intake becomes referrals, deliveries and acknowledgements, in order."""

import json
from collections import Counter
from uuid import UUID, uuid4

import httpx
import pytest
from devstack.stack import Stack
from schemas.events import decode_event, encode_event

from tests.e2e.helpers import StackAuth, eventually, produce, read_topic, timeline
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

EXPECTED_AGENCIES = {"police", "legal-aid", "employment-center"}


@pytest.fixture
async def client(stack: Stack) -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=10.0, auth=StackAuth(stack)) as c:
        yield c  # type: ignore[misc]


async def submit(client: httpx.AsyncClient, stack: Stack, **overrides: object) -> str:
    answer = await client.post(f"{stack.url('intake')}/cases", json=sample_case_json(**overrides))
    assert answer.status_code == 201, answer.text
    return str(answer.json()["case_id"])


async def accepted_timeline(client: httpx.AsyncClient, stack: Stack, case_id: str, accepted: int) -> list[dict]:
    async def done() -> list[dict] | None:
        events = await timeline(client, stack.url("notify"), case_id)
        return events if sum(e["type"] == "referral.accepted" for e in events) >= accepted else None

    return await eventually(done, 90, f"{accepted} acceptances of case {case_id}")


async def test_a_case_with_three_needs_is_routed_delivered_and_accepted_in_order(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    case_id = await submit(client, stack)
    events = await accepted_timeline(client, stack, case_id, 3)

    assert [e["type"] for e in events] == [
        "case.submitted",
        "case.routed",
        *["referral.delivered"] * 3,
        *["referral.accepted"] * 3,
    ]
    times = [e["occurred_at"] for e in events]
    assert times == sorted(times)
    assert {e["agency_id"] for e in events if e["type"] == "referral.accepted"} == EXPECTED_AGENCIES

    # Three referrals on three agency topics, keyed by the case.
    bootstrap = stack.kafka.bootstrap_servers
    for agency in EXPECTED_AGENCIES:
        records = [r for r in await read_topic(bootstrap, f"referrals.{agency}") if r.key == case_id.encode()]
        assert len(records) == 1, f"{agency} should have exactly one referral for the case"
        assert decode_event(records[0].value).agency_id == agency  # type: ignore[attr-defined]

    # Three webhooks reached the agencies, each once, and each saw only its allowed fields.
    received = (await client.get(f"{stack.url('agency-simulator')}/received")).json()
    mine = [r for r in _receipts(received) if r["case_id"] == case_id]
    assert Counter(r["agency_id"] for r in mine) == dict.fromkeys(EXPECTED_AGENCIES, 1)
    assert all(r["duplicates"] == 0 for r in mine)
    fields = {r["agency_id"]: set(r["fields"]) for r in mine}
    assert "summary" in fields["police"], "police was given the sensitive-data consent"
    assert "summary" not in fields["legal-aid"], "no sensitive-data consent for legal-aid"
    referrals = (await client.get(f"{stack.url('notify')}/cases/{case_id}/referrals")).json()
    assert {(r["agency_id"], r["state"]) for r in referrals} == {(a, "accepted") for a in EXPECTED_AGENCIES}


def _receipts(received: object) -> list[dict]:
    """The simulator's record, flattened to one entry per (agency, referral) with the case id."""
    entries = received["referrals"] if isinstance(received, dict) and "referrals" in received else received
    assert isinstance(entries, list), f"unexpected simulator record shape: {json.dumps(received)[:300]}"
    return entries


async def test_bad_input_gets_clear_errors_and_changes_nothing(stack: Stack, client: httpx.AsyncClient) -> None:
    intake, notify = stack.url("intake"), stack.url("notify")
    malformed = await client.post(f"{intake}/cases", content=b"{not json", headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and malformed.headers["content-type"] == "application/problem+json"
    invalid = await client.post(f"{intake}/cases", json=sample_case_json(urgency="SECRET-URGENCY"))
    assert invalid.status_code == 422 and "SECRET-URGENCY" not in invalid.text
    assert [e["loc"] for e in invalid.json()["errors"]] == ["body.urgency"]

    unknown = await client.post(f"{notify}/referrals/{uuid4()}/accept", json={"agency_id": "police"})
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"

    case_id = await submit(client, stack)
    await accepted_timeline(client, stack, case_id, 3)
    referrals = {
        r["agency_id"]: r["referral_id"] for r in (await client.get(f"{notify}/cases/{case_id}/referrals")).json()
    }
    police = referrals["police"]
    wrong_agency = await client.post(f"{notify}/referrals/{police}/accept", json={"agency_id": "legal-aid"})
    assert wrong_agency.status_code == 404, "another agency's referral is answered as an unknown one"
    assert wrong_agency.json()["detail"] == f"no referral {police}"
    again = await client.post(f"{notify}/referrals/{police}/accept", json={"agency_id": "police"})
    assert again.status_code == 200 and again.json()["changed"] is False
    late_decline = await client.post(
        f"{notify}/referrals/{police}/decline", json={"agency_id": "police", "reason": "no_capacity"}
    )
    assert late_decline.status_code == 409
    bad_reason = await client.post(
        f"{notify}/referrals/{police}/decline", json={"agency_id": "police", "reason": "bored"}
    )
    assert bad_reason.status_code == 422
    events = await timeline(client, notify, case_id)
    assert [e["type"] for e in events].count("referral.declined") == 0
    assert (await client.get(f"{notify}/referrals/{police}")).json()["state"] == "accepted"


async def test_poison_records_go_to_the_dlq_with_a_reason_and_consumers_carry_on(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    bootstrap = stack.kafka.bootstrap_servers
    marker = uuid4().hex.encode()
    await produce(bootstrap, "case.submitted", b"\x00\xffnot json " + marker, key=marker)
    wrong_version = json.loads(encode_event_sample())
    wrong_version["version"] = 99
    await produce(bootstrap, "referral.events", json.dumps(wrong_version).encode(), key=marker)

    async def dead_lettered(topic: str) -> list | None:
        found = [r for r in await read_topic(bootstrap, f"{topic}.dlq") if r.key == marker]
        return found or None

    garbage = (await eventually(lambda: dead_lettered("case.submitted"), 30, "garbage in case.submitted.dlq"))[0]
    unknown = await eventually(lambda: dead_lettered("referral.events"), 30, "v99 in referral.events.dlq")
    headers = dict((k, v.decode()) for k, v in garbage.headers)
    assert headers["dlq.reason"] == "invalid_json" and headers["dlq.source.topic"] == "case.submitted"
    # Both notify and routing read referral.events? Only notify does; its group put the record in the DLQ.
    assert {dict((k, v.decode()) for k, v in r.headers)["dlq.reason"] for r in unknown} == {"unknown_event"}

    case_id = await submit(client, stack)
    await accepted_timeline(client, stack, case_id, 3)


def encode_event_sample() -> bytes:
    from schemas.events import CaseRouted

    return encode_event(CaseRouted(case_id=uuid4(), producer="test", referrals=[], decisions=[]))


async def test_a_case_submitted_while_routing_is_down_is_routed_once_it_is_back(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    routing = stack.processes["routing"]
    routing.stop()
    case_id = await submit(client, stack)
    recorded = await eventually(lambda: timeline(client, stack.url("notify"), case_id), 30, "case.submitted recorded")
    assert [e["type"] for e in recorded] == ["case.submitted"]
    routing.start()
    routing.wait_ready(90)
    events = await accepted_timeline(client, stack, case_id, 3)
    assert [e["type"] for e in events].count("case.routed") == 1


async def test_restarting_the_whole_stack_loses_no_case(stack: Stack, client: httpx.AsyncClient) -> None:
    for name in ("notify", "agency-gateway", "routing"):
        stack.processes[name].stop()
    case_id = await submit(client, stack)  # accepted while everything behind intake is down
    stack.stop()
    stack.start()
    events = await accepted_timeline(client, stack, case_id, 3)
    assert [e["type"] for e in events][:2] == ["case.submitted", "case.routed"]
    assert UUID(case_id)


async def test_a_decline_asks_routing_to_find_another_agency_for_the_unmet_needs(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    simulator = stack.url("agency-simulator")
    declined = await client.put(f"{simulator}/behaviour/legal-aid", json={"action": "decline", "reason": "no_capacity"})
    assert declined.status_code == 200, declined.text
    try:
        case_id = await submit(client, stack)

        async def rerouting_requested() -> list[dict] | None:
            events = await timeline(client, stack.url("notify"), case_id)
            return [e for e in events if e["type"] == "referral.rerouting"] or None

        [request] = await eventually(rerouting_requested, 60, "a re-routing request after legal-aid declined")
        assert request["agency_id"] == "legal-aid"
        assert request["detail"] == {"needs": ["legal"], "cause": "declined", "requested_by": "notify"}
        on_topic = [
            r
            for r in await read_topic(stack.kafka.bootstrap_servers, "referral.rerouting")
            if r.key == case_id.encode()
        ]
        assert len(on_topic) == 1
    finally:
        await client.delete(f"{simulator}/behaviour/legal-aid")
