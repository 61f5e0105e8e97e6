"""A service's running parts: the database pool, the Kafka broker and the outbox relay, started and stopped together."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
from faststream.kafka import KafkaBroker
from schemas.topics import dlq_topic

from .db import create_pool
from .messaging import E, Handler, ensure_topics, make_broker, subscribe
from .outbox import OutboxRelay, outbox_backlog
from .settings import ServiceSettings

log = logging.getLogger(__name__)


class ServiceRuntime:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.broker: KafkaBroker = make_broker(settings.kafka_bootstrap_servers, settings.service_name)
        self.relay = OutboxRelay(settings.database_url, settings.db_schema, self.broker)
        self._pool: asyncpg.Pool | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._topics: set[str] = set()
        self._on_stop: list[Callable[[], Awaitable[None]]] = []

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the service has not started")
        return self._pool

    def consume(self, topic: str, group_id: str, accepts: tuple[type[E], ...], handle: Handler[E]) -> None:
        """Subscribe before start(); the topic and its DLQ are created at start."""
        self._topics |= {topic, dlq_topic(topic)}
        subscribe(self.broker, topic, group_id, accepts, handle)

    def on_stop(self, close: Callable[[], Awaitable[None]]) -> None:
        """Something the service opened (an HTTP client, say) to close after consuming has stopped."""
        self._on_stop.append(close)

    def produces(self, *topics: str) -> None:
        self._topics |= set(topics)

    async def start(self) -> None:
        """Wait for Kafka and PostgreSQL (they may still be starting), then connect and start consuming."""
        s = self.settings
        deadline = time.monotonic() + s.startup_timeout_seconds
        delay = 0.5
        while True:
            try:
                await ensure_topics(
                    s.kafka_bootstrap_servers, self._topics, s.topic_partitions, s.topic_replication_factor
                )
                self._pool = self._pool or await create_pool(s.database_url, s.db_schema, s.db_pool_size)
                break
            except Exception as error:
                if time.monotonic() > deadline:
                    raise
                log.warning("dependencies not ready (%s); retrying in %.1fs", type(error).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        await self.broker.start()
        self._relay_task = asyncio.create_task(self.relay.run(), name="outbox-relay")

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """For FastAPI: the service runs between start() and stop()."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def stop(self) -> None:
        if self._relay_task is not None:
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay_task
        await self.broker.stop()
        for close in self._on_stop:
            await close()
        if self._pool is not None:
            await self._pool.close()

    async def health(self) -> dict[str, str]:
        """Each dependency and whether it answers now."""
        checks: dict[str, str] = {}
        try:
            backlog = await asyncio.wait_for(outbox_backlog(self.pool), 2)
            checks["postgres"] = "ok"
            checks["outbox_backlog"] = str(backlog)
        except Exception as error:
            checks["postgres"] = f"unreachable ({type(error).__name__})"
        checks["kafka"] = "ok" if await self.broker.ping(timeout=2) else "unreachable"
        return checks
