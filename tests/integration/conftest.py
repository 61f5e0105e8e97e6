"""A real PostgreSQL with notify's schema migrated, for the modules that test notify's storage and handlers."""

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import notify
import pytest
from devstack import PostgresServer
from kit.db import create_pool, migrate

DATABASE = "notify_check"
MIGRATIONS = Path(notify.__file__).parent / "migrations"


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A server of the module's own, notify's migrations applied; its DSN."""
    # Not pytest's tmp_path: its parent is private to root, and PostgreSQL runs as its own user.
    state = Path(tempfile.mkdtemp(prefix="onestop-notify-"))
    state.chmod(0o755)
    server = PostgresServer(state, fast=True)
    try:
        server.start()
        server.wait_ready()
        server.create_database(DATABASE)
        asyncio.run(migrate(server.dsn(DATABASE), "notify", MIGRATIONS))
        yield server.dsn(DATABASE)
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
async def pool(postgres: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(postgres, "notify", max_size=4)
    try:
        yield pool
    finally:
        await pool.close()
