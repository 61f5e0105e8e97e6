"""End to end on the real stack: a staged case goes through the centre's plan. Its crisis need is routed at intake
and nothing else; each later stage's needs are routed when the caseworker advances the plan, never silently; a
caseworker moves a need between stages that have not started; the case's status shows each stage with its referrals
and the time spent in it."""

from typing import Any

import httpx
import pytest
from devstack.stack import Stack

from tests.e2e.helpers import StackAuth, eventually, timeline
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CONSENTED = ("police", "legal-aid", "victim-support-center", "smile-center", "employment-center", "seoul-job-center")
STAGED = sample_case_json(
    crime_type="violent_crime",
    needs=["legal", "safety", "counselling", "employment"],
    urgency="high",  # nothing time-critical: the test does not depend on the time of day
    consents=[{"agency_id": a, "granted": True} for a in CONSENTED],
    staged=True,
)


def status_needs(status: dict[str, Any], referral_id: str) -> list[str]:
    return next(r["needs"] for r in status["referrals"] if r["referral_id"] == referral_id)


@pytest.fixture
async def client(stack: Stack) -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c  # type: ignore[misc]


async def test_a_staged_case_routes_each_stage_when_the_caseworker_advances_it(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    intake, routing, notify = stack.url("intake"), stack.url("routing"), stack.url("notify")
    submitted = await client.post(f"{intake}/cases", json=STAGED)
    assert submitted.status_code == 201, submitted.text
    case_id = submitted.json()["case_id"]
    plan_url = f"{routing}/cases/{case_id}/plan"

    async def needs_taken_up(expected: set[str]) -> dict[str, Any]:
        """The case's status once the referrals for exactly these needs are accepted."""

        async def check() -> dict[str, Any] | None:
            status = (await client.get(f"{notify}/cases/{case_id}/status")).json()
            routed = {n for r in status.get("referrals", []) for n in r["needs"]}
            accepted = all(r["state"] == "accepted" for r in status.get("referrals", []))
            return status if routed == expected and accepted and status.get("plan") else None

        return await eventually(check, 120, f"referrals for {sorted(expected)} accepted")

    # At intake: the crisis stage only.
    status = await needs_taken_up({"safety"})
    stages = {s["stage"]: s for s in status["plan"]}
    assert stages["crisis"]["state"] == "active" and [r["agency_id"] for r in stages["crisis"]["referrals"]] == [
        "police"
    ]
    assert {s: stages[s]["state"] for s in ("investigation_legal", "recovery", "daily_life")} == dict.fromkeys(
        ("investigation_legal", "recovery", "daily_life"), "waiting"
    )
    shown = (await client.get(plan_url)).json()
    assert shown["stages"][0]["name_en"] == "Crisis and safety" and shown["stages"][0]["name_ko"] == "위기 개입 및 안전"

    # Only staff move the plan; employment moves up to recovery (a waiting stage's needs are the caseworker's).
    as_agency = {"authorization": f"Bearer {stack.token('agency', 'police')}"}
    assert (await client.post(f"{plan_url}/advance", headers=as_agency)).status_code == 403
    moved = await client.put(f"{plan_url}/stages/recovery", json={"needs": ["counselling", "employment"]})
    assert moved.status_code == 200, moved.text
    assert {s["stage"]: s["needs"] for s in moved.json()["stages"]}["daily_life"] == []
    refused = await client.put(f"{plan_url}/stages/crisis", json={"needs": ["safety", "housing"]})
    assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"

    # Each advance routes the next stage's needs, and only them.
    advanced = await client.post(f"{plan_url}/advance")
    assert advanced.status_code == 200, advanced.text
    await needs_taken_up({"safety", "legal"})
    assert (await client.post(f"{plan_url}/advance")).status_code == 200
    status = await needs_taken_up({"safety", "legal", "counselling", "employment"})
    stages = {s["stage"]: s for s in status["plan"]}
    assert [s["state"] for s in status["plan"]] == ["done", "done", "active", "waiting"]
    routed_in_recovery = {n for r in stages["recovery"]["referrals"] for n in status_needs(status, r["referral_id"])}
    assert routed_in_recovery == {"counselling", "employment"}
    assert stages["crisis"]["seconds"] > 0 and stages["investigation_legal"]["seconds"] > 0

    # The last stage ends the plan (daily life has no need left); then nothing is left to start.
    ended = await client.post(f"{plan_url}/advance")
    assert ended.status_code == 200 and all(s["state"] == "done" for s in ended.json()["stages"])
    assert (await client.post(f"{plan_url}/advance")).status_code == 409

    async def every_change() -> list[dict[str, Any]] | None:  # notify learns of the last one asynchronously
        changes = [e for e in await timeline(client, notify, case_id) if e["type"] == "case.plan"]
        return changes if len(changes) >= 5 else None

    changes = await eventually(every_change, 60, "the plan's five changes in the timeline")
    assert len(changes) == 5  # made, one stage edited, advanced three times (the refused edit changed nothing)
    assert changes[0]["detail"]["changed_by"] == "routing"
    assert changes[1]["detail"]["changed_by"] == client.auth.staff_credential  # type: ignore[union-attr]

    unstaged = await client.post(f"{intake}/cases", json={**STAGED, "staged": False})
    assert (await client.get(f"{routing}/cases/{unstaged.json()['case_id']}/plan")).status_code == 404
