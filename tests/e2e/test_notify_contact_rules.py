"""End to end on the real stack: a victim marked do-not-contact receives nothing, while the caseworker is told of a
decline and a victim whose rules allow e-mail hears, through it, that there is news."""

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from devstack.stack import Stack

from tests.e2e.conftest import Mailbox
from tests.e2e.helpers import StackAuth, eventually, timeline
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c


def case_for(victim_email: str, caseworker: str, **rules: Any) -> dict[str, Any]:
    return sample_case_json(
        needs=["safety", "legal"],
        consents=[
            {"agency_id": "police", "granted": True, "sensitive_granted": True},
            {"agency_id": "legal-aid", "granted": True},
        ],
        caseworker={"id": "caseworker-5", "email": caseworker},
        victim={"name": "Kim Example", "phone": "+82 10-0000-0000", "email": victim_email, "contact_rules": rules},
    )


async def test_a_victim_marked_do_not_contact_receives_nothing(
    stack: Stack, client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    intake, notify, simulator = stack.url("intake"), stack.url("notify"), stack.url("agency-simulator")
    tag = uuid4().hex[:8]
    hidden, reachable = f"hidden-{tag}@example.org", f"reachable-{tag}@example.org"
    caseworker = f"cw-{tag}@centre.example"
    declining = await client.put(
        f"{simulator}/behaviour/legal-aid", json={"action": "decline", "reason": "no_capacity"}
    )
    assert declining.status_code == 200, declining.text
    try:
        hidden_case = case_for(hidden, caseworker, do_not_contact=True, safe_channel="email")
        answer = await client.post(f"{intake}/cases", json=hidden_case)
        assert answer.status_code == 201, answer.text
        case_id = answer.json()["case_id"]

        # The police accept, legal aid declines: the caseworker is told of the decline.
        decline_mail = await eventually(
            lambda: _mails(mailbox, caseworker, "declined"), 90, "the caseworker's e-mail about the decline"
        )
        assert "no_capacity" in decline_mail[0].get_content()

        async def withheld() -> list[dict[str, Any]] | None:
            notices = (await client.get(f"{notify}/cases/{case_id}/notifications")).json()
            return [n for n in notices if n["recipient"] == "victim"] or None

        [victim_notice] = await eventually(withheld, 30, "the victim's notice recorded as withheld")
        assert (victim_notice["status"], victim_notice["withheld"], victim_notice["news"]) == (
            "withheld",
            "do_not_contact",
            "accepted",
        )

        # A control: a victim whose rules allow e-mail does get the same news, so the path to victims works.
        reachable_case = case_for(reachable, caseworker, safe_channel="email")
        assert (await client.post(f"{intake}/cases", json=reachable_case)).status_code == 201
        await eventually(lambda: _mails(mailbox, reachable, ""), 90, "the reachable victim's e-mail")

        assert mailbox.to(hidden) == [], "nothing may reach a victim marked do-not-contact"
        events = await timeline(client, notify, case_id)
        assert {e["type"] for e in events} >= {"referral.accepted", "referral.declined", "referral.rerouting"}

        # Legal aid declined and no other legal agency has consent: the case needs the staff.
        async def needs_attention() -> dict[str, Any] | None:
            status = (await client.get(f"{notify}/cases/{case_id}/status")).json()
            return status if status["status"] == "needs_attention" else None

        status = await eventually(needs_attention, 30, "the case needing attention")
        assert [(a["agency_id"], a["reason"]) for a in status["attention"]] == [
            ("legal-aid", "declined_without_new_agency")
        ]
    finally:
        await client.delete(f"{simulator}/behaviour/legal-aid")


async def _mails(mailbox: Mailbox, to: str, subject_has: str) -> list[Any] | None:
    return [m for m in mailbox.to(to) if subject_has in m["Subject"]] or None
