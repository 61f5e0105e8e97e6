"""Migrations on a real PostgreSQL: each applied file's sha256 recorded; a schema migrated before checksums were
recorded gets them the first time, not a failure; a changed applied file is refused, naming it, with nothing applied;
`migrate --status` lists what is applied (with when) and pending."""

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import pytest
from kit.cli import service_main
from kit.db import _KIT_MIGRATIONS, MigrationChanged, migrate, migration_status
from kit.settings import ServiceSettings

from tests.integration.servers import postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

KIT = [f"kit/{p.name}" for p in sorted(_KIT_MIGRATIONS.glob("*.sql"))]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with postgres_database("onestop-migrations-", "migrations_check") as dsn:
        yield dsn


@pytest.fixture
def schema() -> str:
    return f"m_{uuid4().hex[:10]}"


@pytest.fixture
def sql(tmp_path: Path) -> Path:
    """A service's migrations folder with two files."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "001_letters.sql").write_text("CREATE TABLE letters (id int PRIMARY KEY);\n")
    (directory / "002_stamps.sql").write_text("ALTER TABLE letters ADD COLUMN stamp text;\n")
    return directory


async def recorded(dsn: str, schema: str) -> dict[str, str | None]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f'SELECT name, checksum FROM "{schema}".schema_migrations')
    finally:
        await conn.close()
    return {r["name"]: r["checksum"] for r in rows}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_each_applied_migration_is_recorded_with_the_sha256_of_its_file(
    server: str, schema: str, sql: Path
) -> None:
    assert await migrate(server, schema, sql) == [*KIT, f"{schema}/001_letters.sql", f"{schema}/002_stamps.sql"]
    checksums = await recorded(server, schema)
    assert checksums[f"{schema}/002_stamps.sql"] == sha256(sql / "002_stamps.sql")
    assert checksums[KIT[0]] == sha256(_KIT_MIGRATIONS / KIT[0].removeprefix("kit/"))
    assert None not in checksums.values()
    assert await migrate(server, schema, sql) == []  # again: nothing to do, nothing refused


async def test_a_schema_migrated_before_checksums_gets_them_the_first_time(server: str, schema: str, sql: Path) -> None:
    """As the migrator before this one left it: no checksum column, the kit's files and the first of the service's
    applied. The next migrate fills every checksum and applies the rest; a changed file is caught from then on."""
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        earlier = [(n, _KIT_MIGRATIONS / n.removeprefix("kit/")) for n in KIT]
        for name, path in [*earlier, (f"{schema}/001_letters.sql", sql / "001_letters.sql")]:
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
    finally:
        await conn.close()
    before = await migration_status(server, schema, sql)
    assert [m.name for m in before.pending] == [f"{schema}/002_stamps.sql"]
    assert {a.checksum for a in before.applied} == {None} and before.changed == []

    assert await migrate(server, schema, sql) == [f"{schema}/002_stamps.sql"]
    checksums = await recorded(server, schema)
    assert checksums[f"{schema}/001_letters.sql"] == sha256(sql / "001_letters.sql")
    assert None not in checksums.values()

    (sql / "001_letters.sql").write_text("CREATE TABLE letters (id bigint PRIMARY KEY);\n")
    with pytest.raises(MigrationChanged, match=f"{schema}/001_letters.sql"):
        await migrate(server, schema, sql)


async def test_a_changed_applied_migration_is_refused_and_nothing_is_applied(
    server: str, schema: str, sql: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate(server, schema, sql)
    (sql / "002_stamps.sql").write_text("ALTER TABLE letters ADD COLUMN stamp text NOT NULL;\n")  # edited in place
    (sql / "003_postmarks.sql").write_text("CREATE TABLE postmarks (id int);\n")  # and a new one waiting
    with pytest.raises(MigrationChanged) as refused:
        await migrate(server, schema, sql)
    assert refused.value.changed == [f"{schema}/002_stamps.sql"]
    assert f"{schema}/003_postmarks.sql" not in await recorded(server, schema)
    conn = await asyncpg.connect(server)
    try:
        assert await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".postmarks') is None
    finally:
        await conn.close()

    settings = settings_for(server, schema)
    assert await cli(settings, sql, "migrate") == 1
    err = capsys.readouterr().err
    assert f"{schema}/002_stamps.sql" in err and "nothing was applied" in err and "Traceback" not in err

    assert await cli(settings, sql, "migrate", "--status") == 1
    out = capsys.readouterr().out
    assert f"{schema}/002_stamps.sql  CHANGED since applied" in out

    (sql / "002_stamps.sql").write_text("ALTER TABLE letters ADD COLUMN stamp text;\n")  # restored: goes on
    assert await migrate(server, schema, sql) == [f"{schema}/003_postmarks.sql"]


async def test_status_lists_what_is_applied_with_when_and_what_is_pending(
    server: str, schema: str, sql: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(server, schema)
    assert await cli(settings, sql, "migrate", "--status") == 0
    out = capsys.readouterr().out
    assert f"0 applied, {len(KIT) + 2} pending" in out
    conn = await asyncpg.connect(server)
    try:  # --status changed nothing: not even the schema was made
        assert await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema) is None
    finally:
        await conn.close()

    (sql / "002_stamps.sql").rename(sql / "002_stamps.later")
    await migrate(server, schema, sql)
    (sql / "002_stamps.later").rename(sql / "002_stamps.sql")
    assert await cli(settings, sql, "migrate", "--status") == 0
    lines = capsys.readouterr().out.splitlines()
    applied = [line.split() for line in lines if line.strip().startswith("applied ")]
    pending = [line.split() for line in lines if line.strip().startswith("pending ")]
    assert [a[2] for a in applied] == [*KIT, f"{schema}/001_letters.sql"]
    assert all(a[1][:4].isdigit() and "T" in a[1] for a in applied)  # when, as an ISO timestamp
    assert [p[1] for p in pending] == [f"{schema}/002_stamps.sql"]
    assert lines[-1] == f"{len(KIT) + 1} applied, 1 pending"


async def cli(settings: ServiceSettings, sql: Path, *argv: str) -> int | str | None:
    """`python -m <service> <argv>` in a thread (it runs its own event loop); its exit status."""
    with pytest.raises(SystemExit) as exit:
        await asyncio.to_thread(service_main, settings, lambda _: None, sql, argv=argv)  # type: ignore[arg-type]
    return exit.value.code


def settings_for(dsn: str, schema: str) -> ServiceSettings:
    class Settings(ServiceSettings):
        service_name: str = "letters"
        db_schema: str = schema
        http_port: int = 8999
        database_url: str = dsn

    return Settings()


async def test_a_role_owning_only_its_schema_migrates_it_and_can_create_no_other(
    server: str, schema: str, sql: Path
) -> None:
    """As on Kubernetes (deploy/kubernetes, CloudNativePG): the service's role owns its schema, made beforehand, and
    has no right to create a schema in the database."""
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f"CREATE ROLE \"{schema}\" LOGIN PASSWORD 'test-only-password'")
        await admin.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{schema}"')
        assert not await admin.fetchval("SELECT has_database_privilege($1, current_database(), 'CREATE')", schema)
    finally:
        await admin.close()
    own = urlsplit(server)._replace(
        netloc=f"{schema}:test-only-password@{urlsplit(server).hostname}:{urlsplit(server).port}"
    )
    dsn = urlunsplit(own)
    assert await migrate(dsn, schema, sql) == [*KIT, f"{schema}/001_letters.sql", f"{schema}/002_stamps.sql"]
    assert await migrate(dsn, schema, sql) == []
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await migrate(dsn, f"{schema}_other", sql)
