"""End to end on the real stack: when an agency completes a referral, the case's caseworker gets a follow-up task —
check with the victim within their contact rules, or a review on file when the victim must not be contacted — and
the case stays on the needing-attention list until it is done. A not_successful completion proposes re-routing its
need; only when the caseworker accepts does routing give it to another agency, and the referral is delivered there.
Agencies neither see nor close tasks."""

from collections.abc import AsyncIterator
from datetime import datetime, time
from typing import Any
from uuid import uuid4

import httpx
import pytest
from devstack.stack import Stack
from notify.notices import in_safe_hours
from schemas.events import SafeHours, decode_event

from tests.e2e.helpers import StackAuth, eventually, read_topic, referrals_by_agency, timeline
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

EMPLOYMENT = ("employment-center", "seoul-job-center")  # both take employment in Seoul, in English
SAFE_HOURS = {"start": "09:00:00", "end": "21:00:00", "timezone": "Asia/Seoul"}
PROBLEM = "application/problem+json"


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c


def employment_case(caseworker: str, rules: dict[str, Any]) -> dict[str, Any]:
    return sample_case_json(
        needs=["employment"],
        language="en",
        consents=[{"agency_id": a, "granted": True} for a in EMPLOYMENT],
        caseworker={"id": caseworker, "email": f"{caseworker}@centre.example"},
        victim={"name": "Kim Example", "email": "victim@example.org", "contact_rules": rules},
    )


async def submitted_and_accepted(stack: Stack, client: httpx.AsyncClient, case: dict[str, Any]) -> tuple[str, str, str]:
    """The case's id, and its one referral (id, agency) once the agency's simulator has accepted it."""
    answer = await client.post(f"{stack.url('intake')}/cases", json=case)
    assert answer.status_code == 201, answer.text
    case_id = answer.json()["case_id"]

    async def accepted() -> dict[str, Any] | None:
        referrals = list((await referrals_by_agency(client, stack, case_id)).values())
        return referrals[0] if len(referrals) == 1 and referrals[0]["state"] == "accepted" else None

    referral = await eventually(accepted, 120, "the case's one referral accepted")
    assert referral["agency_id"] in EMPLOYMENT and referral["needs"] == ["employment"]
    return case_id, referral["referral_id"], referral["agency_id"]


async def status_of(client: httpx.AsyncClient, stack: Stack, case_id: str) -> dict[str, Any]:
    answer = await client.get(f"{stack.url('notify')}/cases/{case_id}/status")
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    return status


async def test_a_completion_opens_a_follow_up_the_caseworker_closes_and_agencies_cannot_touch(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    notify = stack.url("notify")
    caseworker = f"cw-{uuid4().hex[:8]}"
    case_id, referral_id, agency = await submitted_and_accepted(
        stack, client, employment_case(caseworker, {"safe_channel": "email", "safe_hours": SAFE_HOURS})
    )
    completed = await client.post(
        f"{notify}/referrals/{referral_id}/complete", json={"agency_id": agency, "outcome": "successful"}
    )
    assert completed.status_code == 200 and completed.json()["changed"] is True

    # Opened with the completion, in its transaction: a contact task, due inside the victim's safe hours.
    status = await status_of(client, stack, case_id)
    [task] = status["follow_ups"]
    assert (task["referral_id"], task["agency_id"], task["needs"]) == (referral_id, agency, ["employment"])
    assert (task["kind"], task["no_contact"], task["proposal"], task["state"]) == (
        "check_with_victim",
        None,
        None,
        "open",
    )
    assert task["completion"] == {"outcome": "successful", "reason": None}
    assert task["caseworker_id"] == caseworker
    safe = SafeHours(start=time(9), end=time(21), timezone="Asia/Seoul")
    due = datetime.fromisoformat(task["due_at"])
    assert in_safe_hours(due, safe) and due > datetime.fromisoformat(task["opened_at"])
    assert "victim@example.org" not in str(task) and "Kim" not in str(task)
    assert status["status"] == "needs_attention"
    assert {"task_id": task["task_id"], "reason": "follow_up_open"}.items() <= status["attention"][0].items()
    listed = (await client.get(f"{notify}/cases/needing-attention", params={"limit": 1000})).json()
    assert case_id in {c["case_id"] for c in listed}
    home = (await client.get(f"{notify}/follow-ups", params={"state": "open", "caseworker": caseworker})).json()
    assert [t["task_id"] for t in home] == [task["task_id"]]

    # An agency's token neither sees nor closes tasks; bad input is a problem and changes nothing.
    done_url = f"{notify}/cases/{case_id}/follow-ups/{task['task_id']}/done"
    as_agency = {"authorization": f"Bearer {stack.token('agency', agency)}"}
    assert (await client.get(f"{notify}/follow-ups", headers=as_agency)).status_code == 403
    refused = await client.post(done_url, json={"outcome": "needs_met"}, headers=as_agency)
    assert refused.status_code == 403
    for bad in ({"outcome": "all_good"}, {"outcome": "rerouted"}, {"outcome": "needs_met", "closed_by": "x"}):
        answer = await client.post(done_url, json=bad)
        assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM, (bad, answer.text)
    nothing_proposed = await client.post(f"{notify}/cases/{case_id}/follow-ups/{task['task_id']}/reroute")
    assert nothing_proposed.status_code == 409 and nothing_proposed.headers["content-type"] == PROBLEM
    elsewhere = await client.post(f"{notify}/cases/{uuid4()}/follow-ups/{task['task_id']}/done", json={})
    assert elsewhere.status_code == 422  # the body first: no outcome
    elsewhere = await client.post(
        f"{notify}/cases/{uuid4()}/follow-ups/{task['task_id']}/done", json={"outcome": "needs_met"}
    )
    assert elsewhere.status_code == 404 and elsewhere.headers["content-type"] == PROBLEM
    assert (await status_of(client, stack, case_id))["follow_ups"] == [task]

    # The caseworker closes it: who from the token. Then the case has nothing left to do.
    done = await client.post(done_url, json={"outcome": "needs_met"})
    assert done.status_code == 200, done.text
    staff = client.auth.staff_credential  # type: ignore[union-attr]
    assert (done.json()["state"], done.json()["outcome"], done.json()["closed_by"]) == ("done", "needs_met", staff)
    again = await client.post(done_url, json={"outcome": "needs_met"})
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
    status = await status_of(client, stack, case_id)
    assert status["status"] == "closed" and status["attention"] == []
    home = (await client.get(f"{notify}/follow-ups", params={"state": "open", "caseworker": caseworker})).json()
    assert home == []

    entries = [e for e in await timeline(client, notify, case_id) if e["type"].startswith("follow_up.")]
    assert [(e["type"], e["referral_id"]) for e in entries] == [
        ("follow_up.opened", referral_id),
        ("follow_up.closed", referral_id),
    ]
    assert entries[0]["detail"]["opened_by"] == "notify" and entries[0]["agency_id"] == agency
    assert (entries[1]["detail"]["closed_by"], entries[1]["detail"]["outcome"]) == (staff, "needs_met")


async def test_a_not_successful_completion_proposes_re_routing_the_caseworker_accepts_it(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    notify = stack.url("notify")
    caseworker = f"cw-{uuid4().hex[:8]}"
    case_id, referral_id, first = await submitted_and_accepted(
        stack, client, employment_case(caseworker, {"do_not_contact": True})
    )
    [other] = set(EMPLOYMENT) - {first}
    completion = {"agency_id": first, "outcome": "not_successful", "reason": "lack_of_capacity"}
    assert (await client.post(f"{notify}/referrals/{referral_id}/complete", json=completion)).status_code == 200

    # A review on file (the victim must not be contacted), with the proposal; nothing is re-routed on its own.
    status = await status_of(client, stack, case_id)
    [task] = status["follow_ups"]
    assert (task["kind"], task["no_contact"]) == ("review_without_contact", "do_not_contact")
    assert task["proposal"] == {"action": "reroute", "needs": ["employment"], "state": "proposed"}
    assert task["completion"] == {"outcome": "not_successful", "reason": "lack_of_capacity"}
    assert status["status"] == "needs_attention" and status["attention"][0]["reason"] == "reroute_proposed"
    assert list(await referrals_by_agency(client, stack, case_id)) == [first]

    reroute_url = f"{notify}/cases/{case_id}/follow-ups/{task['task_id']}/reroute"
    as_agency = {"authorization": f"Bearer {stack.token('agency', first)}"}
    assert (await client.post(reroute_url, headers=as_agency)).status_code == 403
    accepted = await client.post(reroute_url)
    assert accepted.status_code == 200, accepted.text
    shown = accepted.json()
    assert (shown["state"], shown["outcome"], shown["proposal"]["state"]) == ("done", "rerouted", "accepted")
    twice = await client.post(reroute_url)
    assert twice.status_code == 409 and twice.headers["content-type"] == PROBLEM

    # Routing gives the need to the other agency (never back to the one that completed it); it is delivered there.
    async def delivered_elsewhere() -> dict[str, Any] | None:
        referral = (await referrals_by_agency(client, stack, case_id)).get(other)
        return referral if referral is not None and referral["state"] in ("delivered", "accepted") else None

    new = await eventually(delivered_elsewhere, 120, f"the need re-routed to {other} and delivered")
    assert new["needs"] == ["employment"] and new["referral_id"] != referral_id
    referrals = await referrals_by_agency(client, stack, case_id)
    assert set(referrals) == {first, other} and referrals[first]["state"] == "completed"

    staff = client.auth.staff_credential  # type: ignore[union-attr]
    events = await timeline(client, notify, case_id)
    follow = [(e["type"], e["detail"].get("proposal")) for e in events if e["type"].startswith("follow_up.")]
    assert follow == [("follow_up.opened", "reroute"), ("follow_up.closed", "accepted")]
    [asked] = [e for e in events if e["type"] == "referral.rerouting"]
    assert asked["detail"] == {"needs": ["employment"], "cause": "not_successful", "requested_by": staff}
    routed = [e for e in events if e["type"] == "case.routed" and e["detail"]["rerouted_from"] == referral_id]
    assert [r["agency_id"] for r in routed[0]["detail"]["referrals"]] == [other]

    # The opening and the closing are events on referral.events, once each.
    async def published() -> list[str] | None:
        records = [r for r in await read_topic(stack.kafka.bootstrap_servers, "referral.events")]
        types = [decode_event(r.value).type for r in records if r.key == case_id.encode()]
        return types if "follow_up.closed" in types else None

    types = await eventually(published, 60, "the follow-up's events on referral.events")
    assert types.count("follow_up.opened") == 1 and types.count("follow_up.closed") == 1
