"""Routing's promises hold for any case and any catalogue (hypothesis): no referral without consent or a recorded
override, no agency twice, every need either covered or reported, and the same input always gives the same
decision — whatever the hubs, ranking, capacity, hours, exclusions and the moment."""

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from routing.domain import Plan, route_case, serves_region
from routing.rules import HubRule, RankKey, Rules
from schemas.calendar import is_open
from schemas.catalogue import Agency, Catalogue, OpeningHours, load_agency
from schemas.events import CaseDetails, Consent, ConsentOverride
from schemas.vocab import CrimeType, LegalBasis, Need, Urgency

# Every generated agency is a copy of a real catalogue entry (so its channel and notice stay valid) with the
# routing-relevant fields drawn at random.
_TEMPLATE_FILE = Path(__file__).resolve().parents[2] / "catalogue" / "agencies" / "police.toml"
AGENCY_IDS = [f"agency-{n}" for n in range(8)]
REGIONS = ["seoul", "busan", "incheon"]
LANGUAGES = ["ko", "en", "vi"]


@pytest.fixture(scope="module")
def template() -> Agency:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AGENCY_SIMULATOR_URL", "http://127.0.0.1:1")
        return load_agency(_TEMPLATE_FILE)


def sublist(items: list[Any], min_size: int = 0) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(items), min_size=min_size, max_size=len(items), unique=True)


hours = st.one_of(
    st.just(OpeningHours(always_open=True)),
    st.builds(
        OpeningHours,
        weekdays=sublist(list(range(7)), min_size=1),
        opens=st.sampled_from([time(7), time(9), time(10)]),
        closes=st.sampled_from([time(17), time(18), time(22)]),
    ),
)


@st.composite
def agency_fields(draw: st.DrawFn, agency_id: str) -> dict[str, Any]:
    specialties = draw(sublist(list(CrimeType)))
    return {
        "id": agency_id,
        "services": draw(sublist(list(Need), min_size=1)),
        "specialties": specialties,
        "only_specialties": bool(specialties) and draw(st.booleans()),
        "regions": draw(st.one_of(st.just(["*"]), sublist(REGIONS, min_size=1))),
        "languages": draw(sublist(LANGUAGES, min_size=1)),
        "hours": draw(hours),
        "capacity": draw(st.integers(0, 3)),
        "priority": draw(st.integers(0, 5)),  # many ties: the order must still be stable
    }


@st.composite
def catalogues(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(sublist(AGENCY_IDS, min_size=1))
    return [draw(agency_fields(agency_id)) for agency_id in sorted(ids)]


overrides = st.builds(
    ConsentOverride,
    legal_basis=st.sampled_from(list(LegalBasis)),
    recorded_by=st.just("staff-1"),
    reason=st.just("danger to the victim's life"),
)


@st.composite
def cases(draw: st.DrawFn) -> CaseDetails:
    consents = [
        Consent(
            agency_id=agency_id,
            granted=draw(st.booleans()),
            sensitive_granted=draw(st.booleans()),
            override=draw(st.none() | overrides),
        )
        for agency_id in draw(sublist(AGENCY_IDS))
    ]
    return CaseDetails(
        crime_type=draw(st.sampled_from(list(CrimeType))),
        needs=draw(sublist(list(Need), min_size=1)),
        urgency=draw(st.sampled_from(list(Urgency))),
        region=draw(st.sampled_from(REGIONS)),
        language=draw(st.sampled_from(LANGUAGES)),
        intake_channel="visit",
        victim={"name": "Test Person", "phone": "+82 10-0000-0000"},
        consents=consents,
        summary=draw(st.none() | st.just("synthetic summary")),
    )


@st.composite
def hub_rules(draw: st.DrawFn) -> HubRule:
    agencies = draw(sublist(AGENCY_IDS))
    always_open, specialists = draw(st.booleans()), draw(st.booleans())
    return HubRule(
        crime_types=draw(sublist(list(CrimeType), min_size=1)),
        urgencies=draw(sublist(list(Urgency), min_size=1)),
        agencies=agencies,
        always_open=always_open,
        specialists=specialists or not (agencies or always_open),  # a hub must select something
        note="a generated hub",
    )


@st.composite
def rule_sets(draw: st.DrawFn) -> Rules:
    keys: list[RankKey] = ["hub", "already_chosen", "specialty", "language", "priority"]
    order = draw(st.permutations(keys))
    return Rules(
        rank_by=order[: draw(st.integers(1, len(order)))],
        hours={"time_critical": {u: draw(sublist(list(Need))) for u in draw(sublist(list(Urgency)))}},
        hubs=draw(st.lists(hub_rules(), max_size=3)),
    )


@st.composite
def situations(draw: st.DrawFn) -> dict[str, Any]:
    """Everything route_case takes besides the case and the catalogue."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    return {
        "now": start + timedelta(minutes=draw(st.integers(0, 60 * 24 * 365))),
        "remaining": draw(st.dictionaries(st.sampled_from(AGENCY_IDS), st.integers(0, 2))),
        "excluded": dict.fromkeys(draw(sublist(AGENCY_IDS)), "declined this case"),
        "assume_consent": draw(st.booleans()),
    }


def build(template: Agency, fields: list[dict[str, Any]]) -> Catalogue:
    return Catalogue({f["id"]: template.model_copy(update=f) for f in fields})


def decide(case: CaseDetails, catalogue: Catalogue, rules: Rules, situation: dict[str, Any]) -> Plan:
    return route_case(
        case,
        catalogue,
        rules,
        situation["now"],
        remaining=situation["remaining"],
        excluded=situation["excluded"],
        assume_consent=situation["assume_consent"],
    )


PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(case=cases(), fields=catalogues(), rules=rule_sets(), situation=situations())
def test_no_referral_without_consent_or_a_recorded_override(
    template: Agency, case: CaseDetails, fields: list[dict[str, Any]], rules: Rules, situation: dict[str, Any]
) -> None:
    plan = decide(case, build(template, fields), rules, situation)
    consents = {c.agency_id: c for c in case.consents}
    decisions = {d.agency_id: d for d in plan.decisions if d.chosen}
    for referral in plan.referrals:
        consent = consents.get(referral.agency.id)
        if consent is None:
            assert situation["assume_consent"], "only the preview may choose an agency before consent is asked"
            continue
        assert consent.granted or consent.override is not None, "a refusal without an override is final"
        if not consent.granted:
            # The override is recorded (its free-text reason stays in intake's consent ledger, off Kafka).
            recorded = decisions[referral.agency.id].override
            assert consent.override is not None and recorded is not None
            assert recorded == consent.override.model_copy(update={"reason": None}), "the override is recorded"
            assert "PIPA Art. 18(2)" in decisions[referral.agency.id].reason


@PROPERTY
@given(case=cases(), fields=catalogues(), rules=rule_sets(), situation=situations())
def test_no_agency_twice_and_every_need_covered_or_reported(
    template: Agency, case: CaseDetails, fields: list[dict[str, Any]], rules: Rules, situation: dict[str, Any]
) -> None:
    plan = decide(case, build(template, fields), rules, situation)
    agencies = [r.agency.id for r in plan.referrals]
    assert len(agencies) == len(set(agencies))
    assert [d.agency_id for d in plan.decisions if d.chosen] == agencies
    skipped = [d.agency_id for d in plan.decisions if not d.chosen]
    assert len(skipped) == len(set(skipped)) and not set(skipped) & set(agencies)

    placed = [need for r in plan.referrals for need in r.needs] + list(plan.uncovered_needs)
    assert sorted(placed) == sorted(case.needs), "each need exactly once: with one agency, or reported uncovered"
    for referral in plan.referrals:
        assert set(referral.needs) <= set(referral.agency.services)
    assert all(0 < len(d.reason) <= 500 for d in plan.decisions)


@PROPERTY
@given(case=cases(), fields=catalogues(), rules=rule_sets(), situation=situations())
def test_never_an_excluded_full_closed_or_out_of_area_agency(
    template: Agency, case: CaseDetails, fields: list[dict[str, Any]], rules: Rules, situation: dict[str, Any]
) -> None:
    plan = decide(case, build(template, fields), rules, situation)
    for referral in plan.referrals:
        agency = referral.agency
        assert agency.id not in situation["excluded"]
        assert situation["remaining"].get(agency.id, agency.capacity) > 0
        assert serves_region(agency, case.region)
        assert not agency.only_specialties or case.crime_type in agency.specialties
        if any(rules.hours.is_time_critical(need, case.urgency) for need in referral.needs):
            assert is_open(agency.hours, situation["now"])


@PROPERTY
@given(case=cases(), fields=catalogues(), rules=rule_sets(), situation=situations(), data=st.data())
def test_the_same_input_always_gives_the_same_decision(
    template: Agency,
    case: CaseDetails,
    fields: list[dict[str, Any]],
    rules: Rules,
    situation: dict[str, Any],
    data: st.DataObject,
) -> None:
    catalogue = build(template, fields)
    first = decide(case, catalogue, rules, situation)
    assert decide(case, catalogue, rules, situation) == first
    # Nor does it depend on the order the agency files were read in.
    shuffled = build(template, data.draw(st.permutations(fields)))
    assert decide(case, shuffled, rules, situation) == first
