"""Routing, pure: crime-type hubs first, one referral per agency, consent or a recorded override, capacity and
opening hours, re-routing, and an explanation for every choice and skip. The sample catalogue and rules, a fixed
clock."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from routing.domain import (
    ALREADY_REFERRED,
    Plan,
    as_consented_now,
    excluded_after,
    new_referral_id,
    personal_items_for,
    referral_view,
    route_case,
)
from routing.rules import Rules, load_rules
from schemas.calendar import is_open
from schemas.catalogue import Catalogue, OpeningHours, load_catalogue
from schemas.events import Consent
from schemas.vocab import ReroutingCause, WithdrawalScope

from tests.samples import sample_case

CATALOGUE_DIR = Path(__file__).resolve().parents[2] / "catalogue" / "agencies"

# Asia/Seoul is UTC+9 all year.
MONDAY_10AM = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # office hours
MONDAY_11PM = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)  # only the 24/7 agencies are open
TUESDAY_3AM = datetime(2025, 3, 3, 18, 0, tzinfo=UTC)  # the same, deep in the night
SATURDAY_10AM = datetime(2025, 3, 8, 1, 0, tzinfo=UTC)  # statement assistants work Saturdays, most do not


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AGENCY_SIMULATOR_URL", "http://127.0.0.1:1")
        return load_catalogue(CATALOGUE_DIR)


@pytest.fixture(scope="module")
def rules(catalogue: Catalogue) -> Rules:
    return load_rules(CATALOGUE_DIR.parent / "rules.toml", catalogue)


def consents(*agencies: str, sensitive: bool = False) -> list[dict[str, object]]:
    return [{"agency_id": a, "granted": True, "sensitive_granted": sensitive} for a in agencies]


EVERYONE = consents(
    "police", "legal-aid", "employment-center", "victim-support-center", "seoul-stalking", "seoul-digital-sex-crime",
    "smile-center", "seoul-welfare", "victim-public-lawyer", "legal-home-doctor", "prosecution", "microfinance",
    "statement-assistant", "seoul-job-center",
)  # fmt: skip


def chosen(plan: Plan) -> dict[str, list[str]]:
    return {r.agency.id: list(r.needs) for r in plan.referrals}


def reasons(plan: Plan, *, was_chosen: bool) -> dict[str, str]:
    return {d.agency_id: d.reason for d in plan.decisions if d.chosen is was_chosen}


def route(catalogue: Catalogue, rules: Rules, at: datetime = MONDAY_10AM, **case: Any) -> Plan:
    return route_case(sample_case(**{"consents": EVERYONE, **case}), catalogue, rules, at)


# --- the behaviour the pipeline relies on -----------------------------------------------------------------


def test_three_needs_become_three_referrals_to_consenting_agencies(catalogue: Catalogue, rules: Rules) -> None:
    plan = route_case(sample_case(), catalogue, rules, MONDAY_10AM)
    assert chosen(plan) == {"police": ["safety"], "legal-aid": ["legal"], "employment-center": ["employment"]}
    assert plan.uncovered_needs == []
    assert all(d.chosen and d.reason for d in plan.decisions)


def test_an_agency_covering_two_needs_gets_one_referral(catalogue: Catalogue, rules: Rules) -> None:
    plan = route(catalogue, rules, needs=["safety", "investigation"], consents=consents("police"))
    assert chosen(plan) == {"police": ["safety", "investigation"]}
    assert "one referral for all the needs it covers" in reasons(plan, was_chosen=True)["police"]


# --- crime-type hubs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("crime_type", "urgency", "at", "needs", "expected", "uncovered", "hub", "hub_says"),
    [
        (
            "stalking", "high", MONDAY_10AM, ["safety", "legal", "counselling"],
            {"seoul-stalking": ["safety", "counselling"], "legal-aid": ["legal"]}, [],
            "seoul-stalking", "stalking hub",
        ),
        (
            "digital_sex_crime", "normal", MONDAY_10AM, ["safety", "digital_takedown", "legal", "counselling"],
            {"police": ["safety"], "seoul-digital-sex-crime": ["digital_takedown", "legal", "counselling"]}, [],
            "seoul-digital-sex-crime", "digital sex crime hub",
        ),
        (  # at night the 24/7 hub takes what it offers; counselling can wait for the specialist to open
            "sexual_violence", "urgent", MONDAY_11PM, ["safety", "investigation", "counselling"],
            {"police": ["safety", "investigation"], "smile-center": ["counselling"]}, [],
            "police", "urgent sexual violence",
        ),
        (  # 03:00 on a Tuesday: the same — safety and investigation now, counselling when the specialist opens
            "sexual_violence", "urgent", TUESDAY_3AM, ["safety", "investigation", "counselling"],
            {"police": ["safety", "investigation"], "smile-center": ["counselling"]}, [],
            "police", "urgent sexual violence",
        ),
        (  # in office hours the 24/7 specialist still comes first for what it offers; the rest by specialty
            "sexual_violence", "urgent", MONDAY_10AM, ["investigation", "counselling", "statement_support"],
            {
                "police": ["investigation"], "smile-center": ["counselling"],
                "statement-assistant": ["statement_support"],
            },
            [], "police", "urgent sexual violence",
        ),
    ],
    ids=[
        "stalking", "digital-sex-crime", "urgent-sexual-violence-at-night", "urgent-sexual-violence-at-3am",
        "urgent-sexual-violence-by-day",
    ],
)  # fmt: skip
def test_crime_type_hubs_come_first(
    catalogue: Catalogue,
    rules: Rules,
    crime_type: str,
    urgency: str,
    at: datetime,
    needs: list[str],
    expected: dict[str, list[str]],
    uncovered: list[str],
    hub: str,
    hub_says: str,
) -> None:
    plan = route(catalogue, rules, at, crime_type=crime_type, urgency=urgency, needs=needs)
    assert chosen(plan) == expected
    assert plan.uncovered_needs == uncovered
    assert hub_says in reasons(plan, was_chosen=True)[hub]


def test_the_urgent_sexual_violence_hub_beats_a_better_priority_office_hours_agency(
    catalogue: Catalogue, rules: Rules
) -> None:
    # An office-hours specialist offering safety, ranked before the police by priority: for an urgent case the
    # rules put the 24/7 specialist first; for a normal one the priority decides.
    office = catalogue["smile-center"].model_copy(
        update={"id": "day-shelter", "services": ["safety"], "priority": 1, "only_specialties": False}
    )
    custom = Catalogue({**catalogue.agencies, "day-shelter": office})
    case = {"crime_type": "sexual_violence", "needs": ["safety"], "consents": [*EVERYONE, *consents("day-shelter")]}
    assert chosen(route(custom, rules, MONDAY_10AM, urgency="urgent", **case)) == {"police": ["safety"]}
    assert chosen(route(custom, rules, MONDAY_10AM, urgency="normal", **case)) == {"day-shelter": ["safety"]}


def test_a_hub_takes_its_needs_even_when_another_agency_was_chosen_first(catalogue: Catalogue, rules: Rules) -> None:
    plan = route(catalogue, rules, crime_type="stalking", needs=["investigation", "safety"])
    assert chosen(plan) == {"police": ["investigation"], "seoul-stalking": ["safety"]}


def test_a_specialist_agency_takes_only_its_crime_types(catalogue: Catalogue, rules: Rules) -> None:
    plan = route(catalogue, rules, crime_type="fraud", needs=["housing"])
    assert chosen(plan) == {"seoul-welfare": ["housing"]}
    assert "takes only" in reasons(plan, was_chosen=False)["smile-center"]


# --- consent ----------------------------------------------------------------------------------------------


def test_without_consent_the_next_candidate_is_taken_and_the_skip_explained(catalogue: Catalogue, rules: Rules) -> None:
    plan = route(catalogue, rules, needs=["legal"], consents=consents("legal-home-doctor"))
    assert chosen(plan) == {"legal-home-doctor": ["legal"]}
    skipped = reasons(plan, was_chosen=False)
    assert "no consent recorded" in skipped["legal-aid"]


def test_a_refusal_is_respected_even_in_the_preview(catalogue: Catalogue, rules: Rules) -> None:
    case = sample_case(needs=["legal"], consents=[{"agency_id": "legal-aid", "granted": False}])
    plan = route_case(case, catalogue, rules, MONDAY_10AM, assume_consent=True)
    assert chosen(plan) == {"legal-home-doctor": ["legal"]}
    assert "refused consent" in reasons(plan, was_chosen=False)["legal-aid"]


def test_an_override_with_a_legal_basis_stands_in_for_consent_and_says_so(catalogue: Catalogue, rules: Rules) -> None:
    override = {"legal_basis": "imminent_danger", "recorded_by": "staff-17", "reason": "offender at the door"}
    case = sample_case(needs=["safety"], consents=[{"agency_id": "police", "granted": False, "override": override}])
    plan = route_case(case, catalogue, rules, MONDAY_10AM)
    assert chosen(plan) == {"police": ["safety"]}
    [decision] = plan.decisions
    # Its free-text reason stays in intake's consent ledger: it never travels on Kafka.
    assert decision.override is not None and decision.override.model_dump(mode="json") == {**override, "reason": None}
    assert "PIPA Art. 18(2) (imminent_danger)" in decision.reason and "staff-17" in decision.reason
    # The override stands in for the consent to provide data, not for the separate consent to sensitive items.
    assert personal_items_for(case.facts(), catalogue["police"], case.consents[0]) == ["victim.name", "victim.phone"]


def test_the_preview_assumes_consent_so_staff_know_whom_to_ask(catalogue: Catalogue, rules: Rules) -> None:
    case = sample_case(consents=[])
    preview = route_case(case, catalogue, rules, MONDAY_10AM, assume_consent=True)
    assert list(chosen(preview)) == ["police", "legal-aid", "employment-center"]
    assert all("consent to be asked" in d.reason for d in preview.decisions)
    assert route_case(case, catalogue, rules, MONDAY_10AM).referrals == []


def test_the_explanation_says_when_sensitive_items_are_withheld(catalogue: Catalogue, rules: Rules) -> None:
    plan = route_case(sample_case(), catalogue, rules, MONDAY_10AM)
    explained = reasons(plan, was_chosen=True)
    assert "with the separate sensitive-data consent" in explained["police"]
    assert "summary withheld" in explained["legal-aid"]


# --- capacity and opening hours ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "expected", "full_says"),
    [
        ({}, {"seoul-stalking": ["safety", "counselling"]}, None),
        ({"seoul-stalking": 3}, {"seoul-stalking": ["safety", "counselling"]}, None),
        (
            {"seoul-stalking": 0},
            {"police": ["safety"], "victim-support-center": ["counselling"]},
            "full: no places left, as the agency reported",
        ),
    ],
    ids=["not-reported", "places-left", "reported-full"],
)
def test_a_full_agency_is_skipped_for_the_next_candidate(
    catalogue: Catalogue, rules: Rules, remaining: dict[str, int], expected: dict[str, list[str]], full_says: str | None
) -> None:
    case = sample_case(crime_type="stalking", needs=["safety", "counselling"], consents=EVERYONE)
    plan = route_case(case, catalogue, rules, MONDAY_10AM, remaining=remaining)
    assert chosen(plan) == expected
    skipped = reasons(plan, was_chosen=False)
    assert (skipped.get("seoul-stalking") or "").count("full") == (1 if full_says else 0)
    if full_says:
        assert full_says in skipped["seoul-stalking"]


def test_an_agency_with_no_catalogue_capacity_is_full(catalogue: Catalogue, rules: Rules) -> None:
    no_places = catalogue["legal-aid"].model_copy(update={"capacity": 0})
    closed_down = Catalogue({**catalogue.agencies, "legal-aid": no_places})
    plan = route(closed_down, rules, needs=["legal"])
    assert "legal-aid" not in chosen(plan)
    assert "catalogue capacity 0" in reasons(plan, was_chosen=False)["legal-aid"]


@pytest.mark.parametrize(
    ("urgency", "at", "expected", "uncovered"),
    [
        ("urgent", MONDAY_10AM, {"police": ["safety"], "legal-aid": ["legal"], "smile-center": ["medical"]}, []),
        ("urgent", MONDAY_11PM, {"police": ["safety"], "legal-aid": ["legal"]}, ["medical"]),
        ("high", MONDAY_11PM, {"police": ["safety"], "legal-aid": ["legal"], "smile-center": ["medical"]}, []),
        ("urgent", SATURDAY_10AM, {"police": ["safety"], "legal-aid": ["legal"]}, ["medical"]),
    ],
    ids=["urgent-in-office-hours", "urgent-at-night", "not-urgent-at-night", "urgent-on-saturday"],
)
def test_only_a_time_critical_need_skips_a_closed_agency(
    catalogue: Catalogue,
    rules: Rules,
    urgency: str,
    at: datetime,
    expected: dict[str, list[str]],
    uncovered: list[str],
) -> None:
    # Medical care is time-critical for an urgent case and no medical agency is open at night: it is not routed to
    # a closed one (a caseworker sees it uncovered, with why). Legal advice can wait: the best legal agency gets it
    # even when closed, and the decision says when it opens.
    plan = route(
        catalogue, rules, at, crime_type="sexual_violence", urgency=urgency, needs=["safety", "legal", "medical"]
    )
    assert chosen(plan) == expected
    assert plan.uncovered_needs == uncovered
    if uncovered:
        assert "medical is time-critical for an urgent case" in reasons(plan, was_chosen=False)["smile-center"]
        assert "Asia/Seoul" in reasons(plan, was_chosen=False)["smile-center"]
    if at != MONDAY_10AM:
        said = reasons(plan, was_chosen=True)["legal-aid"]
        assert ("closed now" in said and "opens Mon 09:00 Asia/Seoul" in said) or "opens Tue 09:00 Asia/Seoul" in said


def test_the_saturday_evening_stalking_case_reaches_the_hub_and_legal_aid_not_only_the_police(
    catalogue: Catalogue, rules: Rules
) -> None:
    saturday_1645 = datetime(2026, 12, 5, 7, 45, tzinfo=UTC)
    plan = route(
        catalogue,
        rules,
        saturday_1645,
        crime_type="stalking",
        urgency="urgent",
        needs=["safety", "legal", "counselling"],
    )
    assert chosen(plan) == {"police": ["safety"], "legal-aid": ["legal"], "seoul-stalking": ["counselling"]}
    assert plan.uncovered_needs == []
    said = reasons(plan, was_chosen=True)
    assert "not for safety: closed now (Sat 16:45 Asia/Seoul)" in said["seoul-stalking"]
    assert "opens Mon 09:00 Asia/Seoul" in said["seoul-stalking"] and "opens Mon 09:00" in said["legal-aid"]
    monday = route(catalogue, rules, MONDAY_10AM, crime_type="stalking", urgency="urgent", needs=["safety", "legal"])
    assert chosen(monday) == {"seoul-stalking": ["safety"], "legal-aid": ["legal"]}


def test_an_agency_chosen_for_a_need_that_can_wait_does_not_take_a_time_critical_one_while_closed(
    catalogue: Catalogue, rules: Rules
) -> None:
    plan = route(
        catalogue, rules, MONDAY_11PM, crime_type="stalking", urgency="urgent", needs=["counselling", "safety"]
    )
    assert chosen(plan) == {"seoul-stalking": ["counselling"], "police": ["safety"]}


def test_a_public_holiday_closes_an_office_hours_agency(catalogue: Catalogue, rules: Rules) -> None:
    christmas_10am = datetime(2026, 12, 25, 1, 0, tzinfo=UTC)  # a Friday
    plan = route(catalogue, rules, christmas_10am, crime_type="sexual_violence", urgency="urgent", needs=["medical"])
    assert plan.uncovered_needs == ["medical"]
    assert "Fri 10:00 Asia/Seoul" in reasons(plan, was_chosen=False)["smile-center"]
    same_day_no_holidays = route(
        catalogue, rules.model_copy(update={"public_holidays": frozenset()}), christmas_10am,
        crime_type="sexual_violence", urgency="urgent", needs=["medical"],
    )  # fmt: skip
    assert chosen(same_day_no_holidays) == {"smile-center": ["medical"]}


def test_opening_hours_are_read_in_asia_seoul() -> None:
    office = OpeningHours()  # Monday to Friday, 09:00 to 18:00 Asia/Seoul

    assert is_open(office, datetime(2025, 3, 3, 0, 0, tzinfo=UTC))  # 09:00 in Seoul
    assert not is_open(office, datetime(2025, 3, 2, 23, 59, tzinfo=UTC))  # 08:59
    assert not is_open(office, datetime(2025, 3, 3, 9, 0, tzinfo=UTC))  # 18:00, closed
    assert not is_open(office, datetime(2025, 3, 7, 9, 30, tzinfo=UTC))  # Friday 18:30
    assert is_open(OpeningHours(always_open=True), MONDAY_11PM)


# --- region, language, uncovered needs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected", "uncovered", "skip_says"),
    [
        (
            {"region": "busan", "needs": ["safety", "legal", "welfare"]},
            {"legal-aid": ["legal"]},
            ["safety", "welfare"],
            {"police": "does not serve the case's region", "seoul-welfare": "does not serve the case's region"},
        ),
        (
            {"needs": ["digital_takedown", "safety"], "consents": consents("police")},
            {"police": ["safety"]},
            ["digital_takedown"],
            {"seoul-digital-sex-crime": "takes only digital_sex_crime cases"},
        ),
        (
            {"crime_type": "digital_sex_crime", "needs": ["digital_takedown"], "consents": consents("police")},
            {},
            ["digital_takedown"],
            {"seoul-digital-sex-crime": "no consent recorded"},
        ),
    ],
    ids=["outside-seoul", "no-agency-takes-the-crime-type", "no-consent"],
)
def test_needs_nobody_can_take_are_reported_with_the_reasons(
    catalogue: Catalogue,
    rules: Rules,
    case: dict[str, Any],
    expected: dict[str, list[str]],
    uncovered: list[str],
    skip_says: dict[str, str],
) -> None:
    plan = route(catalogue, rules, **case)
    assert chosen(plan) == expected
    assert plan.uncovered_needs == uncovered
    skipped = reasons(plan, was_chosen=False)
    for agency, says in skip_says.items():
        assert says in skipped[agency]


def test_the_victims_language_ranks_agencies_that_speak_it_first(catalogue: Catalogue, rules: Rules) -> None:
    assert chosen(route(catalogue, rules, needs=["employment"], language="ko")) == {"employment-center": ["employment"]}
    in_english = route(catalogue, rules, crime_type="elder_abuse", needs=["financial"], language="en")
    assert chosen(in_english) == {"victim-support-center": ["financial"]}, "microfinance lists only Korean"
    in_thai = route(catalogue, rules, crime_type="elder_abuse", needs=["financial"], language="th")
    assert chosen(in_thai) == {"microfinance": ["financial"]}
    assert "arrange interpretation" in reasons(in_thai, was_chosen=True)["microfinance"]


# --- re-routing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cause", "says"),
    [
        (ReroutingCause.declined, "declined this case"),
        (ReroutingCause.delivery_failed, "could not be delivered"),
        (ReroutingCause.deadline_breached, "missed its acknowledgement deadline"),
        # A completed referral re-routed on the caseworker's word after a not_successful outcome (notify's
        # follow-up): routing takes it like any other cause (before, it had no reason for it and failed).
        (ReroutingCause.not_successful, "completed its referral without success"),
    ],
)
def test_rerouting_sends_the_unmet_needs_to_the_next_candidate_never_back(
    catalogue: Catalogue, rules: Rules, cause: ReroutingCause, says: str
) -> None:
    case = sample_case(crime_type="stalking", needs=["safety", "legal", "counselling"], consents=EVERYONE)
    first = route_case(case, catalogue, rules, MONDAY_10AM)
    assert chosen(first) == {"seoul-stalking": ["safety", "counselling"], "legal-aid": ["legal"]}

    excluded = dict.fromkeys(chosen(first), ALREADY_REFERRED) | {"seoul-stalking": excluded_after(cause)}
    again = route_case(case, catalogue, rules, MONDAY_10AM, excluded=excluded, needs=["safety", "counselling"])
    assert chosen(again) == {"police": ["safety"], "victim-support-center": ["counselling"]}
    assert says in reasons(again, was_chosen=False)["seoul-stalking"]
    assert not set(chosen(again)) & set(chosen(first))


def test_rerouting_never_returns_to_an_agency_already_referred(catalogue: Catalogue, rules: Rules) -> None:
    case = sample_case(needs=["safety", "legal"], consents=consents("police", "legal-aid", "legal-home-doctor"))
    excluded = {"police": ALREADY_REFERRED, "legal-aid": excluded_after(ReroutingCause.declined)}
    plan = route_case(case, catalogue, rules, MONDAY_10AM, excluded=excluded, needs=["legal"])
    assert chosen(plan) == {"legal-home-doctor": ["legal"]}
    again = route_case(
        case, catalogue, rules, MONDAY_10AM, excluded={**excluded, "legal-home-doctor": "declined"}, needs=["legal"]
    )
    assert chosen(again) == {} and again.uncovered_needs == ["legal"]


# --- determinism and what an agency sees ------------------------------------------------------------------


def test_the_same_case_always_gives_the_same_decision(catalogue: Catalogue, rules: Rules) -> None:
    case = sample_case()
    assert route_case(case, catalogue, rules, MONDAY_10AM) == route_case(case, catalogue, rules, MONDAY_10AM)


def test_referral_ids_cannot_be_worked_out_from_the_case() -> None:
    ids = {new_referral_id() for _ in range(100)}
    assert len(ids) == 100 and all(i.version == 4 for i in ids)


def test_an_agency_gets_only_its_allowed_items_and_no_personal_value_travels(catalogue: Catalogue) -> None:
    case = sample_case().facts()
    police, microfinance = catalogue["police"], catalogue["microfinance"]
    with_sensitive = Consent(agency_id="police", granted=True, sensitive_granted=True)
    assert personal_items_for(case, police, with_sensitive) == ["victim.name", "victim.phone", "summary"]
    without_sensitive = personal_items_for(case, police, Consent(agency_id="police", granted=True))
    assert "summary" not in without_sensitive, "sensitive items need the separate consent"
    minimal = personal_items_for(case, microfinance, Consent(agency_id="microfinance", granted=True))
    assert set(minimal) == set(microfinance.allowed_fields) & set(case.personal_items)
    view = referral_view(case, police, ["safety"])
    shared = {k for k, v in view.model_dump().items() if v is not None}
    assert shared == {"crime_type", "needs", "urgency"} | ({"region", "language"} & set(police.allowed_fields))


def test_an_uncovered_need_says_why_each_candidate_could_not_take_it(catalogue: Catalogue, rules: Rules) -> None:
    from routing.domain import NOBODY_OFFERS, why_uncovered

    plan = route(
        catalogue, rules, MONDAY_11PM, crime_type="sexual_violence", urgency="urgent", needs=["safety", "medical"]
    )
    why = why_uncovered(plan)
    assert list(why) == ["medical"]
    assert "smile-center: closed now (Mon 23:00 Asia/Seoul) and medical is time-critical" in why["medical"]
    nobody = Catalogue({a.id: a for a in catalogue if "medical" not in a.services})
    assert why_uncovered(route(nobody, rules, MONDAY_10AM, needs=["medical"])) == {"medical": NOBODY_OFFERS}


def test_pending_needs_are_retried_a_round_later_or_at_once_when_poked() -> None:
    from routing.main import PendingRetry

    now = [MONDAY_10AM]
    retry = PendingRetry(lambda: now[0], timedelta(minutes=5))
    assert retry.cut_off() == MONDAY_10AM, "at start: everything held before it"
    now[0] = MONDAY_10AM + timedelta(minutes=20)
    assert retry.cut_off() == MONDAY_10AM + timedelta(minutes=15), "later: what was last tried a round ago"
    retry.poke()
    assert retry.wake.is_set() and retry.cut_off() == now[0], "poked: everything tried before now"


def test_a_digital_sex_crime_on_a_public_holiday_goes_to_the_round_the_clock_hub(
    catalogue: Catalogue, rules: Rules
) -> None:
    chuseok_3pm = datetime(2026, 9, 25, 6, 0, tzinfo=UTC)  # a Friday, and a public holiday
    plan = route(
        catalogue, rules, chuseok_3pm, crime_type="digital_sex_crime", urgency="urgent",
        needs=["safety", "digital_takedown", "legal", "counselling", "employment"],
    )  # fmt: skip
    assert chosen(plan) == {
        "police": ["safety"],
        "seoul-digital-sex-crime": ["digital_takedown", "legal", "counselling"],
        "employment-center": ["employment"],
    }
    said = reasons(plan, was_chosen=True)["employment-center"]
    assert "closed now (Fri 15:00 Asia/Seoul); opens Mon 09:00 Asia/Seoul" in said, "the holiday is not a working day"


def test_a_consent_recorded_after_submission_counts_and_a_withdrawal_still_wins() -> None:
    case = sample_case(
        consents=[{"agency_id": "police", "granted": True}, {"agency_id": "legal-aid", "granted": False}]
    )
    recorded = [
        Consent(agency_id="legal-aid", granted=True, sensitive_granted=True),  # the victim changed their mind
        Consent(agency_id="smile-center", granted=True),  # asked later
        Consent(agency_id="police", granted=True, sensitive_granted=True),
    ]
    now, excluded = as_consented_now(case, recorded, {"police": WithdrawalScope.all})
    by_agency = {c.agency_id: c for c in now.consents}
    assert by_agency["legal-aid"].granted and by_agency["legal-aid"].sensitive_granted
    assert by_agency["smile-center"].granted
    assert not by_agency["police"].granted and set(excluded) == {"police"}, "a withdrawal keeps its agency out"
    assert [c.agency_id for c in now.consents] == ["police", "legal-aid", "smile-center"]
