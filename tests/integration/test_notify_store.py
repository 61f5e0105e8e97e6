"""Notify on a real PostgreSQL: facts in any order, refused commands, acknowledgement topics, timers, notices."""

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from devstack.ports import free_ports
from kit.db import create_pool
from kit.errors import Conflict, NotFound
from notify.channels import EmailChannel, LogOnlySms, Message, SmsChannel
from notify.commands import act
from notify.contacts import IntakeContacts
from notify.context import Context
from notify.dispatch import send_due_notices
from notify.erasure import on_case_erased
from notify.events import on_agency_ack, on_case_closed, on_case_submitted, on_referral_event
from notify.timers import fire_due_timers
from schemas.events import (
    CaseClosed,
    CaseDetails,
    CaseErased,
    CaseRouted,
    CaseSubmitted,
    Envelope,
    EventRejected,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralStarted,
    RoutedReferral,
)
from schemas.vocab import CaseClosedReason, CompletionOutcome, DeclineReason, Need

from tests.samples import sample_case_json

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CTX = Context(staff_link_base="http://notify.test")


def submitted(case_id: UUID, at: datetime, **overrides: Any) -> CaseSubmitted:
    case = CaseDetails.model_validate(
        sample_case_json(urgency="urgent", caseworker={"id": "cw-1", "email": "cw@centre.example"}, **overrides)
    )
    return CaseSubmitted(case_id=case_id, producer="intake", occurred_at=at, case=case.facts())


def routed(case_id: UUID, at: datetime, *referrals: tuple[UUID, str, str]) -> CaseRouted:
    return CaseRouted(
        case_id=case_id,
        producer="routing",
        occurred_at=at,
        referrals=[RoutedReferral(referral_id=r, agency_id=a, needs=[Need(n)]) for r, a, n in referrals],
        decisions=[],
    )


async def referral(pool: asyncpg.Pool, referral_id: UUID) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM referrals WHERE referral_id = $1", referral_id)
    assert row is not None
    return row


async def outbox(pool: asyncpg.Pool, case_id: UUID) -> list[tuple[str, str]]:
    rows = await pool.fetch("SELECT topic, event_type FROM outbox WHERE key = $1 ORDER BY id", str(case_id))
    return [(r["topic"], r["event_type"]) for r in rows]


async def test_the_same_facts_in_every_order_leave_the_same_referral(pool: asyncpg.Pool) -> None:
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def history(case_id: UUID, referral_id: UUID) -> list[Envelope]:
        common = {"case_id": case_id, "referral_id": referral_id, "agency_id": "legal-aid"}
        return [
            routed(case_id, t0, (referral_id, "legal-aid", "legal")),
            ReferralDelivered(
                **common, producer="gateway", channel="webhook", attempts=1, occurred_at=t0 + timedelta(1)
            ),
            ReferralAccepted(**common, producer="notify", occurred_at=t0 + timedelta(2)),
            ReferralStarted(**common, producer="notify", occurred_at=t0 + timedelta(3)),
            ReferralCompleted(
                **common,
                producer="notify",
                outcome=CompletionOutcome.not_successful,
                reason="victim_refused_services",
                occurred_at=t0 + timedelta(4),
            ),
        ]

    seen = set()
    for order in itertools.permutations(range(5)):
        case_id, referral_id = uuid4(), uuid4()
        events = history(case_id, referral_id)
        for index in order:
            await on_referral_event(pool, CTX, events[index])
        row = await referral(pool, referral_id)
        event_index = [e.event_id for e in events].index(row["state_event_id"])
        seen.add(
            (row["state"], row["reason"], row["outcome"], row["state_changed_at"], event_index, tuple(row["needs"]))
        )
        assert row["requested_at"] == t0
        # The completion's follow-up, proposing to re-route the need, whenever its routing came.
        tasks = await pool.fetch("SELECT needs, proposal FROM follow_ups WHERE referral_id = $1", referral_id)
        assert [(list(t["needs"]), t["proposal"]) for t in tasks] == [(["legal"], "reroute")]
    assert seen == {("completed", "victim_refused_services", "not_successful", t0 + timedelta(4), 4, ("legal",))}


async def test_a_completion_opens_one_follow_up_however_often_it_comes(pool: asyncpg.Pool) -> None:
    case_id, referral_id = uuid4(), uuid4()
    now = datetime.now(UTC)
    common = {"case_id": case_id, "referral_id": referral_id, "agency_id": "police"}
    await on_case_submitted(pool, CTX, submitted(case_id, now))  # the sample victim names no safe channel
    await on_referral_event(pool, CTX, routed(case_id, now, (referral_id, "police", "safety")))
    await on_referral_event(pool, CTX, ReferralAccepted(**common, producer="notify"))
    completed = ReferralCompleted(**common, producer="notify", outcome=CompletionOutcome.successful)
    for _ in range(2):  # a redelivery
        await on_referral_event(pool, CTX, completed)
    await on_referral_event(pool, CTX, completed.model_copy(update={"event_id": uuid4()}))  # replayed, a new id
    tasks = await pool.fetch("SELECT * FROM follow_ups WHERE case_id = $1", case_id)
    assert [(t["kind"], t["no_contact"], t["proposal"], t["caseworker_id"], t["state"]) for t in tasks] == [
        ("review_without_contact", "no_safe_channel", None, "cw-1", "open")
    ]
    assert [t for _, t in await outbox(pool, case_id)].count("follow_up.opened") == 1

    # Closing the case ends its open task, by whoever closed the case.
    closing = CaseClosed(
        case_id=case_id,
        producer="intake",
        reason=CaseClosedReason.back_to_daily_life,
        closed_by="caseworker:cw-1",
        closed_at=now,
        retention_until=now + timedelta(days=365),
    )
    await on_case_closed(pool, CTX, closing)
    task = await pool.fetchrow("SELECT state, closing, closed_by FROM follow_ups WHERE case_id = $1", case_id)
    assert dict(task) == {"state": "done", "closing": "case_closed", "closed_by": "caseworker:cw-1"}
    assert [t for _, t in await outbox(pool, case_id)].count("follow_up.closed") == 1


async def test_a_refused_command_changes_nothing_and_an_allowed_one_is_published(pool: asyncpg.Pool) -> None:
    case_id, referral_id = uuid4(), uuid4()
    now = datetime.now(UTC)
    await on_case_submitted(pool, CTX, submitted(case_id, now))
    await on_referral_event(pool, CTX, routed(case_id, now, (referral_id, "police", "safety")))
    before = (dict(await referral(pool, referral_id)), await outbox(pool, case_id))

    def start(row: asyncpg.Record) -> ReferralStarted:
        return ReferralStarted(case_id=row["case_id"], producer="notify", referral_id=referral_id, agency_id="police")

    with pytest.raises(Conflict):  # 409 at the HTTP edge
        await act(pool, CTX, referral_id, "police", start)
    with pytest.raises(NotFound) as not_theirs:  # 404
        await act(pool, CTX, referral_id, "legal-aid", start)
    assert not_theirs.value.reason == "wrong_agency"
    with pytest.raises(NotFound) as unknown:
        await act(pool, CTX, uuid4(), "police", start)
    assert str(unknown.value).split(" ")[:2] == str(not_theirs.value).split(" ")[:2], "worded as an unknown one"
    assert (dict(await referral(pool, referral_id)), await outbox(pool, case_id)) == before

    def decline(row: asyncpg.Record) -> ReferralDeclined:
        return ReferralDeclined(
            case_id=row["case_id"],
            producer="notify",
            referral_id=referral_id,
            agency_id="police",
            reason=DeclineReason.out_of_area,
        )

    assert await act(pool, CTX, referral_id, "police", decline) == ("applied", "declined")
    assert await act(pool, CTX, referral_id, "police", decline) == ("duplicate", "declined")
    assert (await outbox(pool, case_id))[-2:] == [
        ("referral.rerouting", "referral.rerouting"),
        ("referral.events", "referral.declined"),
    ]
    notices = await pool.fetch("SELECT recipient, status, address FROM notifications WHERE case_id = $1", case_id)
    assert [(n["recipient"], n["status"], n["address"]) for n in notices] == [
        ("caseworker", "pending", "cw@centre.example")
    ]


async def test_acknowledgement_topics_keep_the_apis_rules(pool: asyncpg.Pool) -> None:
    case_id, referral_id = uuid4(), uuid4()
    now = datetime.now(UTC)
    accepted = ReferralAccepted(case_id=case_id, producer="legal-aid", referral_id=referral_id, agency_id="legal-aid")

    with pytest.raises(EventRejected) as impostor:
        await on_agency_ack(pool, CTX, "police", accepted)
    assert impostor.value.reason == "wrong_agency"

    # Before its routing is known the answer is kept, then applied when the referral appears.
    await on_agency_ack(pool, CTX, "legal-aid", accepted)
    await on_case_submitted(pool, CTX, submitted(case_id, now))
    await on_referral_event(pool, CTX, routed(case_id, now, (referral_id, "legal-aid", "legal")))
    assert (await referral(pool, referral_id))["state"] == "accepted"
    assert ("referral.events", "referral.accepted") in await outbox(pool, case_id)
    assert await pool.fetchval("SELECT count(*) FROM pending_acks WHERE referral_id = $1", referral_id) == 0

    late_decline = ReferralDeclined(
        case_id=case_id, producer="legal-aid", referral_id=referral_id, agency_id="legal-aid", reason="other"
    )
    with pytest.raises(Conflict) as refused:  # dead-lettered by the consumer under its reason
        await on_agency_ack(pool, CTX, "legal-aid", late_decline)
    assert refused.value.reason == "transition_refused"
    assert (await referral(pool, referral_id))["state"] == "accepted"
    # Refused, so not recorded as processed: a replay is refused again rather than silently dropped.
    assert await pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", late_decline.event_id) == 0


async def test_due_timers_fire_once_across_replicas_and_escalate(postgres: str, pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    hour = Context(hour_seconds=60.0)  # an urgent case's 2 hours last 2 minutes
    overdue_cases = [(uuid4(), uuid4()) for _ in range(12)]
    for case_id, referral_id in overdue_cases:  # requested 3 minutes ago: reminder and deadline both past
        await on_case_submitted(pool, hour, submitted(case_id, now - timedelta(minutes=3)))
        await on_referral_event(
            pool, hour, routed(case_id, now - timedelta(minutes=3), (referral_id, "legal-aid", "legal"))
        )
    reminded_case, reminded_referral = uuid4(), uuid4()  # 100 s ago: reminder due (90 s), deadline not (120 s)
    await on_case_submitted(pool, hour, submitted(reminded_case, now - timedelta(seconds=100)))
    await on_referral_event(
        pool, hour, routed(reminded_case, now - timedelta(seconds=100), (reminded_referral, "legal-aid", "legal"))
    )

    answered_case, answered = uuid4(), uuid4()  # both past, but the agency answered in time: nothing fires
    await on_case_submitted(pool, hour, submitted(answered_case, now - timedelta(minutes=3)))
    await on_referral_event(
        pool, hour, routed(answered_case, now - timedelta(minutes=3), (answered, "legal-aid", "legal"))
    )
    await act(
        pool,
        hour,
        answered,
        "legal-aid",
        lambda row: ReferralAccepted(
            case_id=row["case_id"], producer="notify", referral_id=answered, agency_id="legal-aid"
        ),
    )

    replicas = [await create_pool(postgres, "notify", max_size=2) for _ in range(3)]
    try:

        async def replica(p: asyncpg.Pool) -> None:
            while await fire_due_timers(p, hour, batch=3):
                pass

        await asyncio.gather(*(replica(p) for p in replicas))
    finally:
        for p in replicas:
            await p.close()

    for case_id, referral_id in overdue_cases:
        assert await outbox(pool, case_id) == [
            ("referral.events", "referral.overdue"),
            ("referral.rerouting", "referral.rerouting"),
        ], "one breach, one re-routing; the reminder came too late to send"
        row = await referral(pool, referral_id)
        assert row["overdue_at"] is not None and row["reminded_at"] is None and row["state"] == "requested"
        outcomes = await pool.fetch(
            "SELECT kind, outcome FROM timers WHERE referral_id = $1 ORDER BY kind", referral_id
        )
        assert [(t["kind"], t["outcome"]) for t in outcomes] == [
            ("deadline", "fired"),
            ("reminder", "skipped: past the deadline"),
        ]
        breach = await pool.fetch("SELECT news, recipient FROM notifications WHERE case_id = $1", case_id)
        assert [(n["news"], n["recipient"]) for n in breach] == [("deadline_breached", "caseworker")]
    # The reminder is an event of the case, and it goes to the agency through its own topic (its gateway delivers it).
    assert await outbox(pool, reminded_case) == [
        ("referral.events", "referral.reminded"),
        ("referrals.legal-aid", "referral.reminded"),
    ]
    assert await outbox(pool, answered_case) == [("referral.events", "referral.accepted")]
    skipped = await pool.fetch("SELECT outcome FROM timers WHERE referral_id = $1", answered)
    assert [t["outcome"] for t in skipped] == ["skipped: answered", "skipped: answered"]
    assert (await referral(pool, reminded_referral))["overdue_at"] is None


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
        return "250 OK"


def fake_intake(addresses: dict[UUID, str], erased: set[UUID], asked: list[UUID]) -> IntakeContacts:
    """Intake's contact endpoint: the address of each case in `addresses`, 410 for those in `erased`."""

    def answer(request: httpx.Request) -> httpx.Response:
        case_id = UUID(request.url.path.split("/")[2])
        asked.append(case_id)
        if case_id in erased:
            return httpx.Response(410, json={"title": "Erased"})
        if case_id not in addresses:
            return httpx.Response(404)
        return httpx.Response(200, json={"do_not_contact": False, "channel": "email", "address": addresses[case_id]})

    return IntakeContacts("http://intake.test", None, transport=httpx.MockTransport(answer))


async def accept(pool: asyncpg.Pool, referral_id: UUID, note: str | None = None) -> None:
    await act(
        pool,
        CTX,
        referral_id,
        "police",
        lambda row: ReferralAccepted(
            case_id=row["case_id"], producer="notify", referral_id=row["referral_id"], agency_id="police", note=note
        ),
    )


async def test_notices_go_out_by_smtp_with_retries_and_never_to_a_do_not_contact_victim(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    safe_case, hidden_case, erased_case = uuid4(), uuid4(), uuid4()
    safe, hidden, erased = uuid4(), uuid4(), uuid4()
    victim = {"name": "Kim Example", "email": "safe-victim@example.org", "phone": "+82 10-0000-0000"}
    email_only = {"contact_rules": {"safe_channel": "email"}}
    await on_case_submitted(pool, CTX, submitted(safe_case, now, victim={**victim, **email_only}))
    await on_case_submitted(pool, CTX, submitted(erased_case, now, victim={**victim, **email_only}))
    hidden_victim = {**victim, "email": "hidden-victim@example.org"}
    rules = {"do_not_contact": True, "safe_channel": "email"}
    await on_case_submitted(pool, CTX, submitted(hidden_case, now, victim={**hidden_victim, "contact_rules": rules}))
    for case_id, referral_id in ((safe_case, safe), (hidden_case, hidden), (erased_case, erased)):
        await on_referral_event(pool, CTX, routed(case_id, now, (referral_id, "police", "safety")))
        await accept(pool, referral_id)

    # notify holds no address of a victim: intake gives it at the send (the erased case's: 410).
    asked: list[UUID] = []
    intake = fake_intake({safe_case: "safe-victim@example.org"}, {erased_case}, asked)
    [closed_port] = free_ports(1)
    down = {"email": EmailChannel("127.0.0.1", closed_port, "notify@test.invalid", timeout_seconds=2)}
    await send_due_notices(pool, down, intake, max_attempts=3, retry_base_seconds=0.01)
    failed = await pool.fetchrow("SELECT status, attempts, last_error FROM notifications WHERE case_id = $1", safe_case)
    assert (failed["status"], failed["attempts"]) == ("pending", 1) and failed["last_error"]

    inbox = Inbox()
    [port] = free_ports(1)
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        await asyncio.sleep(0.05)
        up = {"email": EmailChannel("127.0.0.1", port, "notify@test.invalid"), "sms": SmsChannel(LogOnlySms())}
        while await send_due_notices(pool, up, intake, max_attempts=3, retry_base_seconds=0.01):
            pass
    finally:
        smtp.stop()

    # Other tests' caseworker notices are sent too; of the victims, only the one with a safe channel hears.
    to_victims = [text for to, text in inbox.messages if any("victim@" in address for address in to)]
    assert [to for to, _ in inbox.messages if any("victim@" in address for address in to)] == [
        ["safe-victim@example.org"]
    ]
    assert "Kim" not in to_victims[0] and "police" not in to_victims[0].lower()
    rows = await pool.fetch(
        "SELECT case_id, status, withheld, address FROM notifications WHERE case_id = ANY($1::uuid[])",
        [safe_case, hidden_case, erased_case],
    )
    by_case = {r["case_id"]: (r["status"], r["withheld"], r["address"]) for r in rows}
    assert by_case == {
        safe_case: ("sent", None, None),
        hidden_case: ("withheld", "do_not_contact", None),
        erased_case: ("withheld", "case_erased", None),  # at once, not retried
    }
    assert hidden_case not in asked and asked.count(erased_case) == 1
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE address LIKE '%victim@%'") == 0
    columns = await pool.fetch("SELECT column_name FROM information_schema.columns WHERE table_name = 'cases'")
    assert "victim_address" not in {c["column_name"] for c in columns}


async def test_an_erased_case_keeps_no_free_text_nor_contact_and_later_events_bring_none_back(
    pool: asyncpg.Pool,
) -> None:
    now = datetime.now(UTC)
    case_id, referral_id, parked_referral = uuid4(), uuid4(), uuid4()
    secret = f"Kim lives at {uuid4().hex[:8]}"
    rules = {"safe_channel": "email", "safe_hours": {"start": "18:00", "end": "21:00"}}
    victim = {"name": "Kim Example", "email": "victim@example.org", "contact_rules": rules}
    await on_case_submitted(pool, CTX, submitted(case_id, now, victim=victim))
    await on_referral_event(pool, CTX, routed(case_id, now, (referral_id, "police", "safety")))
    await accept(pool, referral_id, note=secret)
    early = ReferralAccepted(
        case_id=case_id, producer="legal-aid", referral_id=parked_referral, agency_id="legal-aid", note=secret
    )
    await on_agency_ack(pool, CTX, "legal-aid", early)  # parked: its routing is not known yet

    async def holds_secret() -> list[str]:
        places = {
            "timeline": "SELECT detail::text FROM timeline WHERE case_id = $1",
            "outbox": "SELECT convert_from(payload, 'UTF8') FROM outbox WHERE key = $1::uuid::text",
            "pending_acks": "SELECT convert_from(payload, 'UTF8') FROM pending_acks WHERE case_id = $1",
            "notifications": "SELECT concat(address, subject, body) FROM notifications WHERE case_id = $1",
        }
        return [place for place, sql in places.items() if any(secret in r[0] for r in await pool.fetch(sql, case_id))]

    # The note is kept where notify owns it; the event it publishes says only that there is one.
    assert await holds_secret() == ["timeline", "pending_acks"]

    erasure = CaseErased(case_id=case_id, producer="intake", erased_at=now)
    await on_case_erased(pool, erasure)
    await on_case_erased(pool, erasure)  # a redelivery changes nothing
    assert await holds_secret() == []
    case = await pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    assert (case["victim_do_not_contact"], case["victim_channel"], case["victim_safe_hours"]) == (True, None, None)
    assert (await referral(pool, referral_id))["state"] == "accepted"  # the facts stay
    victim_notice = await pool.fetchrow(
        "SELECT status, withheld, subject, body FROM notifications WHERE case_id = $1 AND recipient = 'victim'", case_id
    )
    assert tuple(victim_notice) == ("withheld", "case_erased", "", "")

    # Later events of the erased case keep no free text, and queue no message for anyone.
    await on_referral_event(pool, CTX, routed(case_id, now, (parked_referral, "legal-aid", "legal")))
    assert (await referral(pool, parked_referral))["state"] == "accepted"
    late = ReferralCompleted(
        case_id=case_id,
        producer="police",
        referral_id=referral_id,
        agency_id="police",
        outcome="successful",
        note=secret,
    )
    await on_agency_ack(pool, CTX, "police", late)
    assert (await referral(pool, referral_id))["state"] == "completed"
    assert await holds_secret() == []
    statuses = await pool.fetch("SELECT status, withheld FROM notifications WHERE case_id = $1", case_id)
    assert {tuple(s) for s in statuses} == {("withheld", "case_erased")}


class ProcessDied(BaseException):
    """Not an Exception: no handler of the code under test catches it, as none survives a kill."""


async def test_a_crash_in_the_middle_of_a_batch_sends_again_only_the_notice_in_flight(pool: asyncpg.Pool) -> None:
    case_id = uuid4()
    for n in range(3):
        await pool.execute(
            "INSERT INTO notifications (dedupe_key, case_id, news, recipient, channel, address, subject, body, status,"
            " not_before, next_attempt_at) VALUES ($1, $2, 'accepted', 'caseworker', 'email', $3, 's', 'b', 'pending',"
            " now() - interval '1 day', now() - interval '1 day' + make_interval(secs => $4::float8))",
            f"crash-{case_id}-{n}",
            case_id,
            f"cw-{n}@centre.example",
            float(n),
        )
    sent: list[str] = []

    class Crashing:
        """Sends one notice, then the process dies while sending the second."""

        async def send(self, message: Message) -> None:
            sent.append(message.to)
            if len(sent) == 2:
                raise ProcessDied  # nothing after this runs, as when the process is killed mid-send

    class Working:
        async def send(self, message: Message) -> None:
            sent.append(message.to)

    intake = fake_intake({}, set(), [])
    with pytest.raises(ProcessDied):
        await send_due_notices(pool, {"email": Crashing()}, intake, lease_seconds=0.5)  # type: ignore[dict-item]
    # Another replica (or the restarted one) finds the rest once the dead sender's lease has run out.
    await asyncio.sleep(0.6)
    while await send_due_notices(pool, {"email": Working()}, intake):  # type: ignore[dict-item]
        pass

    mine = [address for address in sent if address.startswith("cw-")]
    assert mine == ["cw-0@centre.example", "cw-1@centre.example", "cw-1@centre.example", "cw-2@centre.example"]
    statuses = await pool.fetch("SELECT status FROM notifications WHERE case_id = $1", case_id)
    assert [r["status"] for r in statuses] == ["sent"] * 3


async def test_a_declined_need_routed_later_by_a_retry_no_longer_asks_for_the_staff(pool: asyncpg.Pool) -> None:
    """Legal aid declines; its re-routing finds nobody (the need is held pending); a retry later gives the need to
    another agency, in a routing that names no referral it replaces. The declined referral is replaced by it: the
    case no longer shows 'declined, no new agency' — nor does an unrelated need's referral change."""
    from notify.domain import attention
    from notify.storage import summary_of

    case_id, declined, other, later = uuid4(), uuid4(), uuid4(), uuid4()
    now = datetime.now(UTC)
    await on_case_submitted(pool, CTX, submitted(case_id, now))
    await on_referral_event(
        pool, CTX, routed(case_id, now, (declined, "legal-aid", "legal"), (other, "police", "safety"))
    )
    common = {"case_id": case_id, "referral_id": declined, "agency_id": "legal-aid", "producer": "notify"}
    await on_referral_event(pool, CTX, ReferralDeclined(**common, reason=DeclineReason.no_capacity))
    nobody = routed(case_id, now + timedelta(seconds=1)).model_copy(
        update={"rerouted_from": declined, "uncovered_needs": [Need.legal]}
    )
    await on_referral_event(pool, CTX, nobody)
    assert attention(summary_of(await referral(pool, declined))) is not None, "still the staff's, before the retry"

    await on_referral_event(
        pool, CTX, routed(case_id, now + timedelta(minutes=5), (later, "legal-home-doctor", "legal"))
    )
    row = await referral(pool, declined)
    assert row["replaced_by"] == [later] and attention(summary_of(row)) is None
    assert (await referral(pool, other))["replaced_by"] == []


async def test_an_answer_joins_its_referrals_latest_trace_else_its_cases_latest(pool: asyncpg.Pool) -> None:
    """The trace an agency's answer continues: its referral's newest traced timeline entry; without one, its case's
    newest case-wide entry (an answer may come before notify heard of the delivery); an untraced or unknown referral
    starts a trace of its own. Other cases' and other referrals' entries never count."""
    from notify.storage import trace_of_referral

    case_id, other_case = uuid4(), uuid4()
    traced, untraced, answered_early = uuid4(), uuid4(), uuid4()
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    for referral_id, case in ((traced, case_id), (untraced, case_id), (answered_early, other_case)):
        await pool.execute(
            "INSERT INTO referrals (referral_id, case_id, agency_id, state, state_changed_at)"
            " VALUES ($1, $2, 'legal-aid', 'requested', $3)",
            referral_id,
            case,
            t0,
        )

    async def entry(case: UUID, referral_id: UUID | None, trace: str | None, span: str = "00f067aa0ba902b7") -> None:
        await pool.execute(
            "INSERT INTO timeline (case_id, event_id, event_type, occurred_at, producer, referral_id, trace_id,"
            " span_id) VALUES ($1, $2, 'x', $3, 'test', $4, $5, $6)",
            case,
            uuid4(),
            t0,
            referral_id,
            trace,
            None if trace is None else span,
        )

    case_trace, late_case_trace = "a" * 32, "b" * 32
    await entry(case_id, None, case_trace)
    await entry(case_id, traced, "c" * 32, "1111111111111111")
    await entry(case_id, traced, "d" * 32, "2222222222222222")  # the referral's newest
    await entry(case_id, traced, None)  # untraced entries are passed over
    await entry(case_id, untraced, None)
    await entry(case_id, None, late_case_trace)  # the case's newest case-wide entry
    await entry(other_case, None, "e" * 32)
    await entry(other_case, None, None)

    assert await trace_of_referral(pool, traced) == {"traceparent": f"00-{'d' * 32}-2222222222222222-00"}
    assert await trace_of_referral(pool, untraced) == {"traceparent": f"00-{late_case_trace}-00f067aa0ba902b7-00"}
    assert await trace_of_referral(pool, answered_early) == {"traceparent": f"00-{'e' * 32}-00f067aa0ba902b7-00"}
    assert await trace_of_referral(pool, uuid4()) == {}
