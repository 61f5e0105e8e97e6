"""End to end on the real stack: a staged case goes through the centre's plan. Its crisis need is routed at intake
and nothing else; a later stage's needs are routed when the caseworker advances the plan, or when the stage under way
meets its rule (`advance_when` in catalogue/plan.toml: crisis ends once its referrals are accepted, recovery once they
are completed, investigation and legal only by the caseworker) — never silently: the timeline names who or which rule;
a caseworker moves a need between stages that have not started; the case's status shows each stage with its referrals
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


async def test_a_staged_case_moves_on_by_its_stages_rules_and_when_the_caseworker_advances_it(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    intake, routing, notify = stack.url("intake"), stack.url("routing"), stack.url("notify")
    submitted = await client.post(f"{intake}/cases", json=STAGED)
    assert submitted.status_code == 201, submitted.text
    case_id = submitted.json()["case_id"]
    plan_url = f"{routing}/cases/{case_id}/plan"

    async def needs_in(states: set[str], expected: set[str], plan: list[str]) -> dict[str, Any]:
        """The case's status once the referrals are for exactly these needs, all in one of `states`, and the plan's
        stages are in these states."""

        async def check() -> dict[str, Any] | None:
            status = (await client.get(f"{notify}/cases/{case_id}/status")).json()
            routed = {n for r in status.get("referrals", []) for n in r["needs"]}
            taken_up = all(r["state"] in states for r in status.get("referrals", []))
            shown = [s["state"] for s in status.get("plan") or []]
            return status if routed == expected and taken_up and shown == plan else None

        return await eventually(check, 120, f"referrals for {sorted(expected)} {sorted(states)}, the plan {plan}")

    async def routing_heard(agency_id: str, state: str) -> None:
        """Routing has read the referral's state on referral.events (and judged the stage's rule with it: the same
        transaction)."""

        async def check() -> bool:
            decision = (await client.get(f"{routing}/cases/{case_id}/decision")).json()
            return any(r["agency_id"] == agency_id and r["state"] == state for r in decision["referrals"])

        await eventually(check, 120, f"routing to hear that {agency_id} {state} the referral")

    # At intake the crisis stage only; the police accept, so crisis ends by its rule and investigation and legal
    # starts on its own: its need is routed and taken up.
    status = await needs_in({"accepted"}, {"safety", "legal"}, ["done", "active", "waiting", "waiting"])
    stages = {s["stage"]: s for s in status["plan"]}
    assert [r["agency_id"] for r in stages["crisis"]["referrals"]] == ["police"]
    assert [r["agency_id"] for r in stages["investigation_legal"]["referrals"]] == ["legal-aid"]
    shown = (await client.get(plan_url)).json()
    assert shown["stages"][0]["name_en"] == "Crisis and safety" and shown["stages"][0]["name_ko"] == "위기 개입 및 안전"

    # Investigation and legal has no rule: its referral accepted, it stays under way until the caseworker says.
    await routing_heard("legal-aid", "accepted")
    assert [s["state"] for s in (await client.get(plan_url)).json()["stages"]] == [
        "done",
        "active",
        "waiting",
        "waiting",
    ]

    # Only staff move the plan; employment moves up to recovery (a waiting stage's needs are the caseworker's).
    as_agency = {"authorization": f"Bearer {stack.token('agency', 'police')}"}
    assert (await client.post(f"{plan_url}/advance", headers=as_agency)).status_code == 403
    moved = await client.put(f"{plan_url}/stages/recovery", json={"needs": ["counselling", "employment"]})
    assert moved.status_code == 200, moved.text
    assert {s["stage"]: s["needs"] for s in moved.json()["stages"]}["daily_life"] == []
    refused = await client.put(f"{plan_url}/stages/crisis", json={"needs": ["safety", "housing"]})
    assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"

    # The caseworker advances: recovery's needs, and only them, are routed and accepted. Its rule asks for them
    # completed, so accepted is not enough.
    advanced = await client.post(f"{plan_url}/advance")
    assert advanced.status_code == 200, advanced.text
    every_need = {"safety", "legal", "counselling", "employment"}
    status = await needs_in({"accepted"}, every_need, ["done", "done", "active", "waiting"])
    stages = {s["stage"]: s for s in status["plan"]}
    routed_in_recovery = {n for r in stages["recovery"]["referrals"] for n in status_needs(status, r["referral_id"])}
    assert routed_in_recovery == {"counselling", "employment"}
    assert stages["crisis"]["seconds"] > 0 and stages["investigation_legal"]["seconds"] > 0
    in_recovery = {r["referral_id"]: r["agency_id"] for r in stages["recovery"]["referrals"]}
    for agency_id in in_recovery.values():
        await routing_heard(agency_id, "accepted")
    assert [s["state"] for s in (await client.get(plan_url)).json()["stages"]] == ["done", "done", "active", "waiting"]

    # The agencies complete them: recovery ends by its rule, and with it the plan (daily life has no need left).
    for referral_id, agency_id in in_recovery.items():
        done = await client.post(
            f"{notify}/referrals/{referral_id}/complete", json={"agency_id": agency_id, "outcome": "successful"}
        )
        assert done.status_code == 200, done.text
    await needs_in({"accepted", "completed"}, every_need, ["done", "done", "done", "done"])
    assert (await client.post(f"{plan_url}/advance")).status_code == 409, "nothing is left to start"

    async def every_change() -> list[dict[str, Any]] | None:  # notify learns of the last one asynchronously
        changes = [e for e in await timeline(client, notify, case_id) if e["type"] == "case.plan"]
        return changes if len(changes) >= 5 else None

    changes = await eventually(every_change, 60, "the plan's five changes in the timeline")
    staff = client.auth.staff_credential  # type: ignore[union-attr]
    # Made, advanced by the crisis rule, one stage edited (the refused edit changed nothing), advanced by the
    # caseworker, ended by the recovery rule.
    assert [c["detail"]["changed_by"] for c in changes] == [
        "routing",
        "rule:all_accepted",
        staff,
        staff,
        "rule:all_completed",
    ]

    unstaged = await client.post(f"{intake}/cases", json={**STAGED, "staged": False})
    assert (await client.get(f"{routing}/cases/{unstaged.json()['case_id']}/plan")).status_code == 404
