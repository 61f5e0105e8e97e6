"""The migrations' checksums without a database: each file's sha256 of its bytes, in the order applied, and which
applied migrations changed since (what `migrate` refuses and `migrate --status` shows)."""

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kit.cli import service_main
from kit.db import _KIT_MIGRATIONS, Applied, MigrationChanged, changed, migrations
from kit.settings import ServiceSettings

AT = datetime(2025, 1, 1, tzinfo=UTC)


def service_sql(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "002_second.sql").write_text("CREATE TABLE second (id int);\n")
    (directory / "001_first.sql").write_bytes("-- 한국어 주석\r\nCREATE TABLE first (id int);\n".encode())
    (directory / "notes.txt").write_text("not a migration")
    return directory


def test_the_kits_files_then_the_services_in_order_each_with_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    found = migrations("svc", service_sql(tmp_path))
    kit = sorted(p.name for p in _KIT_MIGRATIONS.glob("*.sql"))
    assert [m.name for m in found] == [f"kit/{n}" for n in kit] + ["svc/001_first.sql", "svc/002_second.sql"]
    first = found[len(kit)]
    raw = (tmp_path / "migrations" / "001_first.sql").read_bytes()
    assert first.checksum == hashlib.sha256(raw).hexdigest()
    assert first.sql == raw.decode()


def test_only_an_applied_file_whose_checksum_differs_counts_as_changed(tmp_path: Path) -> None:
    files = {m.name: m for m in migrations("svc", service_sql(tmp_path))}
    applied = [
        Applied("svc/001_first.sql", AT, files["svc/001_first.sql"].checksum),  # as applied
        Applied("svc/002_second.sql", AT, "0" * 64),  # changed since
        Applied("svc/000_gone.sql", AT, "1" * 64),  # its file is gone: not "changed"
        Applied("kit/000_outbox_inbox.sql", AT, None),  # applied before checksums: filled in, never refused
    ]
    assert changed(applied, list(files.values())) == ["svc/002_second.sql"]


def test_the_refusal_names_each_changed_file_and_says_nothing_was_applied() -> None:
    message = str(MigrationChanged("notify", ["notify/003_cases.sql", "kit/001_access_log.sql"]))
    assert "notify/003_cases.sql" in message and "kit/001_access_log.sql" in message
    assert "nothing was applied" in message and "'notify'" in message


def test_migrate_has_a_status_option(capsys: pytest.CaptureFixture[str]) -> None:
    class Settings(ServiceSettings):
        service_name: str = "unit"
        db_schema: str = "unit"
        http_port: int = 8999

    with pytest.raises(SystemExit) as exit:
        service_main(Settings(), lambda _: None, Path("."), argv=["migrate", "--help"])  # type: ignore[arg-type, return-value]
    assert exit.value.code == 0
    assert "--status" in capsys.readouterr().out
