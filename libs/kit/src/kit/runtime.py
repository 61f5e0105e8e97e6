"""A service's running parts: the database pool, the Kafka broker, the outbox relay and the retention purge, started and
stopped together."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from aiokafka import TopicPartition
from aiokafka.errors import UnknownTopicOrPartitionError
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import LogicSubscriber
from schemas.topics import dlq_topic

from . import metrics
from .access_log import AccessLog
from .batches import Apply, subscribe_batch
from .db import create_pool
from .health import Dependency, summary
from .lanes import Record, adopt_offsets, subscribe_lanes
from .messaging import E, Handler, ensure_topics, flush_commits, make_broker, subscribe
from .outbox import OutboxRelay, outbox_state
from .retention import Purge, purge_all, standard_purges
from .settings import ServiceSettings
from .telemetry import untraced

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)


CHECK_TIMEOUT_SECONDS = 2.0


class ServiceRuntime:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.broker: KafkaBroker = make_broker(
            settings.kafka_bootstrap_servers, settings.service_name, settings.kafka_client_config()
        )
        self.relay = OutboxRelay(settings.database_url, settings.db_schema, self.broker)
        self._pool: asyncpg.Pool | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._sampler_task: asyncio.Task[None] | None = None
        self._purge_task: asyncio.Task[None] | None = None
        self._purges: list[Purge] = standard_purges(
            timedelta(hours=settings.outbox_retention_hours), timedelta(days=settings.inbox_retention_days)
        )
        self._topics: set[str] = set()
        self._adoptions: list[tuple[str, Mapping[str, str]]] = []  # groups to start where the groups they replace were
        self._produced: set[str] = set()
        self._consumers: list[tuple[str, str, LogicSubscriber[Any]]] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        # The access log's signed checkpoints, taken in the background (kit/access_log.py).
        self.access_log = AccessLog.for_service(settings)
        self._checkpoint_task: asyncio.Task[None] | None = None
        # Other services this one calls, found as the settings' `*_url` fields (ROUTING_URL, say).
        self._http: dict[str, tuple[str, bool]] = {
            name.removesuffix("_url"): (str(value), False)
            for name, value in settings.model_dump().items()
            if name.endswith("_url") and name != "database_url" and value
        }

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the service has not started")
        return self._pool

    def consume(
        self, topic: str | Sequence[str], group_id: str, accepts: tuple[type[E], ...], handle: Handler[E]
    ) -> None:
        """Subscribe before start(): one consumer for one topic or several; each topic and its DLQ are created at
        start, and each shows in the health report and in the lag metric."""
        topics = [topic] if isinstance(topic, str) else list(topic)
        self._topics |= set(topics) | {dlq_topic(t) for t in topics}
        subscriber = subscribe(
            self.broker, topic, group_id, accepts, handle, max_attempts=self.settings.handler_max_attempts
        )
        self._consumers.extend((group_id, t, subscriber) for t in topics)

    def consume_batch(
        self,
        topic: str | Sequence[str],
        group_id: str,
        accepts: tuple[type[E], ...],
        apply: Apply[E],
        *,
        inbox: str | None = None,
        wants: Callable[[E], bool] | None = None,
        checks_erasure: bool = False,
        gather_ms: int | None = None,
    ) -> None:
        """As `consume`, but the waiting records are handled in batches, in one transaction each: `apply(conn, event)`
        does all its work on `conn`, its inbox check included, under the consumer name `inbox`; the events `wants`
        says no to are passed over without any work; `checks_erasure`: `apply` asks `is_erased` about its event's
        case, so the batch asks for all its cases at once; `gather_ms`: each batch gathers what arrives in that long,
        for a consumer no one waits on (kit/batches.py)."""
        topics = [topic] if isinstance(topic, str) else list(topic)
        self._topics |= set(topics) | {dlq_topic(t) for t in topics}
        subscriber = subscribe_batch(
            self.broker,
            topic,
            group_id,
            accepts,
            apply,
            lambda: self.pool,
            max_records=self.settings.consumer_batch_max_records,
            max_attempts=self.settings.handler_max_attempts,
            inbox=inbox,
            wants=wants,
            checks_erasure=checks_erasure,
            gather_ms=gather_ms,
        )
        self._consumers.extend((group_id, t, subscriber) for t in topics)

    def consume_lanes(
        self,
        topics: Sequence[str],
        group_id: str,
        accepts: tuple[type[E], ...],
        handle: Handler[E],
        *,
        lane_of: Callable[[str], str] = lambda topic: topic,
        replaces: Mapping[str, str] | None = None,
        on_fetched: Callable[[Sequence[Record]], None] | None = None,
    ) -> None:
        """As `consume`, over many topics with one consumer, each topic's records in a lane of their own (`lane_of`
        may group topics into one lane): a handler that waits holds up only its lane (kit/lanes.py). `replaces`
        (topic -> the group that read it before) lets a new group start where the old ones left off; `on_fetched`
        sees each fetch's records before the lanes do."""
        if replaces:
            self._adoptions.append((group_id, replaces))
        self._topics |= set(topics) | {dlq_topic(t) for t in topics}
        subscriber = subscribe_lanes(
            self.broker,
            topics,
            group_id,
            accepts,
            handle,
            max_attempts=self.settings.handler_max_attempts,
            lane_of=lane_of,
            on_fetched=on_fetched,
        )
        self._consumers.extend((group_id, t, subscriber) for t in topics)

    def on_stop(self, close: Callable[[], Awaitable[None]]) -> None:
        """Something the service opened (an HTTP client, say) to close after consuming has stopped."""
        self._on_stop.append(close)

    def purge(self, *purges: Purge) -> None:
        """Rows of the service's own that no guarantee needs after a while, purged in the background with the
        outbox's and the inbox's (kit/retention.py)."""
        self._purges.extend(purges)

    def produces(self, *topics: str) -> None:
        self._topics |= set(topics)
        self._produced |= set(topics)

    def depends_on(self, name: str, url: str, *, required: bool = False) -> None:
        """An HTTP service this one calls, for the health report (those in the settings are found already)."""
        self._http[name] = (url, required)

    def instrument(self, app: "FastAPI") -> None:
        """Traces for the HTTP app, `/metrics`, and `/health` naming each dependency: one call in `main.py`."""
        from .observability import install_observability

        install_observability(app, self)

    async def start(self) -> None:
        """Wait for Kafka and PostgreSQL (they may still be starting), then connect and start consuming."""
        s = self.settings
        deadline = time.monotonic() + s.startup_timeout_seconds
        delay = 0.5
        while True:
            try:
                await ensure_topics(
                    s.kafka_bootstrap_servers,
                    self._topics,
                    s.topic_partitions,
                    s.topic_replication_factor,
                    s.kafka_client_config(),
                )
                for group_id, previous in self._adoptions:
                    await adopt_offsets(s.kafka_bootstrap_servers, group_id, previous, s.kafka_client_config())
                self._adoptions = []
                self._pool = self._pool or await create_pool(s.database_url, s.db_schema, s.db_pool_size)
                break
            except Exception as error:
                if time.monotonic() > deadline:
                    raise
                log.warning("dependencies not ready (%s); retrying in %.1fs", type(error).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        while True:
            try:
                await self.broker.start()
                break
            except UnknownTopicOrPartitionError:
                # Topics just created may not be in every broker's metadata yet (a loaded machine, a cluster).
                if time.monotonic() > deadline:
                    raise
                log.warning("topics not visible yet; starting the consumers again in %.1fs", delay)
                await self.broker.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._relay_task = asyncio.create_task(self.relay.run(), name="outbox-relay")
        self._sampler_task = asyncio.create_task(self._sample_metrics(), name="metrics-sampler")
        if self.access_log.keyed:  # without a key (no AUTH_SECRET either) nobody is let in to be logged
            self._checkpoint_task = asyncio.create_task(
                self.access_log.keep_checkpoints(self.pool, s.access_log_checkpoint_seconds),
                name="access-log-checkpoints",
            )
        self._purge_task = asyncio.create_task(self._purge_periodically(), name="retention-purge")

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """For FastAPI: the service runs between start() and stop()."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def stop(self) -> None:
        for task in (self._checkpoint_task, self._purge_task, self._sampler_task, self._relay_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await flush_commits(self.broker)
        await self.broker.stop()
        for close in self._on_stop:
            await close()
        if self._pool is not None:
            await self._pool.close()

    async def health(self) -> dict[str, str]:
        """Each dependency and whether it answers now, in short (`dependencies()` has the details)."""
        return summary(await self.dependencies())

    async def dependencies(self) -> list[Dependency]:
        """Every dependency, checked now (side by side, each within a couple of seconds)."""
        s = self.settings
        database = urlsplit(s.database_url)
        where = f"{database.hostname}:{database.port or 5432}{database.path}"
        checks = [
            self._check(Dependency("postgres", "postgresql", where, True), self._check_postgres),
            self._check(Dependency("kafka", "kafka", s.kafka_bootstrap_servers, True), self._check_kafka),
        ]
        for name, (url, required) in sorted(self._http.items()):
            parts = urlsplit(url)
            target = (
                f"{parts.scheme}://{parts.hostname}:{parts.port}"
                if parts.port
                else f"{parts.scheme}://{parts.hostname}"
            )
            checks.append(self._check(Dependency(name, "http", target, required), _http_checker(url)))
        return list(await asyncio.gather(*checks))

    def topology(self) -> dict[str, Any]:
        """The topics this service consumes (with its consumer groups) and produces."""
        return {
            "consumes": [{"topic": topic, "group": group} for group, topic, _ in self._consumers],
            "produces": sorted(self._produced),
        }

    @staticmethod
    async def _check(dependency: Dependency, probe: Callable[[Dependency], Awaitable[bool]]) -> Dependency:
        started = time.perf_counter()
        try:
            with untraced():
                dependency.reachable = await asyncio.wait_for(probe(dependency), CHECK_TIMEOUT_SECONDS)
        except Exception as error:
            dependency.reachable, dependency.error = False, type(error).__name__
        dependency.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        return dependency

    async def _check_postgres(self, dependency: Dependency) -> bool:
        backlog, oldest = await outbox_state(self.pool)
        dependency.detail = {"outbox_backlog": backlog, "outbox_oldest_unsent_seconds": round(oldest, 3)}
        return True

    async def _check_kafka(self, _: Dependency) -> bool:
        return bool(await self.broker.ping(timeout=CHECK_TIMEOUT_SECONDS))

    async def _sample_metrics(self) -> None:
        """Refresh the sampled gauges every few seconds, so that a scrape of `/metrics` never waits on Kafka."""
        while True:
            with contextlib.suppress(Exception):
                await self.refresh_metrics()
            await asyncio.sleep(self.settings.metrics_refresh_seconds)

    async def _purge_periodically(self) -> None:
        """Purge what the retention settings allow, now and every `purge_interval_seconds`; a round that finds the
        database away is skipped quietly."""
        while True:
            await purge_all(self.pool, self._purges)
            await asyncio.sleep(self.settings.purge_interval_seconds)

    async def refresh_metrics(self) -> None:
        """Bring the sampled gauges up to date: each dependency of the health report and the outbox backlog (read by
        the PostgreSQL check), and each consumer group's lag, all side by side, each within a couple of seconds (a
        slow consumer keeps its last value)."""

        async def dependencies() -> None:
            for d in await self.dependencies():
                metrics.DEPENDENCY_UP.labels(d.name, d.kind, str(d.required).lower()).set(1 if d.reachable else 0)
                if d.name == "postgres" and d.reachable:
                    metrics.OUTBOX_BACKLOG.set(d.detail["outbox_backlog"])
                    metrics.OUTBOX_OLDEST_SECONDS.set(d.detail["outbox_oldest_unsent_seconds"])

        async def lag(group: str, topics: list[str], subscriber: LogicSubscriber[Any]) -> None:
            per_topic = await asyncio.wait_for(_consumer_lag(subscriber), CHECK_TIMEOUT_SECONDS)
            if per_topic is not None:
                for topic in topics:
                    metrics.CONSUMER_LAG.labels(group, topic).set(per_topic.get(topic, 0))

        consumers: dict[int, tuple[str, list[str], LogicSubscriber[Any]]] = {}  # one subscriber may read several
        for group, topic, subscriber in self._consumers:
            consumers.setdefault(id(subscriber), (group, [], subscriber))[1].append(topic)
        with untraced():
            await asyncio.gather(dependencies(), *(lag(*c) for c in consumers.values()), return_exceptions=True)


def _http_checker(url: str) -> Callable[[Dependency], Awaitable[bool]]:
    async def probe(dependency: Dependency) -> bool:
        # Reachable means it answers at all; its own health is its own report.
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECONDS) as client:
            answer = await client.get(url.rstrip("/") + "/health")
        dependency.detail = {"status_code": answer.status_code}
        return True

    return probe


async def _consumer_lag(subscriber: LogicSubscriber[Any]) -> dict[str, int] | None:
    """Records not yet consumed, per topic, over the partitions assigned to this consumer.

    The end of each partition is the high watermark the consumer learnt with its last fetch (no request); only a
    partition not fetched yet costs one ListOffsets request."""
    consumer = subscriber.consumer
    if consumer is None:
        return None
    assigned: list[TopicPartition] = list(consumer.assignment())
    if not assigned:
        return {}
    ends: dict[TopicPartition, int | None] = {tp: consumer.highwater(tp) for tp in assigned}
    unknown = [tp for tp, end in ends.items() if end is None]
    if unknown:
        ends |= await consumer.end_offsets(unknown)
    lag: dict[str, int] = {}
    for tp in assigned:
        lag[tp.topic] = lag.get(tp.topic, 0) + max(int(ends[tp] or 0) - int(await consumer.position(tp)), 0)
    return lag
