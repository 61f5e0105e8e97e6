"""The shipped sample catalogue loads, covers every need with the intended defaults, and broken files are named."""

from pathlib import Path

import pytest
from routing.rules import load_rules
from schemas.catalogue import Catalogue, CatalogueError, load_agency, load_catalogue
from schemas.vocab import Need

CATALOGUE = Path(__file__).resolve().parents[2] / "catalogue" / "agencies"
SIMULATOR = "http://127.0.0.1:8090"

# For a plain case (no specialty, region or language constraints) the first agency by (priority, id).
DEFAULT_PICK = {
    Need.safety: "police",
    Need.investigation: "police",
    Need.legal: "legal-aid",
    Need.counselling: "victim-support-center",
    Need.employment: "employment-center",
    Need.financial: "microfinance",
    Need.welfare: "seoul-welfare",
    Need.housing: "smile-center",
    Need.medical: "smile-center",
    Need.statement_support: "statement-assistant",
    Need.digital_takedown: "seoul-digital-sex-crime",
}


@pytest.fixture
def catalogue(monkeypatch: pytest.MonkeyPatch) -> Catalogue:
    monkeypatch.setenv("AGENCY_SIMULATOR_URL", SIMULATOR)
    return load_catalogue(CATALOGUE)


def test_the_sample_catalogue_has_the_fourteen_agencies(catalogue: Catalogue) -> None:
    assert sorted(catalogue.agencies) == sorted(
        [
            "prosecution", "police", "employment-center", "legal-aid", "victim-support-center",
            "legal-home-doctor", "microfinance", "seoul-welfare", "seoul-digital-sex-crime", "seoul-stalking",
            "seoul-job-center", "smile-center", "statement-assistant", "victim-public-lawyer",
        ]
    )  # fmt: skip


def test_every_need_is_offered_by_some_agency(catalogue: Catalogue) -> None:
    offered = {need for agency in catalogue for need in agency.services}
    assert offered == set(Need)


@pytest.mark.parametrize("need", list(Need))
def test_the_default_agency_for_each_need(catalogue: Catalogue, need: Need) -> None:
    first = min((a for a in catalogue if need in a.services), key=lambda a: (a.priority, a.id))
    assert first.id == DEFAULT_PICK[need]


def test_webhooks_point_at_the_configured_simulator(catalogue: Catalogue) -> None:
    for agency in catalogue:
        assert str(agency.channel.url) == f"{SIMULATOR}/agencies/{agency.id}/referrals"


def test_round_the_clock_agencies(catalogue: Catalogue) -> None:
    always_open = {agency.id for agency in catalogue if agency.hours.always_open}
    assert always_open == {"police", "seoul-digital-sex-crime"}


def test_every_agency_tells_the_victim_what_it_receives(catalogue: Catalogue) -> None:
    for agency in catalogue:
        assert agency.allowed_fields, agency.id
        assert agency.consent_notice.items and agency.consent_notice.retention, agency.id
        if "summary" in agency.allowed_fields:  # sensitive (PIPA Art. 23): the notice must say so
            assert any("sensitive" in item for item in agency.consent_notice.items), agency.id


# --- broken files --------------------------------------------------------------------------------------


POLICE_SPECIALTIES = (
    'specialties = ["stalking", "domestic_violence", "dating_violence", "sexual_violence", "violent_crime"]'
)


def _police_with(replace: tuple[str, str] | None = None, append: str = "") -> str:
    text = (CATALOGUE / "police.toml").read_text(encoding="utf-8")
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace)
    # Top-level keys must come before the first table to stay top-level.
    head, tables = text.split("\n[hours]", 1)
    return f"{head}\n{append}\n[hours]{tables}"


@pytest.mark.parametrize(
    ("file_name", "content", "named"),
    [
        ("police.toml", _police_with(append='colour = "blue"'), "colour"),
        (
            "police.toml",
            _police_with(replace=('services = ["safety", "investigation"]', 'services = ["safety", "teleport"]')),
            "services.1",
        ),
        ("prosecution.toml", _police_with(), "id"),
        (
            "police.toml",
            _police_with(replace=("${AGENCY_SIMULATOR_URL}", "${ONESTOP_TEST_UNSET_URL}")),
            "ONESTOP_TEST_UNSET_URL",
        ),
        ("police.toml", _police_with(append="priority = = 3"), "line"),
        (
            "police.toml",
            _police_with(replace=('allowed_fields = ["victim.name"', 'allowed_fields = ["victim.address"')),
            "allowed_fields",
        ),
        ("police.toml", _police_with(replace=('"Asia/Seoul"', '"Asia/Gotham"')), "hours.timezone"),
        (
            "police.toml",
            _police_with(replace=("always_open = true", "opens = 18:00:00\ncloses = 09:00:00")),
            "hours.closes",
        ),
        (
            "police.toml",
            _police_with(replace=(POLICE_SPECIALTIES, "specialties = []\nonly_specialties = true")),
            "only_specialties",
        ),
        ("police.toml", _police_with(replace=('"case summary (sensitive)",', '"case summary",')), "consent_notice"),
    ],
    ids=[
        "unknown-field", "bad-need", "id-not-file-name", "missing-env-var", "invalid-toml", "unshareable-field",
        "unknown-time-zone", "closes-before-opening", "only-specialties-without-any", "sensitive-item-not-named",
    ],
)  # fmt: skip
def test_a_broken_file_is_named_with_its_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_name: str, content: str, named: str
) -> None:
    monkeypatch.setenv("AGENCY_SIMULATOR_URL", SIMULATOR)
    monkeypatch.delenv("ONESTOP_TEST_UNSET_URL", raising=False)
    (tmp_path / file_name).write_text(content, encoding="utf-8")

    with pytest.raises(CatalogueError) as raised:
        load_catalogue(tmp_path)

    assert file_name in str(raised.value)
    assert named in str(raised.value)


def test_a_missing_environment_variable_fails_the_real_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENCY_SIMULATOR_URL", raising=False)
    with pytest.raises(CatalogueError, match="AGENCY_SIMULATOR_URL"):
        load_agency(CATALOGUE / "police.toml")


def test_an_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="no agency files"):
        load_catalogue(tmp_path)


# --- the rules file ----------------------------------------------------------------------------------------

RULES = CATALOGUE.parent / "rules.toml"


def test_the_sample_rules_name_a_hub_for_each_crime_type_the_ministry_plans(catalogue: Catalogue) -> None:
    rules = load_rules(RULES, catalogue)
    hubs = {crime: hub for hub in rules.hubs for crime in hub.crime_types}
    assert hubs["stalking"].agencies == ["seoul-stalking"]
    assert hubs["digital_sex_crime"].agencies == ["seoul-digital-sex-crime"]
    assert hubs["sexual_violence"].always_open and hubs["sexual_violence"].urgencies == ["urgent"]


@pytest.mark.parametrize(
    ("replace", "named"),
    [
        (('agencies = ["seoul-stalking"]', 'agencies = ["seoul-stalkers"]'), "hubs.0.agencies.0"),
        (('"language", "priority"]', '"language", "priority", "mood"]'), "rank_by.5"),
        (('urgent = ["safety", "medical"]', 'asap = ["safety", "medical"]'), "hours.time_critical.asap"),
        (('urgent = ["safety", "medical"]', 'urgent = ["safety", "danger"]'), "hours.time_critical.urgent.1"),
        (('crime_types = ["stalking"]', 'crime_types = ["stalking"]\nweather = "sunny"'), "hubs.0.weather"),
        (('agencies = ["seoul-stalking"]', "agencies = []"), "hubs.0"),
        (("[hours.time_critical]", "[hours.time_critical"), "line"),
    ],
    ids=[
        "unknown-agency",
        "unknown-rank-key",
        "unknown-urgency",
        "unknown-need",
        "unknown-field",
        "hub-selects-nothing",
        "bad-toml",
    ],
)
def test_a_broken_rules_file_is_named_with_its_field(
    tmp_path: Path, catalogue: Catalogue, replace: tuple[str, str], named: str
) -> None:
    text = RULES.read_text(encoding="utf-8")
    assert replace[0] in text
    broken = tmp_path / "rules.toml"
    broken.write_text(text.replace(*replace, 1), encoding="utf-8")

    with pytest.raises(CatalogueError) as raised:
        load_rules(broken, catalogue)

    assert "rules.toml" in str(raised.value) and named in str(raised.value)
