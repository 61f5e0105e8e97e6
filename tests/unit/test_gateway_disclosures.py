"""The gateway asks intake once for the referrals of one case asked for together (one per agency's lane), and each
lane gets its own agency's answer: its items, its own refusal, or the system's outage."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from agency_gateway import personal
from agency_gateway.personal import IntakeDisclosures, NotFetched
from kit.outages import DependencyUnavailable
from schemas.events import ReferralCase, ReferralRequested
from schemas.vocab import CrimeType, Need, Urgency

from tests.fake_intake import Answer, FakeIntake, serving_intake

CASE = uuid4()


def referral(agency_id: str, items: list[str], case_id: UUID = CASE) -> ReferralRequested:
    return ReferralRequested(
        case_id=case_id,
        producer="routing",
        referral_id=uuid4(),
        agency_id=agency_id,
        case=ReferralCase(crime_type=CrimeType.stalking, needs=[Need.safety], urgency=Urgency.urgent),
        personal_items=items,
    )


@pytest.fixture
async def intake() -> AsyncIterator[FakeIntake]:
    async with serving_intake() as fake:
        yield fake


def disclosures_of(intake: FakeIntake, answer: Answer) -> IntakeDisclosures:
    return intake.disclosures(answer, window_seconds=0.05)


def per_agency(body: dict[str, Any]) -> tuple[int, Any]:
    """Intake's answer: the police are refused (consent withdrawn), the others get their name."""
    if "referrals" not in body:  # asked alone
        [alone] = per_agency({"referrals": [body]})[1]["disclosures"]
        return alone["status"], alone
    answers = [
        {"referral_id": r["referral_id"], "agency_id": r["agency_id"], "status": 409, "detail": "consent withdrawn"}
        if r["agency_id"] == "police"
        else {
            "referral_id": r["referral_id"],
            "agency_id": r["agency_id"],
            "status": 200,
            "items": {"victim.name": r["agency_id"]},
        }
        for r in body["referrals"]
    ]
    return 200, {"version": 1, "disclosures": answers}


async def test_a_cases_referrals_asked_together_are_fetched_in_one_call_each_getting_its_own(
    intake: FakeIntake,
) -> None:
    disclosures = disclosures_of(intake, per_agency)
    wanted = [
        referral("legal-aid", ["victim.name"]),
        referral("police", ["victim.name"]),
        referral("smile-center", ["victim.name"]),
    ]

    legal, police, smile = await asyncio.gather(*(disclosures.with_items(r) for r in wanted))

    [request] = intake.seen
    assert request.path == f"/cases/{CASE}/disclosures/batch"
    asked = request.body
    assert asked["version"] == 1
    assert {(r["referral_id"], r["agency_id"]) for r in asked["referrals"]} == {
        (str(r.referral_id), r.agency_id) for r in wanted
    }
    assert isinstance(legal, ReferralRequested) and legal.case.victim_name == "legal-aid"
    assert isinstance(smile, ReferralRequested) and smile.case.victim_name == "smile-center"
    # The police's refusal is theirs alone: final for them, nothing for the others.
    assert isinstance(police, NotFetched) and police.intake_status == 409 and not police.transient


async def test_referrals_of_other_cases_or_asked_later_are_fetched_apart(intake: FakeIntake) -> None:
    disclosures = disclosures_of(intake, lambda body: (200, {"items": {"victim.name": body["agency_id"]}}))

    first, other = await asyncio.gather(
        disclosures.with_items(referral("legal-aid", ["victim.name"])),
        disclosures.with_items(referral("police", ["victim.name"], case_id=uuid4())),
    )
    later = await disclosures.with_items(referral("police", ["victim.name"]))

    assert [r.path.rsplit("/", 1)[-1] for r in intake.seen] == ["disclosures"] * 3, "each alone: the single endpoint"
    assert all(isinstance(r, ReferralRequested) for r in (first, other, later))


@pytest.mark.parametrize("status", [503, 401])
async def test_intake_failing_the_batch_is_every_waiting_lanes_outage(status: int, intake: FakeIntake) -> None:
    disclosures = disclosures_of(intake, lambda body: (status, {"detail": "down"}))
    wanted = [referral("legal-aid", ["victim.name"]), referral("police", ["victim.name"])]

    outcomes = await asyncio.gather(*(disclosures.with_items(r) for r in wanted), return_exceptions=True)

    assert all(isinstance(o, DependencyUnavailable) for o in outcomes), outcomes


async def test_an_erased_case_is_final_for_every_referral_of_the_batch(intake: FakeIntake) -> None:
    disclosures = disclosures_of(intake, lambda body: (410, {"detail": "erased"}))
    wanted = [referral("legal-aid", ["victim.name"]), referral("police", ["victim.name"])]

    outcomes = await asyncio.gather(*(disclosures.with_items(r) for r in wanted))

    assert all(isinstance(o, NotFetched) and o.intake_status == 410 and not o.transient for o in outcomes)


async def test_an_answer_missing_a_referral_is_intakes_fault_never_the_agencys(intake: FakeIntake) -> None:
    def forgetful(body: dict[str, Any]) -> tuple[int, Any]:
        first = body["referrals"][0]
        answer = {"referral_id": first["referral_id"], "agency_id": first["agency_id"], "status": 200, "items": {}}
        return 200, {"version": 1, "disclosures": [answer]}

    disclosures = disclosures_of(intake, forgetful)
    wanted = [referral("legal-aid", ["victim.name"]), referral("police", ["victim.name"])]

    outcomes = await asyncio.gather(*(disclosures.with_items(r) for r in wanted), return_exceptions=True)

    assert all(isinstance(o, DependencyUnavailable) for o in outcomes), outcomes


async def test_a_lane_stopped_while_waiting_leaves_the_others_their_answer(intake: FakeIntake) -> None:
    disclosures = disclosures_of(intake, per_agency)
    stopped = asyncio.create_task(disclosures.with_items(referral("legal-aid", ["victim.name"])))
    going_on = asyncio.create_task(disclosures.with_items(referral("smile-center", ["victim.name"])))
    await asyncio.sleep(0)
    stopped.cancel()

    filled = await going_on

    assert isinstance(filled, ReferralRequested) and filled.case.victim_name == "smile-center"
    assert len(intake.seen) == 1


async def test_referrals_seen_in_a_fetch_are_fetched_with_the_first_ask_and_kept_for_their_lanes(
    intake: FakeIntake,
) -> None:
    """Lanes drift apart: the police's lane asks seconds after the legal aid's; its items came with the first call."""
    disclosures = disclosures_of(intake, per_agency)
    case_id = uuid4()
    first, later, refused = (
        referral("legal-aid", ["victim.name"], case_id),
        referral("smile-center", ["victim.name"], case_id),
        referral("police", ["victim.name"], case_id),
    )
    for expected in (first, later, refused):
        disclosures.expect(case_id, expected.referral_id, expected.agency_id, expected.personal_items)

    filled = await disclosures.with_items(first)
    [request] = intake.seen
    assert {r["agency_id"] for r in request.body["referrals"]} == {"legal-aid", "smile-center", "police"}
    assert isinstance(filled, ReferralRequested) and filled.case.victim_name == "legal-aid"

    kept = await disclosures.with_items(later)
    no_consent = await disclosures.with_items(refused)
    assert len(intake.seen) == 1, "kept for them: no call of their own"
    assert isinstance(kept, ReferralRequested) and kept.case.victim_name == "smile-center"
    assert isinstance(no_consent, NotFetched) and no_consent.intake_status == 409
    again = await disclosures.with_items(later)
    assert isinstance(again, ReferralRequested) and len(intake.seen) == 2, "a kept answer is used once"


async def test_kept_items_are_forgotten_after_their_time(intake: FakeIntake) -> None:
    disclosures = disclosures_of(intake, per_agency)
    case_id = uuid4()
    first, late = referral("legal-aid", ["victim.name"], case_id), referral("smile-center", ["victim.name"], case_id)
    disclosures.expect(case_id, late.referral_id, late.agency_id, late.personal_items)
    await disclosures.with_items(first)
    assert len(intake.seen) == 1

    disclosures._clock = lambda: time.monotonic() + personal.PREFETCH_TTL_SECONDS + 2
    assert isinstance(await disclosures.with_items(late), ReferralRequested)
    assert len(intake.seen) == 2, "its kept items were forgotten: fetched again, alone"


async def test_nothing_is_kept_from_a_failed_fetch(intake: FakeIntake) -> None:
    answers: Iterator[tuple[int, Any]] = iter([(503, {"detail": "down"})])

    def first_down(body: dict[str, Any]) -> tuple[int, Any]:
        return next(answers, None) or (200, {"items": {"victim.name": body["agency_id"]}})

    disclosures = disclosures_of(intake, first_down)
    case_id = uuid4()
    first, later = referral("legal-aid", ["victim.name"], case_id), referral("police", ["victim.name"], case_id)
    disclosures.expect(case_id, later.referral_id, later.agency_id, later.personal_items)
    with pytest.raises(DependencyUnavailable):
        await disclosures.with_items(first)
    filled = await disclosures.with_items(later)
    assert isinstance(filled, ReferralRequested) and filled.case.victim_name == "police" and len(intake.seen) == 2
