"""End to end on the real stack: a stalking case goes to the stalking hub and legal aid with the explanation in the
timeline; when the hub declines, routing re-routes its unmet needs to the next candidates (one of them under a
recorded PIPA Art. 18(2) override) and never back; an agency that reports itself full is skipped."""

from typing import Any

import httpx
import pytest
from devstack.stack import Stack
from schemas.events import decode_event

from tests.e2e.helpers import StackAuth, eventually, read_topic, timeline
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

OVERRIDE = {
    "legal_basis": "imminent_danger",
    "recorded_by": "caseworker-7",
    "reason": "the offender was seen outside the victim's home today",
}
STALKING_CASE = sample_case_json(
    crime_type="stalking",
    needs=["safety", "legal", "counselling"],
    urgency="high",  # not urgent: office hours do not matter, so the test does not depend on the time of day
    consents=[
        {"agency_id": "seoul-stalking", "granted": True, "sensitive_granted": True},
        {"agency_id": "legal-aid", "granted": True},
        {"agency_id": "victim-support-center", "granted": True},
        {"agency_id": "police", "granted": False, "override": OVERRIDE},
    ],
    summary="Followed home for weeks; messages at night.",
)


@pytest.fixture
async def client(stack: Stack) -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c  # type: ignore[misc]


def routed_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "case.routed"]


def explained(routed: dict[str, Any], *, chosen: bool) -> dict[str, dict[str, Any]]:
    return {d["agency_id"]: d for d in routed["detail"]["decisions"] if d["chosen"] is chosen}


async def test_a_stalking_case_goes_to_the_hub_and_is_rerouted_after_a_decline(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    simulator, notify = stack.url("agency-simulator"), stack.url("notify")
    behaviours = {
        "seoul-stalking": {"action": "decline", "reason": "no_capacity"},
        # Time for notify to learn of the re-routed referrals (from case.routed) before the agencies answer them.
        "police": {"action": "accept", "delay_seconds": 2},
        "victim-support-center": {"action": "accept", "delay_seconds": 2},
    }
    for agency, behaviour in behaviours.items():
        answer = await client.put(f"{simulator}/behaviour/{agency}", json=behaviour)
        assert answer.status_code == 200, answer.text
    try:
        submitted = await client.post(f"{stack.url('intake')}/cases", json=STALKING_CASE)
        assert submitted.status_code == 201, submitted.text
        case_id = submitted.json()["case_id"]

        seen: list[tuple[str, str | None]] = []

        async def settled() -> list[dict[str, Any]] | None:
            events = await timeline(client, notify, case_id)
            seen[:] = [(e["type"], e["agency_id"]) for e in events]
            accepted = {e["agency_id"] for e in events if e["type"] == "referral.accepted"}
            return events if accepted >= {"legal-aid", "police", "victim-support-center"} else None

        try:
            events = await eventually(settled, 180, "the re-routed referrals to be accepted")
        except AssertionError as error:
            raise AssertionError(f"{error}; the case's timeline so far: {seen}") from None
    finally:
        for agency in behaviours:
            await client.delete(f"{simulator}/behaviour/{agency}")

    first, rerouted = routed_events(events)

    # The first decision: the stalking hub for safety and counselling, legal aid for legal, each explained.
    assert {r["agency_id"]: r["needs"] for r in first["detail"]["referrals"]} == {
        "seoul-stalking": ["safety", "counselling"],
        "legal-aid": ["legal"],
    }
    reasons = explained(first, chosen=True)
    assert "stalking hub" in reasons["seoul-stalking"]["reason"]
    assert "consent recorded" in reasons["legal-aid"]["reason"]
    assert first["detail"]["uncovered_needs"] == [] and first["detail"]["rerouted_from"] is None
    hub_referral = next(r["referral_id"] for r in first["detail"]["referrals"] if r["agency_id"] == "seoul-stalking")

    # The hub declined; notify asked for re-routing; routing chose the next candidates, never the hub again.
    [decline] = [e for e in events if e["type"] == "referral.declined"]
    assert decline["agency_id"] == "seoul-stalking"
    assert rerouted["detail"]["rerouted_from"] == hub_referral
    assert {r["agency_id"]: r["needs"] for r in rerouted["detail"]["referrals"]} == {
        "police": ["safety"],
        "victim-support-center": ["counselling"],
    }
    assert "declined this case" in explained(rerouted, chosen=False)["seoul-stalking"]["reason"]
    # Police had no consent: the override, its legal basis and who recorded it are in the timeline.
    police = explained(rerouted, chosen=True)["police"]
    supervisor = client.auth.staff_credential  # type: ignore[union-attr]
    # Who decided it comes from the token; its free-text reason stays in intake's consent ledger, off Kafka.
    assert police["override"] == {**OVERRIDE, "recorded_by": supervisor, "reason": None}
    assert "PIPA Art. 18(2) (imminent_danger)" in police["reason"] and supervisor in police["reason"]
    types = [e["type"] for e in events]
    last_routed = max(i for i, t in enumerate(types) if t == "case.routed")
    assert types.index("referral.declined") < types.index("referral.rerouting") < last_routed

    # The new referral went out on the police topic, without the sensitive summary (an override is not the
    # separate sensitive-data consent).
    records = [
        r for r in await read_topic(stack.kafka.bootstrap_servers, "referrals.police") if r.key == case_id.encode()
    ]
    assert len(records) == 1
    sent = decode_event(records[0].value)
    assert sent.case.needs == ["safety"] and sent.case.summary is None  # type: ignore[attr-defined]

    # Routing's own record of the case carries both decisions.
    decision = (await client.get(f"{stack.url('routing')}/cases/{case_id}/decision")).json()
    assert [r["rerouted_from"] for r in decision["reroutings"]] == [hub_referral]
    assert {r["agency_id"] for r in decision["referrals"]} == {
        "seoul-stalking",
        "legal-aid",
        "police",
        "victim-support-center",
    }


async def test_an_agency_that_reports_it_is_full_is_skipped_in_the_preview(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    routing = stack.url("routing")
    full = await client.put(f"{routing}/agencies/seoul-stalking/capacity", json={"available": 0})
    assert full.status_code == 200 and full.json()["remaining"] == 0
    try:
        answer = await client.post(f"{stack.url('intake')}/cases/preview", json={**STALKING_CASE, "consents": []})
        assert answer.status_code == 200, answer.text
        preview = answer.json()
    finally:
        assert (await client.delete(f"{routing}/agencies/seoul-stalking/capacity")).status_code == 204

    assert {a["agency_id"]: a["needs"] for a in preview["agencies"]} == {
        "police": ["safety"],
        "legal-aid": ["legal"],
        "victim-support-center": ["counselling"],
    }
    skipped = {d["agency_id"]: d["reason"] for d in preview["decisions"] if not d["chosen"]}
    assert "full" in skipped["seoul-stalking"]
    assert all(a["consent_notice"]["purpose"] for a in preview["agencies"])
    assert sorted(preview["consent_to_ask"]) == ["legal-aid", "police", "victim-support-center"]
