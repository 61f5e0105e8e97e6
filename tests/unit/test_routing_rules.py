"""Routing, pure: needs go to the first consenting agency by priority, one referral per agency, nothing silent."""

from pathlib import Path

import pytest
from routing.domain import referral_id, referral_view, route_case
from schemas.catalogue import Catalogue, load_catalogue
from schemas.events import Consent

from tests.samples import sample_case

CATALOGUE_DIR = Path(__file__).resolve().parents[2] / "catalogue" / "agencies"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AGENCY_SIMULATOR_URL", "http://127.0.0.1:1")
        return load_catalogue(CATALOGUE_DIR)


def consents(*agencies: str, sensitive: bool = False) -> list[dict[str, object]]:
    return [{"agency_id": a, "granted": True, "sensitive_granted": sensitive} for a in agencies]


def test_three_needs_become_three_referrals_to_consenting_agencies(catalogue: Catalogue) -> None:
    plan = route_case(sample_case(), catalogue)
    assert [(r.agency.id, r.needs) for r in plan.referrals] == [
        ("police", ["safety"]),
        ("legal-aid", ["legal"]),
        ("employment-center", ["employment"]),
    ]
    assert plan.uncovered_needs == []
    assert all(d.chosen and d.reason for d in plan.decisions)


def test_an_agency_covering_two_needs_gets_one_referral(catalogue: Catalogue) -> None:
    plan = route_case(sample_case(needs=["safety", "investigation"], consents=consents("police")), catalogue)
    assert [(r.agency.id, r.needs) for r in plan.referrals] == [("police", ["safety", "investigation"])]


def test_without_consent_the_next_candidate_is_taken_and_the_skip_explained(catalogue: Catalogue) -> None:
    case = sample_case(needs=["legal"], consents=consents("legal-home-doctor", "victim-public-lawyer"))
    plan = route_case(case, catalogue)
    assert len(plan.referrals) == 1 and plan.referrals[0].agency.id != "legal-aid"
    skipped = {d.agency_id: d.reason for d in plan.decisions if not d.chosen}
    assert "legal-aid" in skipped and "consent" in skipped["legal-aid"]


def test_a_need_nobody_consented_for_is_reported_uncovered(catalogue: Catalogue) -> None:
    plan = route_case(sample_case(needs=["digital_takedown", "safety"], consents=consents("police")), catalogue)
    assert [r.agency.id for r in plan.referrals] == ["police"]
    assert plan.uncovered_needs == ["digital_takedown"]


def test_the_preview_assumes_consent_so_staff_know_whom_to_ask(catalogue: Catalogue) -> None:
    plan = route_case(sample_case(consents=[]), catalogue, assume_consent=True)
    assert [r.agency.id for r in plan.referrals] == ["police", "legal-aid", "employment-center"]
    assert route_case(sample_case(consents=[]), catalogue).referrals == []


def test_the_same_case_always_gives_the_same_decision_and_ids(catalogue: Catalogue) -> None:
    case = sample_case()
    assert route_case(case, catalogue) == route_case(case, catalogue)
    from uuid import uuid4

    case_id = uuid4()
    assert referral_id(case_id, "police") == referral_id(case_id, "police") != referral_id(case_id, "legal-aid")


def test_an_agency_sees_only_its_allowed_fields(catalogue: Catalogue) -> None:
    case = sample_case()
    police, microfinance = catalogue["police"], catalogue["microfinance"]
    with_sensitive = referral_view(
        case, police, Consent(agency_id="police", granted=True, sensitive_granted=True), ["safety"]
    )
    assert with_sensitive.summary == case.summary and with_sensitive.victim_phone == case.victim.phone
    without_sensitive = referral_view(case, police, Consent(agency_id="police", granted=True), ["safety"])
    assert without_sensitive.summary is None, "sensitive items need the separate consent"
    minimal = referral_view(case, microfinance, Consent(agency_id="microfinance", granted=True), ["financial"])
    shared = {k for k, v in minimal.model_dump().items() if v is not None}
    assert shared == {"crime_type", "needs", "urgency"} | {f.replace(".", "_") for f in microfinance.allowed_fields}
    assert minimal.victim_email is None and minimal.summary is None
