"""PostgreSQL: a connection pool bound to the service's own schema, and the migrations command."""

import json
import logging
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


async def migrate(dsn: str, schema: str, directory: Path) -> list[str]:
    """Apply the kit's and then the service's `*.sql` files not yet applied, each in its own transaction."""
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        # One migrator at a time per schema, so replicas starting together do not race.
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        files = [("kit", p) for p in sorted(_KIT_MIGRATIONS.glob("*.sql"))]
        files += [(schema, p) for p in sorted(directory.glob("*.sql"))]
        for owner, path in files:
            name = f"{owner}/{path.name}"
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied_now.append(name)
            log.info("applied migration %s", name)
    finally:
        await conn.close()
    return applied_now
