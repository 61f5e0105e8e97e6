"""Routing's command line: validate the catalogue, dry-run a case file; and a broken catalogue stops the service at
start with a message naming the file, the field and the problem."""

import json
import shutil
from pathlib import Path

import pytest
from kit.cli import service_main
from routing.cli import commands
from routing.main import create_app
from routing.settings import RoutingSettings

from tests.samples import sample_case_json

CATALOGUE = Path(__file__).resolve().parents[2] / "catalogue"
MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "routing" / "src" / "routing" / "migrations"


@pytest.fixture(autouse=True)
def simulator_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENCY_SIMULATOR_URL", "http://127.0.0.1:1")


def run(*argv: str) -> int:
    settings = RoutingSettings(catalogue_dir=CATALOGUE / "agencies")
    with pytest.raises(SystemExit) as exited:
        service_main(settings, create_app, MIGRATIONS, commands(settings), argv=list(argv))  # type: ignore[arg-type]
    code = exited.value.code
    return code if isinstance(code, int) else 1


@pytest.fixture
def broken_catalogue(tmp_path: Path) -> Path:
    """A copy of the catalogue with two broken agency files."""
    shutil.copytree(CATALOGUE, tmp_path / "catalogue")
    agencies = tmp_path / "catalogue" / "agencies"
    police = agencies / "police.toml"
    police.write_text(police.read_text(encoding="utf-8").replace('"investigation"]', '"teleport"]'), encoding="utf-8")
    legal = agencies / "legal-aid.toml"
    legal.write_text(legal.read_text(encoding="utf-8").replace("capacity = 120", "capacity = -1"), encoding="utf-8")
    return agencies


def test_validate_catalogue_accepts_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("validate-catalogue", str(CATALOGUE / "agencies")) == 0
    out = capsys.readouterr().out
    assert "catalogue OK: 14 agencies" in out and "3 crime-type hub(s)" in out


def test_validate_catalogue_names_every_broken_file_and_field(
    broken_catalogue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("validate-catalogue", str(broken_catalogue)) == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert "police.toml: services.1" in err and "legal-aid.toml: capacity" in err


def test_a_broken_catalogue_stops_the_service_at_start(broken_catalogue: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        create_app(RoutingSettings(catalogue_dir=broken_catalogue))
    message = str(exited.value.code)
    assert message.startswith("routing cannot start:")
    assert "legal-aid.toml: capacity" in message and "greater than or equal to 0" in message


def test_a_rules_file_naming_an_unknown_agency_stops_the_service(tmp_path: Path) -> None:
    shutil.copytree(CATALOGUE, tmp_path / "catalogue")
    rules = tmp_path / "catalogue" / "rules.toml"
    rules.write_text(rules.read_text(encoding="utf-8").replace('["seoul-stalking"]', '["nobody"]'), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"rules.toml: hubs.0.agencies.0: no agency 'nobody'"):
        create_app(RoutingSettings(catalogue_dir=tmp_path / "catalogue" / "agencies"))


def write_case(tmp_path: Path, **overrides: object) -> Path:
    path = tmp_path / "case.json"
    path.write_text(json.dumps(sample_case_json(**overrides)), encoding="utf-8")
    return path


def test_dry_run_prints_the_explained_decision_without_personal_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    consents = [{"agency_id": a, "granted": True} for a in ("seoul-stalking", "legal-aid", "police")]
    case = write_case(tmp_path, crime_type="stalking", needs=["safety", "legal", "counselling"], consents=consents)
    assert run("dry-run", str(case), "--at", "2025-03-03T10:00") == 0
    out = capsys.readouterr().out
    assert "routed as at 2025-03-03 Mon 10:00 Asia/Seoul" in out
    assert "seoul-stalking (Seoul One-Stop Stalking Victim Support Centre) for safety, counselling" in out
    assert "stalking hub" in out and "legal-aid (Korea Legal Aid Corporation) for legal" in out
    assert "uncovered needs: none" in out
    for personal in ("Kim Example", "+82 10-0000-0000", "victim@example.org", "Assaulted"):
        assert personal not in out


def test_dry_run_as_json_with_reported_capacity_and_a_late_hour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    consents = [{"agency_id": a, "granted": True} for a in ("seoul-stalking", "police", "victim-support-center")]
    needs = ["safety", "counselling"]
    case = write_case(tmp_path, crime_type="stalking", urgency="urgent", needs=needs, consents=consents)
    assert run("dry-run", str(case), "--at", "2025-03-03T23:00+09:00", "--available", "police=1", "--json") == 0
    decision = json.loads(capsys.readouterr().out)
    # Safety cannot wait for the stalking hub to open: the police take it; counselling can, and goes to the hub.
    assert decision["referrals"] == [
        {"agency_id": "police", "needs": ["safety"], "consent": "recorded"},
        {"agency_id": "seoul-stalking", "needs": ["counselling"], "consent": "recorded"},
    ]
    assert decision["uncovered_needs"] == []
    said = {d["agency_id"]: d["reason"] for d in decision["decisions"]}
    assert "not for safety: closed now (Mon 23:00 Asia/Seoul) and safety is time-critical" in said["seoul-stalking"]
    assert "opens Tue 09:00 Asia/Seoul" in said["seoul-stalking"]


def test_dry_run_rejects_a_bad_case_file_naming_fields_not_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = write_case(tmp_path, urgency="SECRET-URGENCY", needs=["safety", "tarot"])
    assert run("dry-run", str(case)) == 2
    err = capsys.readouterr().err
    assert "urgency" in err and "needs.1" in err
    assert "SECRET-URGENCY" not in err and "tarot" not in err and "Kim Example" not in err


def test_the_service_commands_are_still_there(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--help") == 0
    out = capsys.readouterr().out
    for command in ("migrate", "serve", "validate-catalogue", "dry-run"):
        assert command in out
