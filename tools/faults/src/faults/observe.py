"""Reading outcomes from the outside only: the topics (a fresh reader of our own), the agencies' own record
(the simulator's `GET /received`), notify's timeline API, each service's `/health`, and Kafka's consumer groups.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from devstack import kafka_admin

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Record:
    """One record as read back: where it is, its key and headers, and its value parsed as JSON when it is."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    size: int
    event: dict[str, Any] | None  # None: not a JSON object (poison, or a DLQ copy of poison)
    raw: bytes | None = None  # kept for re-sending, only on topics the replay scenario re-sends

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None

    @property
    def dlq_source(self) -> tuple[str, int, int] | None:
        """For a DLQ copy, where the original was (its dlq.source.* headers); None when they are missing or wrong."""
        topic, partition, offset = (self.header(f"dlq.source.{part}") for part in ("topic", "partition", "offset"))
        try:
            return (topic, int(partition), int(offset)) if topic and partition and offset else None
        except ValueError:
            return None


def _parse(value: bytes | None) -> dict[str, Any] | None:
    if not value or len(value) > 64 * 1024:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class TopicTail:
    """Follows every non-internal topic from its beginning with a reader of its own (no group, commits nothing),
    keeping what it read in memory. Topics created later are picked up; a broker outage only pauses it."""

    def __init__(self, bootstrap_servers: str, keep_raw: bool = True) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.keep_raw = keep_raw
        self.records: dict[str, list[Record]] = defaultdict(list)
        self._next: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._refreshed = 0.0

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
            request_timeout_ms=15000,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow(), name="topic-tail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                if time.monotonic() - self._refreshed > 5:
                    await self._assign_all(consumer)
                batch = await consumer.getmany(timeout_ms=500, max_records=10000)
                for tp, records in batch.items():
                    for r in records:
                        self._keep(tp, r)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the broker is down or electing leaders: try again shortly
                log.debug("topic tail paused: %s", type(error).__name__)
                await asyncio.sleep(1)

    def _keep(self, tp: TopicPartition, r: "ConsumerRecord[bytes, bytes]") -> None:
        if r.offset < self._next.get(tp, 0):
            return  # read again after a re-assignment
        self._next[tp] = r.offset + 1
        value = r.value
        self.records[r.topic].append(
            Record(
                topic=r.topic,
                partition=r.partition,
                offset=r.offset,
                key=r.key,
                headers=tuple(r.headers or ()),
                size=len(value) if value is not None else 0,
                event=_parse(value),
                raw=value if self.keep_raw and not r.topic.endswith(DLQ_SUFFIX) else None,
            )
        )

    async def _assign_all(self, consumer: AIOKafkaConsumer) -> None:
        await consumer._client.force_metadata_update()
        topics = {t for t in await consumer.topics() if not kafka_admin.is_internal(t)}
        wanted = {TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()}
        self._refreshed = time.monotonic()
        if wanted == set(consumer.assignment()):
            return
        consumer.assign(sorted(wanted))
        for tp in wanted:
            if tp in self._next:
                consumer.seek(tp, self._next[tp])
            else:
                await consumer.seek_to_beginning(tp)

    async def caught_up(self) -> bool:
        """Whether everything written so far on every topic has been read."""
        try:
            parts = await kafka_admin.partitions(self.bootstrap_servers)
            ends = await kafka_admin.end_offsets(
                self.bootstrap_servers, [TopicPartition(p.topic, p.partition) for p in parts]
            )
        except Exception:
            return False
        return all(self._next.get(tp, 0) >= end for tp, end in ends.items() if end > 0)

    def events(self, topic: str) -> list[Record]:
        return [r for r in self.records.get(topic, []) if r.event is not None]

    def dead_letters(self) -> list[Record]:
        return [r for topic, records in self.records.items() if topic.endswith(DLQ_SUFFIX) for r in records]


@dataclass
class GroupLag:
    group_id: str
    state: str
    lag: dict[str, int] = field(default_factory=dict)  # "topic/partition" → records not yet committed

    @property
    def total(self) -> int:
        return sum(self.lag.values())


async def group_lags(bootstrap_servers: str) -> list[GroupLag]:
    """Each consumer group's lag on every partition of the topics it reads (subscribed or committed)."""
    groups = await kafka_admin.consumer_groups(bootstrap_servers)
    topics = {t for g in groups for t in g.topics} | {tp.topic for g in groups for tp in g.committed}
    parts = [TopicPartition(p.topic, p.partition) for p in await kafka_admin.partitions(bootstrap_servers, topics)]
    ends = await kafka_admin.end_offsets(bootstrap_servers, parts)
    starts = await kafka_admin.beginning_offsets(bootstrap_servers, parts)
    lags = []
    for g in groups:
        read = set(g.topics) | {tp.topic for tp in g.committed}
        lag = {
            f"{tp.topic}/{tp.partition}": end - g.committed.get(tp, starts.get(tp, 0))
            for tp, end in ends.items()
            if tp.topic in read
        }
        lags.append(GroupLag(g.group_id, g.state, {k: v for k, v in lag.items() if v > 0}))
    return lags


async def settled_lags(bootstrap_servers: str, patience: float = 30.0, most: float = 180.0) -> list[GroupLag]:
    """The groups' lags once nothing is behind, or once what is behind has stopped moving for `patience` seconds (a
    stalled partition); at most `most` seconds. A single look can catch a record published a moment before (a timer
    firing, a retry coming due) and call its partition stalled."""
    began = still_since = time.monotonic()
    last: dict[tuple[str, str], int] | None = None
    while True:
        lags = await group_lags(bootstrap_servers)
        behind = {(g.group_id, tp): n for g in lags for tp, n in g.lag.items()}
        now = time.monotonic()
        if not behind:
            return lags
        if behind != last:
            last, still_since = behind, now
        elif now - still_since >= patience or now - began >= most:
            return lags
        await asyncio.sleep(2.0)


async def simulator_record(client: httpx.AsyncClient, simulator_url: str) -> list[dict[str, Any]]:
    """The agencies' own record: one entry per (agency, idempotency key) with deliveries, duplicates, decision, ack."""
    answer = await client.get(f"{simulator_url}/received", timeout=60.0)
    answer.raise_for_status()
    referrals: list[dict[str, Any]] = answer.json()["referrals"]
    return referrals


async def outbox_backlog(client: httpx.AsyncClient, service_url: str) -> int | None:
    """The service's unpublished outbox rows from its `/health`; None when it does not answer or does not say."""
    try:
        answer = await client.get(f"{service_url}/health", timeout=5.0)
        checks = answer.json().get("checks", {})
    except (httpx.HTTPError, ValueError):
        return None
    backlog = checks.get("outbox_backlog")
    return int(backlog) if backlog is not None else None


async def timeline(client: httpx.AsyncClient, notify_url: str, case_id: str) -> list[dict[str, Any]]:
    """The case's timeline from notify's API ([] while it has none)."""
    answer = await client.get(f"{notify_url}/cases/{case_id}/timeline", timeout=15.0)
    if answer.status_code != 200:
        return []
    events: list[dict[str, Any]] = answer.json()["events"]
    return events
