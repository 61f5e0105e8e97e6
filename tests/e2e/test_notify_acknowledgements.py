"""End to end on the real stack: a referral's whole life through the acknowledgement API and the agency's Kafka
acknowledgement topic, with the same rules on both; every change an event on referral.events."""

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from devstack.stack import Stack
from schemas.events import ReferralAccepted, ReferralDeclined, decode_event, encode_event

from tests.e2e.conftest import Mailbox
from tests.e2e.helpers import StackAuth, eventually, produce, read_topic, timeline
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

AGENCY = "employment-center"


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c


async def test_a_referral_lives_through_the_api_and_the_acknowledgement_topic_with_the_same_rules(
    stack: Stack, client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    intake, notify, simulator = stack.url("intake"), stack.url("notify"), stack.url("agency-simulator")
    bootstrap = stack.kafka.bootstrap_servers
    tag = uuid4().hex[:8]
    caseworker, victim_email = f"cw-{tag}@centre.example", f"victim-{tag}@example.org"
    case = sample_case_json(
        needs=["employment"],
        consents=[{"agency_id": AGENCY, "granted": True}],
        caseworker={"id": "caseworker-3", "email": caseworker},
        victim={"name": "Kim Example", "email": victim_email, "contact_rules": {"safe_channel": "email"}},
    )
    assert (await client.put(f"{simulator}/behaviour/{AGENCY}", json={"action": "silent"})).status_code == 200
    try:
        submitted = await client.post(f"{intake}/cases", json=case)
        assert submitted.status_code == 201, submitted.text
        case_id = submitted.json()["case_id"]
        stored = (await client.get(f"{intake}/cases/{case_id}")).json()
        assert stored["caseworker"] == {"id": "caseworker-3", "email": caseworker}
        assert stored["victim"]["contact_rules"] == {
            "do_not_contact": False,
            "safe_channel": "email",
            "safe_hours": None,
        }

        async def delivered() -> dict[str, Any] | None:
            referrals = (await client.get(f"{notify}/cases/{case_id}/referrals")).json()
            return next((r for r in referrals if r["state"] == "delivered"), None)

        referral = await eventually(delivered, 90, "the referral delivered")
        referral_id, url = referral["referral_id"], f"{notify}/referrals/{referral['referral_id']}"

        # Work cannot start before the agency accepts: refused, nothing changes.
        too_early = await client.post(f"{url}/start", json={"agency_id": AGENCY})
        assert too_early.status_code == 409 and too_early.headers["content-type"] == "application/problem+json"
        assert (await client.get(url)).json()["state"] == "delivered"

        # The agency accepts on its own topic, acks.employment-center.
        ids = {"case_id": UUID(case_id), "referral_id": UUID(referral_id)}
        accepted = ReferralAccepted(**ids, producer=AGENCY, agency_id=AGENCY, note="from our own system")
        await produce(bootstrap, f"acks.{AGENCY}", encode_event(accepted), key=case_id.encode())
        await eventually(lambda: _state_is(client, url, "accepted"), 60, "the acceptance from the topic applied")

        # Not its agency's answer, and a decline after the acceptance: both refused, to the topic's DLQ.
        impostor = ReferralAccepted(**ids, producer="police", agency_id="police")
        late = ReferralDeclined(**ids, producer=AGENCY, agency_id=AGENCY, reason="no_capacity")
        for refused in (impostor, late):
            await produce(bootstrap, f"acks.{AGENCY}", encode_event(refused), key=case_id.encode())

        async def dead_lettered() -> dict[str, str] | None:
            records = [r for r in await read_topic(bootstrap, f"acks.{AGENCY}.dlq") if r.key == case_id.encode()]
            reasons = {
                json.loads(r.value)["event_id"]: dict((k, v.decode()) for k, v in r.headers)["dlq.reason"]
                for r in records
            }
            return reasons if len(reasons) == 2 else None

        reasons = await eventually(dead_lettered, 60, "two refused answers in the DLQ")
        assert reasons == {str(impostor.event_id): "wrong_agency", str(late.event_id): "transition_refused"}
        assert (await client.get(url)).json()["state"] == "accepted"

        # The rest over HTTP: start, complete (not successful, with its reason); then nothing can cancel it.
        assert (await client.post(f"{url}/start", json={"agency_id": AGENCY})).json()["state"] == "in_progress"
        no_reason = await client.post(f"{url}/complete", json={"agency_id": AGENCY, "outcome": "not_successful"})
        assert no_reason.status_code == 422
        completion = {"agency_id": AGENCY, "outcome": "not_successful", "reason": "unable_to_contact_victim"}
        completed = await client.post(f"{url}/complete", json=completion)
        assert completed.status_code == 200 and completed.json() == {
            "referral_id": referral_id,
            "state": "completed",
            "changed": True,
        }
        again = await client.post(f"{url}/complete", json=completion)
        assert again.status_code == 200 and again.json()["changed"] is False
        assert (await client.post(f"{url}/cancel", json={"reason": "case_closed"})).status_code == 409
        final = (await client.get(url)).json()
        assert (final["state"], final["outcome"], final["reason"]) == (
            "completed",
            "not_successful",
            "unable_to_contact_victim",
        )
        # Every referral has ended, but the caseworker's follow-up is open (it proposes re-routing): not closed yet.
        status = (await client.get(f"{notify}/cases/{case_id}/status")).json()
        assert status["status"] == "needs_attention"
        assert [(t["referral_id"], t["proposal"]["state"]) for t in status["follow_ups"]] == [(referral_id, "proposed")]

        # Every change is an event on referral.events, once; the timeline shows them in order.
        async def published() -> list[str] | None:
            records = [r for r in await read_topic(bootstrap, "referral.events") if r.key == case_id.encode()]
            types = [decode_event(r.value).type for r in records]
            return types if "referral.completed" in types else None

        types = await eventually(published, 30, "the completion on referral.events")
        for change in ("referral.accepted", "referral.in_progress", "referral.completed"):
            assert types.count(change) == 1, types
        assert "referral.declined" not in types
        in_order = [e["type"] for e in await timeline(client, notify, case_id) if e["referral_id"] == referral_id]
        assert in_order == [
            "referral.delivered",
            "referral.accepted",
            "referral.in_progress",
            "referral.completed",
            "follow_up.opened",
        ]

        # The caseworker hears of the completion; the victim, through the safe channel, only that there is news.
        completion_mail = await eventually(lambda: _mail(mailbox, caseworker, "completed"), 30, "the caseworker's mail")
        assert "unable_to_contact_victim" in completion_mail.get_content()
        victim_mail = await eventually(lambda: _mail(mailbox, victim_email, ""), 30, "the victim's mail")
        for revealing in ("employment", "고용", "Kim", case_id[:8]):
            assert revealing not in victim_mail["Subject"] + victim_mail.get_content()
    finally:
        await client.delete(f"{simulator}/behaviour/{AGENCY}")


async def _state_is(client: httpx.AsyncClient, url: str, state: str) -> bool:
    return bool((await client.get(url)).json()["state"] == state)


async def _mail(mailbox: Mailbox, to: str, subject_has: str) -> Any:
    found = [m for m in mailbox.to(to) if subject_has in m["Subject"]]
    return found[0] if found else None
