"""PostgreSQL: a connection pool bound to the service's own schema, and the migrations command."""

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

_KIT_MIGRATIONS = Path(__file__).parent / "sql"

# Errors that mean "the database cannot be reached right now", as opposed to a bad statement.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, schema: str, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings={"search_path": schema, "application_name": schema},
        command_timeout=30,
    )
    assert pool is not None
    return pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip the reset query at each release (a round trip per transaction): pool connections hold no session state.

    asyncpg still rolls back a transaction left open before calling this.
    """


async def connect(dsn: str, schema: str) -> asyncpg.Connection:
    """One connection outside the pool (the outbox relay's), set up like the pool's."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema, "application_name": f"{schema}-relay"})
    await _init_connection(conn)
    return conn


@dataclass(frozen=True)
class Migration:
    """One SQL file: its name in `schema_migrations` (`kit/000_outbox_inbox.sql`, `notify/003_cases.sql`), its text and
    the sha256 of its bytes."""

    name: str
    sql: str
    checksum: str


@dataclass(frozen=True)
class Applied:
    name: str
    applied_at: datetime
    checksum: str | None  # None: applied by a migrator that recorded no checksum (filled at the next migrate)


class MigrationChanged(Exception):
    """An applied migration's file is no longer what was applied: nothing is applied until it is restored."""

    def __init__(self, schema: str, changed: list[str]) -> None:
        self.changed = changed
        super().__init__(
            f"schema {schema!r}: {', '.join(changed)} changed after being applied (its sha256 differs from the one"
            " recorded); nothing was applied. Restore the file as it was and put the change in a new migration."
        )


def migrations(schema: str, directory: Path) -> list[Migration]:
    """The kit's and then the service's `*.sql` files, in the order they are applied."""
    files = [("kit", p) for p in sorted(_KIT_MIGRATIONS.glob("*.sql"))]
    files += [(schema, p) for p in sorted(directory.glob("*.sql"))]
    found = []
    for owner, path in files:
        data = path.read_bytes()
        found.append(Migration(f"{owner}/{path.name}", data.decode("utf-8"), hashlib.sha256(data).hexdigest()))
    return found


def changed(applied: list[Applied], files: list[Migration]) -> list[str]:
    """The applied migrations whose file is there but differs from what was applied (by the checksum recorded)."""
    checksums = {m.name: m.checksum for m in files}
    return [
        a.name for a in applied if a.checksum is not None and a.name in checksums and checksums[a.name] != a.checksum
    ]


async def applied_migrations(conn: asyncpg.Connection, schema: str) -> list[Applied]:
    """What `schema_migrations` records, in the order applied; nothing when the schema was never migrated. Reads a
    table made before checksums were recorded as well (its rows have none)."""
    table = f'"{schema}".schema_migrations'
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return []
    rows = await conn.fetch(
        f"SELECT name, applied_at, to_jsonb(m) ->> 'checksum' AS checksum FROM {table} m ORDER BY applied_at, name"
    )
    return [Applied(r["name"], r["applied_at"], r["checksum"]) for r in rows]


async def migrate(dsn: str, schema: str, directory: Path) -> list[str]:
    """Apply the kit's and then the service's `*.sql` files not yet applied, each in its own transaction, recording
    each one's sha256. Refuses (`MigrationChanged`, nothing applied) when an applied file has changed since; the rows
    of a schema migrated before checksums were recorded get their files' checksums the first time."""
    files = migrations(schema, directory)
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        # One migrator at a time per schema, so replicas starting together do not race.
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}")
        # Created only when missing: CREATE SCHEMA asks for the right to create schemas in the database even when the
        # schema exists, and a role that owns just its own schema (deploy/kubernetes) has no such right.
        if not await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), checksum text)"
        )
        # Nullable, so that a migrator of the version before can still record what it applies.
        await conn.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text")
        applied = await applied_migrations(conn, schema)
        if altered := changed(applied, files):
            raise MigrationChanged(schema, altered)
        done = {a.name for a in applied}
        unrecorded = {a.name for a in applied if a.checksum is None}
        for migration in files:
            if migration.name in unrecorded:
                await conn.execute(
                    "UPDATE schema_migrations SET checksum = $2 WHERE name = $1 AND checksum IS NULL",
                    migration.name,
                    migration.checksum,
                )
                log.info("recorded the checksum of migration %s, applied before checksums were", migration.name)
            if migration.name in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", migration.name, migration.checksum
                )
            applied_now.append(migration.name)
            log.info("applied migration %s", migration.name)
    finally:
        await conn.close()
    return applied_now


@dataclass(frozen=True)
class MigrationStatus:
    applied: list[Applied]  # in the order applied
    pending: list[Migration]  # in the order they would be applied
    changed: list[str]  # applied, and the file differs since: `migrate` refuses
    missing: list[str]  # applied, and no file of that name any more


async def migration_status(dsn: str, schema: str, directory: Path) -> MigrationStatus:
    """What was applied (with when) and what is pending, read without changing anything."""
    files = migrations(schema, directory)
    conn = await asyncpg.connect(dsn)
    try:
        applied = await applied_migrations(conn, schema)
    finally:
        await conn.close()
    done, present = {a.name for a in applied}, {m.name for m in files}
    return MigrationStatus(
        applied,
        [m for m in files if m.name not in done],
        changed(applied, files),
        [a.name for a in applied if a.name not in present],
    )
