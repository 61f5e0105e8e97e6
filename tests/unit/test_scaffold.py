"""onestop-scaffold (tools/scaffold): a new agency's catalogue entry is a valid catalogue file or nothing is
written; a channel skeleton is a plugin package with its entry point and a test."""

import argparse
from pathlib import Path
from typing import Any

import pytest
from scaffold.main import ScaffoldError, new_agency, new_channel
from schemas.catalogue import WebhookChannel, load_agency
from schemas.vocab import Need


def scaffold_args(tmp_path: Path, **changes: Any) -> argparse.Namespace:
    values: dict[str, Any] = {
        "agency_id": "seoul-shelter",
        "name_ko": "서울 쉼터",
        "name_en": "Seoul Shelter",
        "services": ["housing"],
        "channel": "webhook",
        "url": "https://shelter.example/referrals",
        "to": None,
        "from_address": None,
        "smtp_host": None,
        "setting": [],
        "allowed_fields": ["victim.name", "victim.phone", "summary"],
        "purpose": "Temporary housing",
        "retention": "3 years",
        "regions": ["seoul"],
        "languages": ["ko", "en"],
        "priority": 50,
        "always_open": True,
        "catalogue_dir": str(tmp_path),
    }
    return argparse.Namespace(**(values | changes))


def test_the_scaffolded_agency_entry_is_a_valid_catalogue_file(tmp_path: Path) -> None:
    path = new_agency(scaffold_args(tmp_path))
    made = load_agency(path)

    assert made.id == "seoul-shelter" and made.services == [Need.housing] and made.hours.always_open
    assert isinstance(made.channel, WebhookChannel) and made.channel.secret_env == "WEBHOOK_SECRET_SEOUL_SHELTER"
    assert "case summary (sensitive)" in made.consent_notice.items
    with pytest.raises(ScaffoldError, match="exists already"):
        new_agency(scaffold_args(tmp_path))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"services": ["teleport"]}, "unknown needs"),
        ({"allowed_fields": ["victim.address"]}, "unknown fields"),
        ({"url": None}, "needs --url"),
        ({"channel": "pigeon"}, "no gateway plugin for channel type 'pigeon'"),
    ],
)
def test_a_scaffolded_agency_that_cannot_work_is_refused_and_not_written(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScaffoldError, match=message):
        new_agency(scaffold_args(tmp_path, **changes))
    assert list(tmp_path.iterdir()) == []


def test_the_channel_skeleton_is_a_package_with_an_entry_point_and_a_test(tmp_path: Path) -> None:
    root = new_channel("fax", tmp_path)

    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points."onestop.channels"]\nfax = "onestop_channel_fax:FaxDelivery"' in pyproject
    for source in (root / "src" / "onestop_channel_fax" / "__init__.py", root / "tests" / "test_fax.py"):
        compile(source.read_text(), str(source), "exec")
    with pytest.raises(ScaffoldError, match="installed already"):
        new_channel("webhook", tmp_path)
