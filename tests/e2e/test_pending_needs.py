"""End to end on the real stack: a need no agency can take is never forgotten. It is held pending (routing says why,
notify lists the case as needing attention), routed as soon as an agency reports places, or closed by a caseworker
with a reason — and only staff may close one."""

from typing import Any

import httpx
import pytest
from devstack.stack import Stack

from tests.e2e.helpers import StackAuth, eventually, timeline
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ONLY_ONE = "statement-assistant"  # the one agency offering statement support (sexual violence, child abuse)


def case_needing_statement_support() -> dict[str, Any]:
    return sample_case_json(
        crime_type="sexual_violence",
        needs=["investigation", "statement_support"],
        urgency="high",  # nothing time-critical: the test does not depend on the time of day
        consents=[{"agency_id": "police", "granted": True}, {"agency_id": ONLY_ONE, "granted": True}],
    )


@pytest.fixture
async def client(stack: Stack) -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c  # type: ignore[misc]


async def submit(client: httpx.AsyncClient, stack: Stack) -> str:
    submitted = await client.post(f"{stack.url('intake')}/cases", json=case_needing_statement_support())
    assert submitted.status_code == 201, submitted.text
    return str(submitted.json()["case_id"])


async def status_of(client: httpx.AsyncClient, stack: Stack, case_id: str) -> dict[str, Any] | None:
    answer = await client.get(f"{stack.url('notify')}/cases/{case_id}/status")
    return answer.json() if answer.status_code == 200 else None


async def wait_pending(client: httpx.AsyncClient, stack: Stack, case_id: str) -> dict[str, Any]:
    async def pending() -> dict[str, Any] | None:
        status = await status_of(client, stack, case_id)
        return status if status and [p["need"] for p in status["pending_needs"]] == ["statement_support"] else None

    return await eventually(pending, 120, "statement support to be pending on the case's status")


async def test_a_pending_need_is_routed_when_the_agency_reports_places_and_another_is_closed_by_staff(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    routing, notify = stack.url("routing"), stack.url("notify")
    full = await client.put(f"{routing}/agencies/{ONLY_ONE}/capacity", json={"available": 0})
    assert full.status_code == 200, full.text
    try:
        routed_later, closed = await submit(client, stack), await submit(client, stack)

        # Held, with why, on both sides: routing's reasons, notify's status and needing-attention list.
        status = await wait_pending(client, stack, routed_later)
        assert status["status"] == "needs_attention"
        await wait_pending(client, stack, closed)
        held = (await client.get(f"{routing}/cases/{routed_later}/pending-needs")).json()["pending_needs"]
        assert [p["need"] for p in held] == ["statement_support"] and "full" in held[0]["reason"], held
        attention = (await client.get(f"{notify}/cases/needing-attention")).json()
        assert {routed_later, closed} <= {c["case_id"] for c in attention}

        # Only staff close a pending need, with a reason from the vocabulary; then it is gone everywhere.
        url = f"{routing}/cases/{closed}/pending-needs/statement_support/close"
        as_agency = {"authorization": f"Bearer {stack.token('agency', ONLY_ONE)}"}
        refused = await client.post(url, json={"reason": "no_longer_needed"}, headers=as_agency)
        assert refused.status_code == 403, refused.text
        assert (await client.post(url, json={"reason": "because"})).status_code == 422
        done = await client.post(url, json={"reason": "arranged_outside_network"})
        assert done.status_code == 200, done.text
        assert done.json()["closed_by"] == client.auth.staff_credential  # type: ignore[union-attr]
        assert (await client.post(url, json={"reason": "arranged_outside_network"})).status_code == 404

        async def closed_on_status() -> dict[str, Any] | None:
            status = await status_of(client, stack, closed)
            return status if status and status["pending_needs"] == [] else None

        await eventually(closed_on_status, 60, "the closed need to leave the case's status")
        events = await timeline(client, notify, closed)
        [closing] = [e for e in events if e["type"] == "need.closed"]
        assert closing["detail"]["reason"] == "arranged_outside_network"

        # The agency reports places: routing tries the pending need again at once and the agency gets it.
        reopened = await client.put(f"{routing}/agencies/{ONLY_ONE}/capacity", json={"available": 3})
        assert reopened.status_code == 200, reopened.text

        async def routed() -> dict[str, Any] | None:
            status = await status_of(client, stack, routed_later)
            agencies = {r["agency_id"] for r in status["referrals"]} if status else set()
            return status if status and status["pending_needs"] == [] and ONLY_ONE in agencies else None

        status = await eventually(routed, 120, "the pending need to be routed once the agency reported places")
    finally:
        assert (await client.delete(f"{routing}/agencies/{ONLY_ONE}/capacity")).status_code == 204

    [later] = [r for r in status["referrals"] if r["agency_id"] == ONLY_ONE]
    assert later["needs"] == ["statement_support"]
    assert (await client.get(f"{routing}/cases/{routed_later}/pending-needs")).json()["pending_needs"] == []
    routings = [e for e in await timeline(client, notify, routed_later) if e["type"] == "case.routed"]
    assert [e["detail"]["uncovered_needs"] for e in routings] == [["statement_support"], []]
    # The closed one was not routed when places came: closing ends the search.
    assert ONLY_ONE not in {r["agency_id"] for r in (await status_of(client, stack, closed) or {})["referrals"]}


async def test_a_need_pending_for_want_of_consent_is_routed_as_soon_as_the_victim_consents(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    """The only agency for the need has no consent at submission: the need is held. The victim consents later (a
    caseworker records it in intake's ledger): routing hears it (consent.recorded) and routes the need at once — long
    before its retry timer (five minutes here) would."""
    intake, routing = stack.url("intake"), stack.url("routing")
    body = {**case_needing_statement_support(), "consents": [{"agency_id": "police", "granted": True}]}
    submitted = await client.post(f"{intake}/cases", json=body)
    assert submitted.status_code == 201, submitted.text
    case_id = str(submitted.json()["case_id"])
    await wait_pending(client, stack, case_id)
    held = (await client.get(f"{routing}/cases/{case_id}/pending-needs")).json()["pending_needs"]
    assert "consent" in held[0]["reason"], held

    recorded = await client.post(f"{intake}/cases/{case_id}/consents", json={"agency_id": ONLY_ONE, "granted": True})
    assert recorded.status_code == 201, recorded.text

    async def routed() -> dict[str, Any] | None:
        status = await status_of(client, stack, case_id)
        taken = [r for r in status["referrals"] if r["agency_id"] == ONLY_ONE] if status else []
        return status if status and status["pending_needs"] == [] and taken else None

    status = await eventually(routed, 120, "the need routed once the victim consented")
    [later] = [r for r in status["referrals"] if r["agency_id"] == ONLY_ONE]
    assert later["needs"] == ["statement_support"]

    async def delivered() -> bool:  # and the agency has it: delivered with what the new consent lets it see
        snapshot = (await client.get(f"{stack.url('agency-simulator')}/agencies/{ONLY_ONE}/referrals")).json()
        return later["referral_id"] in str(snapshot)

    await eventually(delivered, 120, "the referral delivered to the agency the victim consented to")
