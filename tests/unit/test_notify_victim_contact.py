"""notify asks intake for a victim's address at each send, with its own short-lived service token, and keeps none:
an erased or unknown case withholds the notice for good; intake down retries; nothing intake sent is echoed."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
import pytest
from kit.auth import Role, verify_token
from notify import dispatch
from notify.channels import Message
from notify.contacts import CaseGone, IntakeContacts, IntakeUnavailable
from notify.erasure import ERASED_TEXT, detail_without_free_text, without_free_text
from notify.notices import (
    News,
    Recipient,
    ReferralNews,
    VictimAddress,
    VictimReach,
    victim_notice,
    victim_reach,
    withheld_for_erasure,
    withheld_now,
)
from schemas.events import CaseRouted, ContactRules, ReferralAccepted, ReferralDelivered, RoutingDecision, utc_now

SECRET = "unit-test-signing-secret-of-32-bytes!"
CASE = uuid4()


def intake(answer: Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request]) -> IntakeContacts:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return IntakeContacts("http://intake.test", SECRET, transport=httpx.MockTransport(handler))


async def test_the_address_comes_from_intake_with_notifys_own_short_lived_service_token() -> None:
    seen: list[httpx.Request] = []
    body = {"do_not_contact": False, "channel": "email", "address": "victim@example.org"}
    contact = await intake(lambda _: httpx.Response(200, json=body), seen).victim_address(CASE)

    assert contact == VictimAddress(False, "email", "victim@example.org")
    [request] = seen
    assert (request.method, request.url.path) == ("GET", f"/cases/{CASE}/contact")
    scheme, token = request.headers["authorization"].split(" ")
    caller = verify_token(SECRET, token)
    assert scheme == "Bearer" and (caller.role, caller.subject) == (Role.service, "notify")


@pytest.mark.parametrize(("status", "reason"), [(410, "case_erased"), (404, "case_unknown")])
async def test_an_erased_or_unknown_case_withholds_the_notice_for_good(status: int, reason: str) -> None:
    with pytest.raises(CaseGone) as gone:
        await intake(lambda _: httpx.Response(status, json={"detail": "gone"}), []).victim_address(CASE)
    assert gone.value.reason == reason


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


@pytest.mark.parametrize(
    "answer",
    [
        lambda _: httpx.Response(503),
        lambda _: httpx.Response(401),
        _unreachable,
        lambda _: httpx.Response(
            200, json={"do_not_contact": False, "channel": "fax", "address": "victim@example.org"}
        ),
        lambda _: httpx.Response(200, content=b"victim@example.org"),
    ],
    ids=["503", "401", "unreachable", "unknown-channel", "not-json"],
)
async def test_intake_failing_is_retried_later_and_nothing_it_sent_is_repeated(
    answer: Callable[[httpx.Request], httpx.Response],
) -> None:
    with pytest.raises(IntakeUnavailable) as unavailable:
        await intake(answer, []).victim_address(CASE)
    assert "victim@" not in str(unavailable.value) and "fax" not in str(unavailable.value)


def test_rules_that_changed_since_the_notice_was_queued_still_withhold_it() -> None:
    assert withheld_now(VictimAddress(True, "email", "victim@example.org")) == "do_not_contact"
    assert withheld_now(VictimAddress(False, None, None)) == "no_safe_channel"
    assert withheld_now(VictimAddress(False, "sms", None)) == "no_safe_channel"
    assert withheld_now(VictimAddress(False, "sms", "+82 10-0000-0000")) is None


def news() -> ReferralNews:
    return ReferralNews(News.accepted, CASE, uuid4(), "police", "Police")


def test_notify_keeps_the_contact_rules_and_a_victim_notice_is_queued_without_an_address() -> None:
    reach = victim_reach(ContactRules(safe_channel="email"))
    assert reach == VictimReach(False, "email", None)
    notice = victim_notice(news(), reach, utc_now())
    assert notice is not None and notice.recipient is Recipient.victim
    assert (notice.channel, notice.address, notice.withheld) == ("email", None, None) and notice.body


def test_after_erasure_a_notice_is_withheld_without_text() -> None:
    notice = victim_notice(news(), victim_reach(ContactRules(safe_channel="sms")), utc_now())
    assert notice is not None
    erased = withheld_for_erasure(notice)
    assert (erased.withheld, erased.address, erased.subject, erased.body) == ("case_erased", None, "", "")


def test_free_text_is_dropped_from_an_erased_cases_events_and_timeline_ids_and_codes_stay() -> None:
    referral = uuid4()
    ack = ReferralAccepted(case_id=CASE, producer="police", referral_id=referral, agency_id="police", note="Kim, 3F")
    assert without_free_text(ack).note is None and without_free_text(ack).referral_id == referral
    delivered = ReferralDelivered(
        case_id=CASE, producer="agency-gateway", referral_id=referral, agency_id="police", channel="webhook", attempts=1
    )
    assert without_free_text(delivered) == delivered
    override = {"legal_basis": "imminent_danger", "recorded_by": "sv-1", "reason": "Kim is at 12 Example-ro"}
    decision = RoutingDecision.model_validate(
        {"agency_id": "police", "chosen": True, "needs": ["safety"], "reason": "hub", "override": override}
    )
    routed = CaseRouted(case_id=CASE, producer="routing", referrals=[], decisions=[decision])
    kept = without_free_text(routed).decisions[0]
    assert kept.override is not None and kept.override.reason == ERASED_TEXT
    assert (kept.override.legal_basis, kept.override.recorded_by, kept.reason) == ("imminent_danger", "sv-1", "hub")

    detail = {
        "note": "Kim, 3F",
        "state_change": "applied",
        "decisions": [{"agency_id": "police", "override": override}],
    }
    cleaned = detail_without_free_text(detail)
    assert "Kim" not in str(cleaned) and cleaned["state_change"] == "applied"
    assert cleaned["decisions"][0]["override"]["recorded_by"] == "sv-1"


async def test_safe_hours_are_checked_again_at_the_moment_of_sending() -> None:
    """A notice queued inside the victim's safe hours that comes due outside them (retries, a backlog) waits for
    them to open again: not sent, no attempt counted."""
    now = datetime.now(UTC)
    closed = {
        "start": (now + timedelta(hours=2)).strftime("%H:%M"),
        "end": (now + timedelta(hours=3)).strftime("%H:%M"),
    }
    body = {"do_not_contact": False, "channel": "email", "address": "victim@example.org", "safe_hours": closed}
    body["safe_hours"]["timezone"] = "UTC"
    contacts = intake(lambda _: httpx.Response(200, json=body), [])
    sent: list[Message] = []
    executed: list[tuple[str, tuple[object, ...]]] = []

    class Channel:
        async def send(self, message: Message) -> None:
            sent.append(message)

    class Conn:
        async def execute(self, sql: str, *args: object) -> None:
            executed.append((sql, args))

    notice = {"id": 7, "case_id": CASE, "recipient": Recipient.victim, "channel": "email", "address": None}
    notice |= {"subject": "s", "body": "b", "attempts": 1}
    await dispatch._send(Conn(), {"email": Channel()}, contacts, notice, 6, 5.0)  # type: ignore[arg-type]

    assert sent == []
    [(sql, (notice_id, until))] = executed
    assert "next_attempt_at" in sql and "attempts" not in sql and notice_id == 7
    assert isinstance(until, datetime) and timedelta(hours=1) < until - now <= timedelta(hours=2)
