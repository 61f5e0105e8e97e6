"""End to end on the real stack: a caseworker closes a case with a reason; its open referrals are cancelled and each
agency told through its channel; and when the retention period after closing ends, its personal data is destroyed
by the timer — also when intake was down at that moment — every service told to purge, intake's list of destroyed
cases names it and the supervisor's monitoring report still counts it. (The e2e stack keeps a closed case 20 s:
CASE_RETENTION in conftest.py.)"""

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from devstack.stack import Stack
from schemas.events import CaseErased, decode_event

from tests.e2e.helpers import StackAuth, eventually, group_is_past, read_topic, referrals_by_agency, timeline
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

AGENCIES = ("police", "legal-aid")
CASE = sample_case_json(
    crime_type="violent_crime",
    needs=["safety", "legal"],
    urgency="high",  # nothing time-critical: the test does not depend on the time of day
    consents=[{"agency_id": a, "granted": True} for a in AGENCIES],
)


@pytest.fixture
async def client(stack: Stack) -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c  # type: ignore[misc]


async def test_closing_cancels_the_referrals_and_the_retention_timer_destroys_the_data_even_across_a_restart(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    intake, notify, simulator = stack.url("intake"), stack.url("notify"), stack.url("agency-simulator")
    started = datetime.now(UTC)
    submitted = await client.post(f"{intake}/cases", json=CASE)
    assert submitted.status_code == 201, submitted.text
    case_id = submitted.json()["case_id"]

    async def taken_up() -> dict[str, dict[str, Any]] | None:
        found = await referrals_by_agency(client, stack, case_id)
        return found if set(found) == set(AGENCIES) and all(r["state"] == "accepted" for r in found.values()) else None

    before = await eventually(taken_up, 120, "both referrals accepted")

    # Only staff close a case, with a reason code; once.
    url = f"{intake}/cases/{case_id}/close"
    as_agency = {"authorization": f"Bearer {stack.token('agency', 'police')}"}
    assert (await client.post(url, json={"reason": "back_to_daily_life"}, headers=as_agency)).status_code == 403
    assert (await client.post(url, json={"reason": "feeling better"})).status_code == 422
    as_caseworker = {"authorization": f"Bearer {stack.token('caseworker')}"}
    closed = await client.post(url, json={"reason": "back_to_daily_life"}, headers=as_caseworker)
    assert closed.status_code == 200, closed.text
    closing = closed.json()
    assert closing["closed_by"] == "caseworker:dev-caseworker" and closing["reason"] == "back_to_daily_life"
    again = await client.post(url, json={"reason": "other"})
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"

    # Intake goes down before the retention period ends and comes back after: the timer is durable.
    stack.processes["intake"].stop()
    try:
        # Meanwhile notify cancels the open referrals and the agencies are told through their channels.
        async def cancelled() -> dict[str, dict[str, Any]] | None:
            found = await referrals_by_agency(client, stack, case_id)
            return found if all(r["state"] == "cancelled" for r in found.values()) else None

        ended = await eventually(cancelled, 60, "the open referrals cancelled")
        assert {r["reason"] for r in ended.values()} == {"case_closed"}
        for agency in AGENCIES:
            referral_id = before[agency]["referral_id"]

            async def told(agency: str = agency, referral_id: str = referral_id) -> list[dict[str, Any]] | None:
                notices = (await client.get(f"{simulator}/agencies/{agency}/notices")).json()
                return [n for n in notices if n["referral_id"] == referral_id and n["type"] == "referral.cancelled"]

            [notice] = await eventually(told, 60, f"{agency} told of the cancellation")
            assert notice["reason"] == "case_closed"
        status = (await client.get(f"{notify}/cases/{case_id}/status")).json()
        assert status["status"] == "closed" and status["closing"]["reason"] == "back_to_daily_life"

        retention_until = datetime.fromisoformat(closing["retention_until"])
        while datetime.now(retention_until.tzinfo) <= retention_until:  # the moment passes while intake is down
            await asyncio.sleep(0.5)
    finally:
        stack.processes["intake"].start()
        stack.processes["intake"].wait_ready(120)

    async def destroyed() -> dict[str, Any] | None:
        answer = await client.get(f"{intake}/retention/destroyed")
        return next((d for d in answer.json()["destroyed"] if d["case_id"] == case_id), None)

    report = await eventually(destroyed, 60, "the case destroyed once intake is back")
    assert report["reason"] == "back_to_daily_life" and report["destroyed_at"] >= report["retention_until"]
    gone = await client.get(f"{intake}/cases/{case_id}")
    assert gone.status_code == 410, gone.text

    # Every service is told to purge, as on an erasure, with the cause.
    records = [r for r in await read_topic(stack.kafka.bootstrap_servers, "case.erased") if r.key == case_id.encode()]
    [erased] = [decode_event(r.value) for r in records]
    assert isinstance(erased, CaseErased) and erased.cause == "retention_ended"
    as_auditor = {"authorization": f"Bearer {stack.token('auditor')}"}
    trail = (await client.get(f"{intake}/access-log", params={"case_id": case_id}, headers=as_auditor)).json()
    actions = [(e["action"], e["actor"]) for e in trail]
    assert ("case.close", "caseworker:dev-caseworker") in actions, actions
    assert ("case.destroy.retention_ended", "service:retention-timer") in actions, actions
    events = [e["type"] for e in await timeline(client, notify, case_id)]
    assert "case.closed" in events

    async def purged_by_notify() -> bool:
        return await group_is_past(stack.kafka.bootstrap_servers, "notify.case-erased", records[0])

    await eventually(purged_by_notify, 60, "notify to handle the case's erasure")

    # The supervisor's report still counts the case after its data is gone: the figures are ids, codes and times.
    period = {"start": started.isoformat(), "end": datetime.now(UTC).isoformat(), "crime_type": "violent_crime"}
    report = (await client.get(f"{notify}/reports/referrals", params=period)).json()
    assert report["cases_closed"] == {"back_to_daily_life": 1}, report["cases_closed"]
    agencies = {a["agency_id"]: a for a in report["agencies"]}
    for agency in AGENCIES:
        assert agencies[agency]["received"] >= 1 and agencies[agency]["cancelled"] >= 1, agencies[agency]
