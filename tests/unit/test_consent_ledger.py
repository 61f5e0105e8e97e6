"""The consent ledger, pure: what the victim was told per agency, the state derived from the appended entries, what
may be withdrawn or overridden, what may be disclosed; routing's view of the withdrawals; the HTTP API's refusals that
need no database."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from intake.consent_ledger import (
    Action,
    Answer,
    Entry,
    Forbidden,
    Refusal,
    check_override,
    check_withdrawal,
    current,
    disclosable,
    notice_for,
)
from intake.main import create_app
from intake.settings import IntakeSettings
from kit.auth import Role, issue_token
from routing.domain import CONSENT_WITHDRAWN, after_withdrawals, personal_items_for, route_case
from routing.rules import load_rules
from schemas.catalogue import Catalogue, load_catalogue
from schemas.vocab import LegalBasis, WithdrawalScope

from tests.fakes import without_database
from tests.samples import sample_case

CATALOGUE_DIR = Path(__file__).resolve().parents[2] / "catalogue" / "agencies"
SECRET = "unit-test-signing-secret-of-32-bytes!"
ITEMS = ["victim.name", "victim.phone", "summary"]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AGENCY_SIMULATOR_URL", "http://127.0.0.1:1")
        return load_catalogue(CATALOGUE_DIR)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def grant(minutes: int, granted: bool = True, sensitive: bool = True, agency: str = "legal-aid") -> Entry:
    return Entry(agency, Action.grant, "caseworker:cw-1", at(minutes), granted=granted, sensitive_granted=sensitive)


def withdraw(minutes: int, scope: WithdrawalScope, agency: str = "legal-aid") -> Entry:
    return Entry(agency, Action.withdraw, "caseworker:cw-1", at(minutes), scope=scope)


def override(minutes: int, agency: str = "legal-aid") -> Entry:
    return Entry(
        agency,
        Action.override,
        "supervisor:sv-1",
        at(minutes),
        legal_basis=LegalBasis.imminent_danger,
        decided_by="supervisor:sv-1",
        reason="offender at the door",
    )


def test_the_notice_names_recipient_purpose_items_retention_the_right_to_refuse_and_what_refusing_means(
    catalogue: Catalogue,
) -> None:
    notice = notice_for(catalogue["legal-aid"])
    assert notice.recipient == "Korea Legal Aid Corporation (대한법률구조공단)"
    assert notice.purpose.startswith("Free legal counselling")
    assert "phone number" in notice.items and notice.retention == "5 years after the legal aid ends"
    assert notice.sensitive_items == ["case summary (sensitive)"]
    assert "refuse" in notice.right_to_refuse and "withdraw it at any time" in notice.right_to_refuse
    assert "receives none of your data" in notice.if_refused
    assert notice.if_sensitive_refused is not None and "summary" in notice.if_sensitive_refused
    # An agency given no sensitive item has no separate question to answer.
    assert notice_for(catalogue["employment-center"]).if_sensitive_refused is None


def test_the_state_is_derived_from_the_entries_in_order_per_agency() -> None:
    states = current([grant(0), grant(1, agency="police", sensitive=False), withdraw(2, WithdrawalScope.sensitive)])
    legal, police = states["legal-aid"], states["police"]
    assert (legal.consent, legal.sensitive, legal.changed_at) == (Answer.granted, Answer.withdrawn, at(2))
    assert legal.may_provide and not legal.may_provide_sensitive
    assert (police.consent, police.sensitive) == (Answer.granted, Answer.refused)
    assert list(states) == ["legal-aid", "police"]


def test_withdrawing_only_the_sensitive_consent_keeps_the_other_items_flowing() -> None:
    state = current([grant(0), withdraw(1, WithdrawalScope.sensitive)])["legal-aid"]
    assert disclosable(state, ITEMS) == ["victim.name", "victim.phone"]
    assert disclosable(current([grant(0)])["legal-aid"], ITEMS) == ITEMS


def test_a_withdrawn_consent_refuses_every_disclosure_until_an_override_or_a_new_consent() -> None:
    withdrawn = current([grant(0), withdraw(1, WithdrawalScope.all)])["legal-aid"]
    assert (withdrawn.consent, withdrawn.sensitive) == (Answer.withdrawn, Answer.withdrawn)
    with pytest.raises(Refusal, match="consent withdrawn"):
        disclosable(withdrawn, ITEMS)
    # A supervisor's override on a legal basis stands in for the consent, never for the sensitive items' own.
    overridden = current([grant(0), withdraw(1, WithdrawalScope.all), override(2)])["legal-aid"]
    assert overridden.override is not None and overridden.override.legal_basis is LegalBasis.imminent_danger
    assert disclosable(overridden, ITEMS) == ["victim.name", "victim.phone"]
    # The victim may consent again.
    again = current([grant(0), withdraw(1, WithdrawalScope.all), grant(3)])["legal-aid"]
    assert disclosable(again, ITEMS) == ITEMS


def test_without_any_consent_nothing_is_disclosed() -> None:
    with pytest.raises(Refusal, match="not_asked"):
        disclosable(None, ITEMS)
    with pytest.raises(Refusal, match="refused"):
        disclosable(current([grant(0, granted=False, sensitive=False)])["legal-aid"], ITEMS)


def test_only_a_standing_consent_can_be_withdrawn_and_an_override_only_where_consent_is_missing() -> None:
    refused = current([grant(0, granted=False, sensitive=False)])["legal-aid"]
    with pytest.raises(Forbidden, match="no consent or override for legal-aid to withdraw"):
        check_withdrawal(refused, WithdrawalScope.all)
    without_sensitive = current([grant(0, sensitive=False)])["legal-aid"]
    check_withdrawal(without_sensitive, WithdrawalScope.all)
    with pytest.raises(Forbidden, match="sensitive"):
        check_withdrawal(without_sensitive, WithdrawalScope.sensitive)
    withdrawn = current([grant(0), withdraw(1, WithdrawalScope.all)])["legal-aid"]
    with pytest.raises(Forbidden):
        check_withdrawal(withdrawn, WithdrawalScope.all)
    with pytest.raises(Forbidden, match="not needed"):
        check_override(without_sensitive)
    check_override(withdrawn)
    check_override(refused)


# --- routing keeps what was withdrawn -------------------------------------------------------------------------


def test_routing_never_chooses_an_agency_whose_consent_was_withdrawn(catalogue: Catalogue) -> None:
    rules = load_rules(CATALOGUE_DIR.parent / "rules.toml", catalogue)
    consents = [{"agency_id": a, "granted": True} for a in ("legal-aid", "victim-public-lawyer", "legal-home-doctor")]
    case = sample_case(needs=["legal"], crime_type="fraud", consents=consents).facts()
    monday_10am = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
    assert [r.agency.id for r in route_case(case, catalogue, rules, monday_10am).referrals] == ["legal-aid"]

    facts, excluded = after_withdrawals(case, {"legal-aid": WithdrawalScope.all})
    plan = route_case(facts, catalogue, rules, monday_10am, excluded=excluded)
    assert "legal-aid" not in [r.agency.id for r in plan.referrals] and plan.referrals
    [skip] = [d for d in plan.decisions if d.agency_id == "legal-aid"]
    assert not skip.chosen and CONSENT_WITHDRAWN in skip.reason


def test_routing_withholds_the_sensitive_items_once_their_consent_is_withdrawn(catalogue: Catalogue) -> None:
    case = sample_case(consents=[{"agency_id": "legal-aid", "granted": True, "sensitive_granted": True}]).facts()
    legal_aid = catalogue["legal-aid"]
    assert "summary" in personal_items_for(case, legal_aid, case.consents[0])
    facts, excluded = after_withdrawals(case, {"legal-aid": WithdrawalScope.sensitive})
    assert excluded == {}
    assert "summary" not in personal_items_for(facts, legal_aid, facts.consents[0])
    assert "victim.name" in personal_items_for(facts, legal_aid, facts.consents[0])


# --- the HTTP API's refusals before any database work -----------------------------------------------------------


def client(role: Role) -> TestClient:
    # Not entered as a context manager: no lifespan, no database; what is refused here is refused before it.
    token = issue_token(SECRET, role, f"{role.value}-1")
    app = without_database(create_app(IntakeSettings(auth_secret=SECRET)))
    return TestClient(app, raise_server_exceptions=False, headers={"authorization": f"Bearer {token}"})


CASE = "/cases/6b1f8a52-3c1e-4c55-9a55-0d7f4f0e2a11"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/consents", {"agency_id": "legal-aid", "granted": False, "sensitive_granted": True}, "body"),
        ("/consents", {"agency_id": "Legal Aid!", "granted": True}, "body.agency_id"),
        ("/consents", {"agency_id": "legal-aid", "granted": True, "notice": {"purpose": ""}}, "body.notice.purpose"),
        ("/consents/legal-aid/withdraw", {"scope": "everything"}, "body.scope"),
        ("/consents/Legal_Aid/withdraw", {"scope": "all"}, "path.agency_id"),
    ],
    ids=["sensitive-without-consent", "bad-agency-id", "empty-notice", "unknown-scope", "bad-agency-path"],
)
def test_bad_input_is_a_422_problem_naming_the_field(path: str, body: dict[str, Any], field: str) -> None:
    answer = client(Role.caseworker).post(CASE + path, json=body)
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    assert field in {e["loc"] for e in answer.json()["errors"]}


def test_an_override_is_refused_to_a_caseworker_and_needs_a_legal_basis_from_a_supervisor() -> None:
    body = {"legal_basis": "imminent_danger", "reason": "offender at the door"}
    assert client(Role.caseworker).post(f"{CASE}/consents/legal-aid/override", json=body).status_code == 403
    assert client(Role.auditor).get(f"{CASE}/consents").status_code == 403
    no_basis = client(Role.supervisor).post(f"{CASE}/consents/legal-aid/override", json={"reason": "urgent"})
    assert no_basis.status_code == 422
    assert {e["loc"] for e in no_basis.json()["errors"]} == {"body.legal_basis"}
    unknown = client(Role.supervisor).post(f"{CASE}/consents/legal-aid/override", json={**body, "legal_basis": "x"})
    assert unknown.status_code == 422


def test_withdrawing_everything_ends_a_standing_override_too() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    granted = Entry("legal-aid", Action.grant, "caseworker:cw-1", at, granted=True)
    override = Entry(
        "legal-aid",
        Action.override,
        "supervisor:s-1",
        at,
        legal_basis=LegalBasis.imminent_danger,
        decided_by="supervisor:s-1",
        reason="risk of harm",
    )
    withdrawn = Entry("legal-aid", Action.withdraw, "caseworker:cw-1", at, scope=WithdrawalScope.all)
    for history in ([override, withdrawn], [override, granted, withdrawn]):
        state = current(history)["legal-aid"]
        assert state.override is None and not state.may_provide
        with pytest.raises(Refusal):
            disclosable(state, ["victim.name"])
    check_withdrawal(current([override])["legal-aid"], WithdrawalScope.all)  # an override alone can be withdrawn
