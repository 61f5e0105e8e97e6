"""Real servers for the integration tests: a PostgreSQL of a module's own (with notify's schema migrated, for the
modules that test notify's storage and handlers) and a Kafka broker of a module's own."""

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import notify
import pytest
from devstack import KafkaCluster
from kit.db import create_pool, migrate

from tests.integration.servers import postgres_database

DATABASE = "notify_check"
MIGRATIONS = Path(notify.__file__).parent / "migrations"


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A server of the module's own, notify's migrations applied; its DSN."""
    with postgres_database("onestop-notify-", DATABASE) as dsn:
        asyncio.run(migrate(dsn, "notify", MIGRATIONS))
        yield dsn


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaCluster]:
    """A one-node Kafka broker of the module's own."""
    state = Path(tempfile.mkdtemp(prefix="onestop-kafka-"))
    cluster = KafkaCluster(state)
    try:
        cluster.start()
        cluster.wait_ready(120)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
async def pool(postgres: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(postgres, "notify", max_size=4)
    try:
        yield pool
    finally:
        await pool.close()
