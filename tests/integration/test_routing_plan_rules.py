"""Routing on a real PostgreSQL: a staged case's plan advances by its stage's rule (catalogue/plan.toml) as the
referrals' states come on referral.events — once, whatever is redelivered or replayed, and not while a caseworker's
change of the plan holds the case; a declined referral counts through its replacement; a closed case never moves."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
import routing
from kit.unit_of_work import transaction
from routing.handlers import (
    advance_by_rule,
    change_plan,
    on_case_closed,
    on_case_submitted,
    on_referral_event,
    on_rerouting_requested,
)
from routing.plan import advanced
from routing.rules import Rules, load_rules
from schemas.catalogue import Catalogue, load_catalogue
from schemas.events import (
    CaseClosed,
    CaseSubmitted,
    Envelope,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralStarted,
    ReroutingRequested,
    decode_event,
)
from schemas.vocab import CaseClosedReason, CompletionOutcome, DeclineReason, Need, ReroutingCause

from tests.samples import sample_case

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
SERVICE = routing  # the module's PostgreSQL holds routing's schema (conftest.py)


def routing_data() -> tuple[Catalogue, Rules]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AGENCY_SIMULATOR_URL", "http://127.0.0.1:1")  # the agencies' webhooks: nothing is sent here
        catalogue = load_catalogue(Path("catalogue/agencies"))
        return catalogue, load_rules(Path("catalogue/rules.toml"), catalogue)


CATALOGUE, RULES = routing_data()
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # a Monday, 10:00 in Seoul


def clock() -> datetime:
    return NOW


async def submit(pool: asyncpg.Pool, needs: list[str], agencies: list[str]) -> UUID:
    consents = [{"agency_id": a, "granted": True} for a in agencies]
    case = sample_case(needs=needs, consents=consents, staged=True, urgency="high").facts()
    submitted = CaseSubmitted(case_id=uuid4(), producer="intake", occurred_at=NOW, case=case)
    await on_case_submitted(pool, CATALOGUE, RULES, clock, submitted)
    return submitted.case_id


async def hear(pool: asyncpg.Pool, event: Envelope) -> None:
    """referral.events as routing's batch consumer applies it (one transaction; the batch's is the same)."""
    async with transaction(pool) as conn:
        await on_referral_event(conn, CATALOGUE, RULES, clock, event)


async def referrals(pool: asyncpg.Pool, case_id: UUID) -> dict[str, UUID]:
    rows = await pool.fetch("SELECT agency_id, referral_id FROM referrals WHERE case_id = $1", case_id)
    return {r["agency_id"]: r["referral_id"] for r in rows}


async def plan(pool: asyncpg.Pool, case_id: UUID) -> dict[str, str]:
    stages = await pool.fetchval("SELECT stages FROM case_plans WHERE case_id = $1", case_id)
    return {s["stage"]: s["state"] for s in stages}


async def announced(pool: asyncpg.Pool, case_id: UUID, event_type: str) -> list[Any]:
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE key = $1 AND event_type = $2 ORDER BY id", str(case_id), event_type
    )
    return [decode_event(bytes(r["payload"])) for r in rows]


async def changed_by(pool: asyncpg.Pool, case_id: UUID) -> list[str]:
    return [e.changed_by for e in await announced(pool, case_id, "case.plan")]


def answer(kind: Callable[..., Envelope], case_id: UUID, referral_id: UUID, agency_id: str, **more: Any) -> Envelope:
    return kind(case_id=case_id, producer="notify", referral_id=referral_id, agency_id=agency_id, **more)


async def test_crisis_ends_once_its_referral_is_accepted_whatever_comes_again(pool: asyncpg.Pool) -> None:
    case_id = await submit(pool, ["safety", "legal"], ["police", "legal-aid"])
    police = (await referrals(pool, case_id))["police"]
    delivered = ReferralDelivered(
        case_id=case_id, producer="gateway", referral_id=police, agency_id="police", channel="webhook", attempts=1
    )
    await hear(pool, delivered)
    assert (await plan(pool, case_id))["crisis"] == "active", "delivered is not taken up"

    accepted = answer(ReferralAccepted, case_id, police, "police")
    await hear(pool, accepted)
    assert await plan(pool, case_id) == {
        "crisis": "done",
        "investigation_legal": "active",
        "recovery": "waiting",  # no needs in them (yet: a caseworker may add some)
        "daily_life": "waiting",
    }
    assert set(await referrals(pool, case_id)) == {"police", "legal-aid"}, "the next stage's need is routed"
    assert await changed_by(pool, case_id) == ["routing", "rule:all_accepted"]

    # Redelivered, replayed under a new id, a late delivery, the police starting work, legal aid accepting (its stage
    # has no rule): the plan moves no further and nothing is routed twice.
    await hear(pool, accepted)
    await hear(pool, answer(ReferralAccepted, case_id, police, "police"))
    await hear(pool, delivered.model_copy(update={"event_id": uuid4()}))
    await hear(pool, answer(ReferralStarted, case_id, police, "police"))
    legal = (await referrals(pool, case_id))["legal-aid"]
    await hear(pool, answer(ReferralAccepted, case_id, legal, "legal-aid"))
    assert (await plan(pool, case_id))["investigation_legal"] == "active"
    assert await changed_by(pool, case_id) == ["routing", "rule:all_accepted"]
    requested = await announced(pool, case_id, "referral.requested")
    assert sorted(e.agency_id for e in requested) == ["legal-aid", "police"]
    state = await pool.fetchval("SELECT state FROM referrals WHERE referral_id = $1", police)
    assert state == "in_progress", "the state of highest rank is kept"


async def test_a_rule_waits_for_a_caseworkers_change_of_the_plan_and_then_judges_the_plan_it_left(
    pool: asyncpg.Pool,
) -> None:
    case_id = await submit(pool, ["safety", "legal"], ["police", "legal-aid"])
    police = (await referrals(pool, case_id))["police"]
    async with transaction(pool) as conn:  # the state recorded, the rule not judged yet
        await conn.execute("UPDATE referrals SET state = 'accepted' WHERE referral_id = $1", police)

    staff_done = asyncio.Event()
    release = asyncio.Event()

    async def caseworker() -> None:
        async with transaction(pool) as conn:
            await change_plan(conn, CATALOGUE, RULES, NOW, case_id, "caseworker:kim", lambda s: advanced(s, NOW))
            staff_done.set()
            await release.wait()  # the case's row stays locked until this commits

    async def rule() -> Any:
        async with transaction(pool) as conn:
            return await advance_by_rule(conn, CATALOGUE, RULES, NOW + timedelta(seconds=1), case_id)

    staff = asyncio.create_task(caseworker())
    await staff_done.wait()
    judged = asyncio.create_task(rule())

    async def waiting_for_the_lock() -> bool:
        return bool(
            await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'"
            )
        )

    for _ in range(200):  # polled, with a deadline: the rule's transaction is blocked on the case's row
        if await waiting_for_the_lock():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the rule did not wait for the caseworker's change of the plan")
    release.set()
    await staff
    assert await judged is None, "the stage it would have ended was ended by the caseworker meanwhile"
    assert await changed_by(pool, case_id) == ["routing", "caseworker:kim"]
    assert len(await announced(pool, case_id, "referral.requested")) == 2  # police, then legal aid once


async def test_a_declined_referral_counts_through_its_replacement(pool: asyncpg.Pool) -> None:
    # Counselling and employment: recovery is the first stage with needs; its rule asks for completed referrals.
    case_id = await submit(
        pool, ["counselling", "employment"], ["smile-center", "victim-support-center", "employment-center"]
    )
    assert (await plan(pool, case_id))["recovery"] == "active"
    [(first_agency, first)] = (await referrals(pool, case_id)).items()
    await hear(pool, answer(ReferralDeclined, case_id, first, first_agency, reason=DeclineReason.no_capacity))
    rerouting = ReroutingRequested(
        case_id=case_id,
        producer="notify",
        referral_id=first,
        agency_id=first_agency,
        needs=[Need.counselling],
        cause=ReroutingCause.declined,
    )
    await on_rerouting_requested(pool, CATALOGUE, RULES, clock, rerouting)
    replacement_agency, replacement = next((a, r) for a, r in (await referrals(pool, case_id)).items() if r != first)
    assert replacement_agency != first_agency

    await hear(pool, answer(ReferralAccepted, case_id, replacement, replacement_agency))
    assert (await plan(pool, case_id))["recovery"] == "active", "accepted is not completed"
    done = answer(ReferralCompleted, case_id, replacement, replacement_agency, outcome=CompletionOutcome.successful)
    await hear(pool, done)
    assert (await plan(pool, case_id))["recovery"] == "done" and (await plan(pool, case_id))["daily_life"] == "active"
    assert "employment-center" in await referrals(pool, case_id), "daily life's need is routed"
    assert await changed_by(pool, case_id) == ["routing", "rule:all_completed"]


async def test_a_closed_case_never_advances(pool: asyncpg.Pool) -> None:
    case_id = await submit(pool, ["safety", "legal"], ["police", "legal-aid"])
    closing = CaseClosed(
        case_id=case_id,
        producer="intake",
        reason=CaseClosedReason.victim_withdrew,
        closed_by="caseworker:kim",
        closed_at=NOW,
        retention_until=NOW + timedelta(days=3650),
    )
    await on_case_closed(pool, closing)
    police = (await referrals(pool, case_id))["police"]
    await hear(pool, answer(ReferralAccepted, case_id, police, "police"))
    assert (await plan(pool, case_id))["crisis"] == "active"
    assert await changed_by(pool, case_id) == ["routing"]
    assert set(await referrals(pool, case_id)) == {"police"}
