"""Who can see what, on the real stack: bearer tokens, an agency confined to its own referrals, the auditor to the
access log; every read of personal data in a tamper-evident access log; body and rate limits."""

import asyncio
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from devstack.stack import DATABASE, Stack
from kit.access_log import AccessLog
from kit.auth import Role, issue_token
from kit.db import create_pool
from schemas.events import utc_now

from tests.e2e.helpers import eventually
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def credential(stack: Stack, role: Role, agency: str | None = None, ttl: float = 600) -> dict[str, str]:
    """A token of its own for each use (its own rate-limit budget), signed with the stack's secret."""
    subject = f"agency-{agency}" if agency else f"{role.value}-{uuid4().hex[:8]}"
    return bearer(issue_token(stack.env["AUTH_SECRET"], role, subject, agency=agency, ttl_seconds=ttl))


async def police_referral(client: httpx.AsyncClient, stack: Stack, staff: dict[str, str]) -> tuple[str, str]:
    """A case for the police and legal aid, routed; its id and the police referral's id."""
    case = sample_case_json(
        needs=["safety", "legal"],
        consents=[
            {"agency_id": "police", "granted": True, "sensitive_granted": True},
            {"agency_id": "legal-aid", "granted": True},
        ],
    )
    submitted = await client.post(f"{stack.url('intake')}/cases", json=case, headers=staff)
    assert submitted.status_code == 201, submitted.text
    case_id = submitted.json()["case_id"]

    async def referral() -> str | None:
        answer = await client.get(f"{stack.url('notify')}/cases/{case_id}/referrals", headers=staff)
        found = [r for r in answer.json() if r["agency_id"] == "police"] if answer.status_code == 200 else []
        return found[0]["referral_id"] if found else None

    return case_id, await eventually(referral, 90, "the police referral")


async def test_an_agency_reads_and_answers_only_its_own_referrals_and_the_auditor_sees_every_read(
    stack: Stack,
) -> None:
    intake, notify = stack.url("intake"), stack.url("notify")
    staff = credential(stack, Role.caseworker)
    police, legal_aid = credential(stack, Role.agency, "police"), credential(stack, Role.agency, "legal-aid")
    auditor = credential(stack, Role.auditor)
    async with httpx.AsyncClient(timeout=15.0) as client:
        case_id, referral_id = await police_referral(client, stack, staff)
        referral_url = f"{notify}/referrals/{referral_id}"

        # Agency B cannot read agency A's referral (as if it did not exist) nor answer it, even naming agency A.
        assert (await client.get(referral_url, headers=legal_aid)).status_code == 404
        unknown = f"{notify}/referrals/{uuid4()}"
        for verb, body in [("accept", {}), ("decline", {"reason": "no_capacity"}), ("start", {}), ("complete", {})]:
            body = {**body, "outcome": "successful"} if verb == "complete" else body
            for named in ({"agency_id": "legal-aid"}, {}):
                refused = await client.post(f"{referral_url}/{verb}", json=body | named, headers=legal_aid)
                never = await client.post(f"{unknown}/{verb}", json=body | named, headers=legal_aid)
                # Exactly as a referral that does not exist: nothing tells legal aid the victim went to the police.
                assert refused.status_code == never.status_code == 404, (verb, named, refused.text)
                assert refused.json() | {"detail": ""} == never.json() | {"detail": ""}
                assert refused.headers["content-type"] == "application/problem+json"
        # Naming another agency than the token's is refused whatever the referral.
        mismatch = await client.post(f"{referral_url}/accept", json={"agency_id": "police"}, headers=legal_aid)
        assert mismatch.status_code == 403
        # Agencies see no case, its timeline or the access log; the auditor sees nothing but the access log.
        for who in (legal_aid, police, auditor):
            assert (await client.get(f"{intake}/cases/{case_id}", headers=who)).status_code == 403
            assert (await client.get(f"{notify}/cases/{case_id}/timeline", headers=who)).status_code == 403
        for service in (intake, notify):
            assert (await client.get(f"{service}/access-log", headers=police)).status_code == 403
            assert (await client.get(f"{service}/access-log", headers=staff)).status_code == 403

        # Agency A reads its own referral; staff read the case and its timeline.
        own = await client.get(referral_url, headers=police)
        assert own.status_code == 200 and own.json()["agency_id"] == "police"
        assert (await client.get(f"{intake}/cases/{case_id}", headers=staff)).status_code == 200
        await eventually(
            lambda: _ok(client, f"{notify}/cases/{case_id}/timeline", staff), 60, "the case's timeline readable"
        )

        # Agency A answers its own referral, with the agency from its token (the body need not name it).
        async def accepted() -> bool:
            answer = await client.post(f"{referral_url}/accept", json={"note": "we take it"}, headers=police)
            return answer.status_code == 200

        await eventually(accepted, 60, "the police's acceptance")

        # The auditor finds each of those reads and the acceptance: who, when, from where, whose data, what.
        in_intake = (await client.get(f"{intake}/access-log", params={"case_id": case_id}, headers=auditor)).json()
        in_notify = (await client.get(f"{notify}/access-log", params={"case_id": case_id}, headers=auditor)).json()
        rows = in_intake + in_notify
        for row in rows:
            assert row["actor"] and row["at"] and row["client"] == "127.0.0.1" and row["action"]
            assert row["case_id"] == case_id
        actions = {(row["actor"].split(":")[0], row["action"], row["referral_id"]) for row in rows}
        assert ("caseworker", "case.create", None) in actions
        assert ("caseworker", "case.read", None) in actions
        assert ("caseworker", "case.timeline.read", None) in actions
        assert ("caseworker", "case.referrals.read", None) in actions
        assert ("agency", "referral.read", referral_id) in actions
        assert ("agency", "referral.accept", referral_id) in actions
        assert not any(row["actor"] == "agency:legal-aid" for row in rows)  # refused calls read nothing
        assert "Kim Example" not in str(rows)  # whose data, never the data
        by_actor = await client.get(f"{notify}/access-log", params={"actor": "agency:police"}, headers=auditor)
        assert {r["actor"] for r in by_actor.json()} == {"agency:police"}

    # Every refusal is in the service's log, without the token.
    notify_log = (stack.logs_dir / "notify.log").read_text()
    assert "access refused: 403" in notify_log and "access refused: 404 wrong_agency" in notify_log
    assert legal_aid["authorization"].removeprefix("Bearer ") not in notify_log


async def test_a_missing_bad_or_expired_token_is_401(stack: Stack) -> None:
    forged = bearer(issue_token("not-the-stack-secret-but-long-enough!!", Role.supervisor, "mallory"))
    expired = credential(stack, Role.supervisor, ttl=-120)
    async with httpx.AsyncClient(timeout=15.0) as client:
        for url in (f"{stack.url('intake')}/cases/{uuid4()}", f"{stack.url('notify')}/cases/{uuid4()}/timeline"):
            for headers in ({}, bearer("garbage"), forged, expired):
                answer = await client.get(url, headers=headers)
                assert answer.status_code == 401, (url, headers)
                assert answer.headers["www-authenticate"].startswith("Bearer")
                assert answer.headers["content-type"] == "application/problem+json"
        for service in ("intake", "routing", "notify"):  # probes stay open
            assert (await client.get(f"{stack.url(service)}/health")).status_code == 200
            assert (await client.get(f"{stack.url(service)}/metrics")).status_code == 200
        # The capacity of an agency: that agency or a supervisor, nobody else.
        capacity = f"{stack.url('routing')}/agencies/legal-aid/capacity"
        for role, agency, status in (
            (Role.caseworker, None, 403),
            (Role.agency, "police", 403),
            (Role.agency, "legal-aid", 200),
            (Role.supervisor, None, 200),
        ):
            answer = await client.put(capacity, json={"available": 5}, headers=credential(stack, role, agency))
            assert answer.status_code == status, (role, agency, answer.text)
        assert (await client.delete(capacity, headers=credential(stack, Role.supervisor))).status_code == 204


async def test_a_tampered_access_log_row_is_detected(stack: Stack) -> None:
    notify, auditor = stack.url("notify"), credential(stack, Role.auditor)
    async with httpx.AsyncClient(timeout=15.0) as client:
        staff = credential(stack, Role.caseworker)
        await client.get(f"{notify}/cases/needing-attention", headers=staff)
        _, referral_id = await police_referral(client, stack, staff)
        await client.get(f"{notify}/referrals/{referral_id}", headers=staff)
        before = (await client.get(f"{notify}/access-log/verify", headers=auditor)).json()
        assert before["intact"] is True and before["rows_checked"] > 0
        conn = await asyncpg.connect(stack.postgres.dsn(DATABASE))
        try:
            seq, client_address = await conn.fetchrow(
                "SELECT seq, client FROM notify.access_log WHERE referral_id = $1 ORDER BY seq LIMIT 1",
                referral_id if isinstance(referral_id, str) else str(referral_id),
            )
            # Someone hides where a read came from.
            await conn.execute("UPDATE notify.access_log SET client = '203.0.113.7' WHERE seq = $1", seq)
            after = (await client.get(f"{notify}/access-log/verify", headers=auditor)).json()
            assert after == {
                "intact": False,
                "rows_checked": after["rows_checked"],
                "first_broken_seq": seq,
                "reason": "broken",
                "checkpoint": after["checkpoint"],
            }
        finally:
            await conn.execute("UPDATE notify.access_log SET client = $2 WHERE seq = $1", seq, client_address)
            await conn.close()
        assert (await client.get(f"{notify}/access-log/verify", headers=auditor)).json()["intact"] is True


async def test_too_large_a_body_is_413_and_too_many_requests_429(stack: Stack) -> None:
    intake = stack.url("intake")
    async with httpx.AsyncClient(timeout=60.0) as client:
        huge = sample_case_json(summary="x" * 400_000)
        answer = await client.post(f"{intake}/cases", json=huge, headers=credential(stack, Role.caseworker))
        assert answer.status_code == 413 and answer.headers["content-type"] == "application/problem+json"
        too_long = sample_case_json(summary="x" * 20_000)  # under the body limit, over the field's
        answer = await client.post(f"{intake}/cases", json=too_long, headers=credential(stack, Role.caseworker))
        assert answer.status_code == 422 and "body.summary" in answer.json()["detail"]

        # 300 requests at once from one credential (100 allowed at once, then 10 a second): some are turned away.
        busy = credential(stack, Role.caseworker)
        answers = await asyncio.gather(
            *(client.get(f"{stack.url('routing')}/agencies/police/capacity", headers=busy) for _ in range(300))
        )
        limited = [a for a in answers if a.status_code == 429]
        assert limited and {a.status_code for a in answers} <= {200, 429}
        assert int(limited[0].headers["retry-after"]) >= 1
        assert limited[0].headers["content-type"] == "application/problem+json"
        # Another credential is not held back by that one.
        calm = credential(stack, Role.caseworker)
        assert (await client.get(f"{stack.url('routing')}/agencies/police/capacity", headers=calm)).status_code == 200


async def _ok(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> Any:
    return (await client.get(url, headers=headers)).status_code == 200


async def test_a_retention_purge_keeps_the_rest_of_the_chain_verifiable(stack: Stack) -> None:
    """Last in this file: it empties notify's access log up to now (the anchor keeps the chain checkable)."""
    notify, auditor, staff = stack.url("notify"), credential(stack, Role.auditor), credential(stack, Role.caseworker)
    async with httpx.AsyncClient(timeout=15.0) as client:
        pool = await create_pool(stack.postgres.dsn(DATABASE), "notify", 1)
        try:
            assert await pool.fetchval("SELECT count(*) FROM access_log") > 0
            removed = await AccessLog(retention_days=1).purge(pool, before=utc_now())
            assert removed > 0 and await pool.fetchval("SELECT count(*) FROM access_log") == 0
            await police_referral(client, stack, staff)  # new rows after the purge, chained to the anchor
            after = (await client.get(f"{notify}/access-log/verify", headers=auditor)).json()
            assert after["intact"] is True and after["rows_checked"] > 0
            # Whoever rewrites the anchor breaks the chain from the first row after it.
            anchor = await pool.fetchval("SELECT hash FROM access_log_anchor")
            await pool.execute("UPDATE access_log_anchor SET hash = repeat('0', 64)")
            try:
                broken = (await client.get(f"{notify}/access-log/verify", headers=auditor)).json()
                assert broken["intact"] is False
            finally:
                await pool.execute("UPDATE access_log_anchor SET hash = $1", anchor)
        finally:
            await pool.close()
