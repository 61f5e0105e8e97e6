"""Notify on a real PostgreSQL when the victim withdraws a consent: the open referrals to that agency are cancelled
and the agency told, also one routing made before the withdrawal reached notify (or after its case was closed: then
all its referrals are cancelled); ended referrals stay as they are;
withdrawing only the sensitive items' consent cancels nothing."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest
from notify.context import Context
from notify.events import on_case_closed, on_consent_withdrawn, on_referral_event
from schemas.events import (
    CaseClosed,
    CaseRouted,
    ConsentWithdrawn,
    ReferralCompleted,
    ReferralDelivered,
    RoutedReferral,
    decode_event,
)
from schemas.vocab import CaseClosedReason, CompletionOutcome, Need, WithdrawalScope

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CTX = Context(staff_link_base="http://notify.test")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def routed(case_id: UUID, *referrals: tuple[UUID, str, str]) -> CaseRouted:
    return CaseRouted(
        case_id=case_id,
        producer="routing",
        occurred_at=NOW,
        referrals=[RoutedReferral(referral_id=r, agency_id=a, needs=[Need(n)]) for r, a, n in referrals],
        decisions=[],
    )


def withdrawn(case_id: UUID, agency_id: str, scope: WithdrawalScope = WithdrawalScope.all) -> ConsentWithdrawn:
    return ConsentWithdrawn(case_id=case_id, producer="intake", agency_id=agency_id, scope=scope, withdrawn_at=NOW)


async def states(pool: asyncpg.Pool, case_id: UUID) -> dict[str, tuple[str, str | None]]:
    rows = await pool.fetch("SELECT agency_id, state, reason FROM referrals WHERE case_id = $1", case_id)
    return {r["agency_id"]: (r["state"], r["reason"]) for r in rows}


async def cancellations(pool: asyncpg.Pool, case_id: UUID) -> list[tuple[str, str, str]]:
    """(topic, agency, reason) of each cancellation notify queued for the case."""
    rows = await pool.fetch(
        "SELECT topic, payload FROM outbox WHERE key = $1 AND event_type = 'referral.cancelled' ORDER BY id",
        str(case_id),
    )
    found = []
    for row in rows:
        event = decode_event(bytes(row["payload"]))
        found.append((row["topic"], getattr(event, "agency_id", ""), str(getattr(event, "reason", ""))))
    return found


async def test_the_open_referral_to_the_agency_is_cancelled_and_the_agency_told(pool: asyncpg.Pool) -> None:
    case_id, police, legal = uuid4(), uuid4(), uuid4()
    await on_referral_event(pool, CTX, routed(case_id, (police, "police", "safety"), (legal, "legal-aid", "legal")))
    delivered = ReferralDelivered(
        case_id=case_id, producer="gateway", referral_id=legal, agency_id="legal-aid", channel="webhook", attempts=1
    )
    await on_referral_event(pool, CTX, delivered)

    await on_consent_withdrawn(pool, CTX, withdrawn(case_id, "legal-aid", WithdrawalScope.sensitive))
    assert await cancellations(pool, case_id) == []
    event = withdrawn(case_id, "legal-aid")
    await on_consent_withdrawn(pool, CTX, event)
    await on_consent_withdrawn(pool, CTX, event)  # delivered twice by Kafka: applied once

    assert await states(pool, case_id) == {
        "police": ("requested", None),
        "legal-aid": ("cancelled", "consent_withdrawn"),
    }
    assert await cancellations(pool, case_id) == [
        ("referral.events", "legal-aid", "consent_withdrawn"),
        ("referrals.legal-aid", "legal-aid", "consent_withdrawn"),
    ]
    timeline = await pool.fetch(
        "SELECT agency_id, detail FROM timeline WHERE case_id = $1 AND event_type = 'consent.withdrawn' ORDER BY id",
        case_id,
    )
    assert [(r["agency_id"], r["detail"]["scope"]) for r in timeline] == [
        ("legal-aid", "sensitive"),
        ("legal-aid", "all"),
    ]


async def test_a_referral_routed_before_the_withdrawal_reached_notify_is_cancelled_when_it_arrives(
    pool: asyncpg.Pool,
) -> None:
    case_id, legal, police = uuid4(), uuid4(), uuid4()
    await on_consent_withdrawn(pool, CTX, withdrawn(case_id, "legal-aid"))
    assert await states(pool, case_id) == {}
    await on_referral_event(pool, CTX, routed(case_id, (legal, "legal-aid", "legal"), (police, "police", "safety")))
    assert await states(pool, case_id) == {
        "legal-aid": ("cancelled", "consent_withdrawn"),
        "police": ("requested", None),  # the consent to the police stands
    }
    assert [topic for topic, _, _ in await cancellations(pool, case_id)] == ["referral.events", "referrals.legal-aid"]


async def test_a_referral_routed_after_its_case_was_closed_is_cancelled_when_it_arrives(pool: asyncpg.Pool) -> None:
    case_id, legal, police = uuid4(), uuid4(), uuid4()
    closing = CaseClosed(
        case_id=case_id,
        producer="intake",
        reason=CaseClosedReason.back_to_daily_life,
        closed_by="caseworker:cw-1",
        closed_at=NOW,
        retention_until=NOW + timedelta(days=365),
    )
    await on_case_closed(pool, CTX, closing)
    await on_referral_event(pool, CTX, routed(case_id, (legal, "legal-aid", "legal"), (police, "police", "safety")))
    assert await states(pool, case_id) == {
        "legal-aid": ("cancelled", "case_closed"),
        "police": ("cancelled", "case_closed"),
    }
    assert sorted(await cancellations(pool, case_id)) == [
        ("referral.events", "legal-aid", "case_closed"),
        ("referral.events", "police", "case_closed"),
        ("referrals.legal-aid", "legal-aid", "case_closed"),
        ("referrals.police", "police", "case_closed"),
    ]


async def test_an_ended_referral_stays_as_it_ended(pool: asyncpg.Pool) -> None:
    case_id, legal = uuid4(), uuid4()
    await on_referral_event(pool, CTX, routed(case_id, (legal, "legal-aid", "legal")))
    completed = ReferralCompleted(
        case_id=case_id,
        producer="notify",
        referral_id=legal,
        agency_id="legal-aid",
        outcome=CompletionOutcome.successful,
    )
    await on_referral_event(pool, CTX, completed)
    await on_consent_withdrawn(pool, CTX, withdrawn(case_id, "legal-aid"))
    assert await states(pool, case_id) == {"legal-aid": ("completed", None)}
    assert await cancellations(pool, case_id) == []
