"""Real servers for the integration tests: a PostgreSQL of a module's own (with a service's schema migrated — notify's,
or the one the module names in `SERVICE` — for the modules that test its storage and handlers) and a Kafka broker of a
module's own."""

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


@pytest.fixture(scope="module")
def service(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """The service whose schema a module's PostgreSQL holds: notify's, unless the module names another package in
    `SERVICE` (routing, say). Its schema's name and its migrations."""
    package = getattr(request.module, "SERVICE", notify)
    return package.__name__, Path(package.__file__).parent / "migrations"


@pytest.fixture(scope="module")
def postgres(service: tuple[str, Path]) -> Iterator[str]:
    """A server of the module's own, its service's migrations applied; its DSN."""
    schema, migrations = service
    with postgres_database(f"onestop-{schema}-", f"{schema}_check") as dsn:
        asyncio.run(migrate(dsn, schema, migrations))
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
async def pool(postgres: str, service: tuple[str, Path]) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(postgres, service[0], max_size=4)
    try:
        yield pool
    finally:
        await pool.close()
