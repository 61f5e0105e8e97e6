"""One disclosure call for a case's referrals on the real stack: a case routed to three agencies has its personal
items fetched from intake once for all three (one call, one transaction: the access-log rows share their instant and
follow one another), each agency receives exactly its own items (no agency another's sensitive summary), and intake's
access log holds one row per agency and item."""

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from devstack.stack import Stack

from tests.e2e.helpers import StackAuth, eventually
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SENSITIVE, PLAIN, NO_SENSITIVE = "legal-aid", "employment-center", "police"


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c


async def test_a_case_routed_to_three_agencies_costs_one_disclosure_call(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    body = sample_case_json(
        needs=["legal", "employment", "safety"],
        urgency="normal",
        consents=[
            {"agency_id": SENSITIVE, "granted": True, "sensitive_granted": True},
            {"agency_id": PLAIN, "granted": True},
            {"agency_id": NO_SENSITIVE, "granted": True, "sensitive_granted": False},
        ],
        summary=f"Summary {uuid4().hex[:8]} of what happened.",
    )
    submitted = await client.post(f"{stack.url('intake')}/cases", json=body)
    assert submitted.status_code == 201, submitted.text
    case_id = submitted.json()["case_id"]
    agencies = (SENSITIVE, PLAIN, NO_SENSITIVE)

    async def received() -> dict[str, dict[str, Any]] | None:
        found = {}
        for agency in agencies:
            answer = await client.get(f"{stack.url('agency-simulator')}/agencies/{agency}/referrals")
            mine = [r for r in answer.json()["referrals"] if r["case_id"] == case_id]
            if not mine:
                return None
            [found[agency]] = mine
        return found

    delivered = await eventually(received, 120, "the case's three referrals at their agencies")
    # Each agency has exactly its own items: the summary (sensitive) only where its own consent was given.
    personal = {"victim_name", "victim_phone", "victim_email", "summary"}
    assert personal & set(delivered[SENSITIVE]["fields"]) == {"victim_name", "victim_phone", "summary"}
    assert personal & set(delivered[PLAIN]["fields"]) == {"victim_name", "victim_phone"}
    assert personal & set(delivered[NO_SENSITIVE]["fields"]) == {"victim_name", "victim_phone"}
    assert all(r["deliveries"] == 1 and r["duplicates"] == 0 for r in delivered.values())

    auditor = {"authorization": f"Bearer {stack.token('auditor')}"}
    log = await client.get(f"{stack.url('intake')}/access-log", params={"case_id": case_id}, headers=auditor)
    assert log.status_code == 200, log.text
    disclosed = [row for row in log.json() if row["action"].startswith("case.disclose:")]
    # One row per agency and item given, each naming its referral.
    assert sorted(row["action"] for row in disclosed) == sorted(
        [f"case.disclose:{SENSITIVE}:{item}" for item in ("victim.name", "victim.phone", "summary")]
        + [
            f"case.disclose:{agency}:{item}"
            for agency in (PLAIN, NO_SENSITIVE)
            for item in ("victim.name", "victim.phone")
        ]
    )
    referral_of = {agency: record["referral_id"] for agency, record in delivered.items()}
    assert all(row["referral_id"] == referral_of[row["action"].split(":")[1]] for row in disclosed)
    assert all(row["actor"].endswith("agency-gateway") for row in disclosed), disclosed
    # Written in one transaction, so by one call: one instant, and no other row of the log between them.
    assert len({row["at"] for row in disclosed}) == 1, [row["at"] for row in disclosed]
    seqs = sorted(row["seq"] for row in disclosed)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    verified = await client.get(f"{stack.url('intake')}/access-log/verify", headers=auditor)
    assert verified.status_code == 200 and verified.json()["intact"], verified.text
