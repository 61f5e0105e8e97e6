"""The consent ledger on the real stack: consents are recorded with the notice the victim was shown; withdrawing one
cancels the open referral to that agency and the agency (the simulator) is told; withdrawing only the sensitive-items
consent leaves the referral standing but the items are no longer disclosed; an override needs a supervisor and a
legal basis; every read and change is in the access log."""

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from devstack.stack import DATABASE, Stack
from kit.auth import Role, issue_token
from schemas.events import ConsentWithdrawn, decode_event

from tests.e2e.helpers import StackAuth, eventually, read_topic
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

WITHDRAWN, KEPT = "employment-center", "legal-aid"


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c


def bearer(stack: Stack, role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {stack.token(role)}"}


async def referrals(client: httpx.AsyncClient, stack: Stack, case_id: str) -> dict[str, dict[str, Any]]:
    answer = await client.get(f"{stack.url('notify')}/cases/{case_id}/referrals")
    return {r["agency_id"]: r for r in answer.json()} if answer.status_code == 200 else {}


async def test_withdrawing_a_consent_cancels_the_open_referral_and_tells_the_agency(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    intake, notify, simulator = stack.url("intake"), stack.url("notify"), stack.url("agency-simulator")
    for agency in (WITHDRAWN, KEPT):  # the referrals stay open: nobody answers them
        assert (await client.put(f"{simulator}/behaviour/{agency}", json={"action": "silent"})).status_code == 200
    try:
        body = sample_case_json(
            needs=["legal", "employment"],
            urgency="normal",
            consents=[
                {"agency_id": KEPT, "granted": True, "sensitive_granted": True},
                {"agency_id": WITHDRAWN, "granted": True},
            ],
            summary=f"Summary {uuid4().hex[:8]} of what happened.",
        )
        submitted = await client.post(f"{intake}/cases", json=body)
        assert submitted.status_code == 201, submitted.text
        case_id = submitted.json()["case_id"]
        consents = f"{intake}/cases/{case_id}/consents"

        # The consents given with the case are in the ledger, each with the notice items the victim was shown.
        ledger = (await client.get(consents)).json()
        states = {s["agency_id"]: s for s in ledger["agencies"]}
        assert (states[KEPT]["consent"], states[KEPT]["sensitive"]) == ("granted", "granted")
        notice = states[KEPT]["notice"]
        assert notice["recipient"] == "Korea Legal Aid Corporation (대한법률구조공단)"
        assert notice["purpose"] and notice["retention"] and "phone number" in notice["items"]
        assert notice["sensitive_items"] == ["case summary (sensitive)"] and notice["right_to_refuse"]
        assert [(e["agency_id"], e["action"]) for e in ledger["history"]] == [(KEPT, "grant"), (WITHDRAWN, "grant")]
        assert all(e["recorded_by"].startswith("supervisor:") for e in ledger["history"])

        # A caseworker records one more answer, against the notice the preview showed; a stale notice is refused.
        police = {"agency_id": "police", "granted": False}
        shown = {"purpose": "something else", "items": ["name"], "retention": "forever"}
        caseworker = bearer(stack, "caseworker")
        stale = await client.post(consents, json={**police, "notice": shown}, headers=caseworker)
        assert stale.status_code == 409, stale.text
        refused = await client.post(consents, json=police, headers=caseworker)
        assert refused.status_code == 201, refused.text
        assert refused.json()["consent"]["consent"] == "refused"
        assert refused.json()["recorded"]["recorded_by"] == "caseworker:dev-caseworker"

        async def both_delivered() -> dict[str, dict[str, Any]] | None:
            found = await referrals(client, stack, case_id)
            ready = all(found.get(a, {}).get("state") == "delivered" for a in (KEPT, WITHDRAWN))
            return found if ready else None

        delivered = await eventually(both_delivered, 120, "both referrals delivered")
        withdrawn_referral = delivered[WITHDRAWN]["referral_id"]

        # Only the sensitive items' consent to legal aid: its referral stands, the summary is disclosed no more.
        sensitive = await client.post(f"{consents}/{KEPT}/withdraw", json={"scope": "sensitive"}, headers=caseworker)
        assert sensitive.status_code == 200, sensitive.text
        assert sensitive.json()["consent"]["consent"] == "granted"
        assert sensitive.json()["consent"]["sensitive"] == "withdrawn"
        disclosed = await disclose(stack, case_id, delivered[KEPT]["referral_id"], KEPT, ["victim.name", "summary"])
        assert disclosed.status_code == 200, disclosed.text
        assert set(disclosed.json()["items"]) == {"victim.name"}

        # The whole consent to the employment centre: its open referral is cancelled and the centre told.
        withdrawal = await client.post(f"{consents}/{WITHDRAWN}/withdraw", headers=caseworker)
        assert withdrawal.status_code == 200, withdrawal.text
        assert withdrawal.json()["consent"]["consent"] == "withdrawn"
        again = await client.post(f"{consents}/{WITHDRAWN}/withdraw", headers=caseworker)
        assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
        # The case as staff read it shows the ledger's state, not the consents as submitted.
        shown = (await client.get(f"{intake}/cases/{case_id}", headers=caseworker)).json()["consents"]
        assert {c["agency_id"]: (c["granted"], c["sensitive_granted"]) for c in shown} == {
            KEPT: (True, False),
            WITHDRAWN: (False, False),
            "police": (False, False),  # refused, above
        }

        async def cancelled() -> dict[str, Any] | None:
            referral = (await referrals(client, stack, case_id)).get(WITHDRAWN, {})
            return referral if referral.get("state") == "cancelled" else None

        referral = await eventually(cancelled, 60, "the employment centre's referral cancelled")
        assert referral["reason"] == "consent_withdrawn"

        async def agency_told() -> list[dict[str, Any]] | None:
            answer = await client.get(f"{simulator}/agencies/{WITHDRAWN}/notices")
            told = [n for n in answer.json() if n["referral_id"] == withdrawn_referral]
            return [n for n in told if n["type"] == "referral.cancelled"] or None

        [notice_received] = await eventually(agency_told, 60, "the employment centre told of the cancellation")
        assert notice_received["reason"] == "consent_withdrawn"
        # Legal aid's referral stands: the sensitive-items withdrawal (applied before, same case) cancels nothing.
        assert (await referrals(client, stack, case_id))[KEPT]["state"] == "delivered"
        timeline = (await client.get(f"{notify}/cases/{case_id}/timeline")).json()["events"]
        assert [e["agency_id"] for e in timeline if e["type"] == "consent.withdrawn"] == [KEPT, WITHDRAWN]

        # Nothing of the case goes to the employment centre any more; the event on Kafka holds no personal data.
        refused_disclosure = await disclose(stack, case_id, withdrawn_referral, WITHDRAWN, ["victim.name"])
        assert refused_disclosure.status_code == 409 and "consent withdrawn" in refused_disclosure.text
        records = [r for r in await read_topic(stack.kafka.bootstrap_servers, "consent.withdrawn") if r.key]
        events = [decode_event(r.value) for r in records if r.key == case_id.encode()]
        assert [(e.agency_id, e.scope) for e in events if isinstance(e, ConsentWithdrawn)] == [
            (KEPT, "sensitive"),
            (WITHDRAWN, "all"),
        ]
        assert all(b"Kim Example" not in r.value and b"Summary" not in r.value for r in records)
        assert await routing_withdrawals(stack, case_id) == {(KEPT, "sensitive"), (WITHDRAWN, "all")}

        # Providing without consent: a supervisor's decision, on a legal basis, with the reason recorded.
        basis = {"legal_basis": "imminent_danger", "reason": "Offender seen near the victim's workplace"}
        override = f"{consents}/{WITHDRAWN}/override"
        assert (await client.post(override, json=basis, headers=caseworker)).status_code == 403
        assert (await client.post(override, json={"reason": "urgent"})).status_code == 422
        accepted = await client.post(override, json=basis, headers=bearer(stack, "supervisor"))
        assert accepted.status_code == 201, accepted.text
        state = accepted.json()["consent"]
        assert state["consent"] == "withdrawn" and state["may_provide"] is True
        assert state["override"]["legal_basis"] == "imminent_danger"
        assert state["override"]["decided_by"] == "supervisor:dev-supervisor"
        assert (await client.post(f"{consents}/{KEPT}/override", json=basis)).status_code == 409  # it has consent

        # The ledger keeps every row, in order; the access log every read and change.
        history = [(e["agency_id"], e["action"]) for e in (await client.get(consents)).json()["history"]]
        assert history[2:] == [
            ("police", "grant"),
            (KEPT, "withdraw"),
            (WITHDRAWN, "withdraw"),
            (WITHDRAWN, "override"),
        ]
        log = await client.get(f"{intake}/access-log", params={"case_id": case_id}, headers=bearer(stack, "auditor"))
        actions = [row["action"] for row in log.json()]
        for action in ("consent.read", "consent.grant", "consent.withdraw", "consent.override"):
            assert action in actions, actions
    finally:
        for agency in (WITHDRAWN, KEPT):
            await client.delete(f"{simulator}/behaviour/{agency}")


async def test_the_ledger_of_an_unknown_or_erased_case_is_404_or_410(stack: Stack, client: httpx.AsyncClient) -> None:
    intake = stack.url("intake")
    assert (await client.get(f"{intake}/cases/{uuid4()}/consents")).status_code == 404
    reason = f"Reason {uuid4().hex[:8]} naming the victim's situation"
    override = {"legal_basis": "imminent_danger", "recorded_by": "supervisor-7", "reason": reason}
    consents = [{"agency_id": "police", "granted": False, "override": override}]
    submitted = await client.post(f"{intake}/cases", json=sample_case_json(consents=consents))
    assert submitted.status_code == 201, submitted.text
    case_id = submitted.json()["case_id"]
    [_, overridden] = (await client.get(f"{intake}/cases/{case_id}/consents")).json()["history"]
    # Who decided it is the supervisor who submitted the case (the token), never the body's "supervisor-7".
    assert (overridden["action"], overridden["decided_by"], overridden["reason"]) == (
        "override",
        client.auth.staff_credential,  # type: ignore[union-attr]
        reason,
    )
    assert (await client.delete(f"{intake}/cases/{case_id}")).status_code == 200
    gone = await client.get(f"{intake}/cases/{case_id}/consents")
    assert gone.status_code == 410 and gone.headers["content-type"] == "application/problem+json"
    withdrawal = await client.post(f"{intake}/cases/{case_id}/consents/police/withdraw")
    assert withdrawal.status_code == 410
    # The ledger is append-only: the database itself refuses to change or remove a row. Erasure only blanked the
    # override's free-text reason; who allowed what on which legal basis stays on record.
    conn = await asyncpg.connect(stack.postgres.dsn(DATABASE))
    try:
        rows = await conn.fetch("SELECT * FROM intake.consent_ledger WHERE case_id = $1 ORDER BY id", UUID(case_id))
        assert [(r["action"], r["legal_basis"], r["reason"]) for r in rows] == [
            ("grant", None, None),
            ("override", "imminent_danger", None),
        ]
        for statement in ("UPDATE intake.consent_ledger SET granted = false", "DELETE FROM intake.consent_ledger"):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(statement + " WHERE case_id = $1", UUID(case_id))
    finally:
        await conn.close()


async def disclose(stack: Stack, case_id: str, referral_id: str, agency_id: str, items: list[str]) -> httpx.Response:
    """What the gateway would be given to deliver the agency's referral (it asks with its service credential)."""
    token = issue_token(stack.env["AUTH_SECRET"], Role.service, "agency-gateway")
    async with httpx.AsyncClient(timeout=15.0) as gateway:
        return await gateway.post(
            f"{stack.url('intake')}/cases/{case_id}/disclosures",
            json={"referral_id": referral_id, "agency_id": agency_id, "items": items},
            headers={"authorization": f"Bearer {token}"},
        )


async def routing_withdrawals(stack: Stack, case_id: str) -> set[tuple[str, str]]:
    """What routing keeps of the case's withdrawals (every later routing of it leaves those agencies out)."""

    async def kept() -> set[tuple[str, str]] | None:
        conn = await asyncpg.connect(stack.postgres.dsn(DATABASE))
        try:
            rows = await conn.fetch(
                "SELECT agency_id, scope FROM routing.consent_withdrawals WHERE case_id = $1", UUID(case_id)
            )
        finally:
            await conn.close()
        return {(r["agency_id"], r["scope"]) for r in rows} if len(rows) == 2 else None

    return await eventually(kept, 60, "routing to keep both withdrawals")
