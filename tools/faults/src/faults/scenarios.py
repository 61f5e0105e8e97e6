"""The faults: each scenario injects its own while the load runs, and notes when each fault began and ended.

Stopping and starting processes blocks (health checks, pg_ctl, JVM start-up), so it runs in a worker thread
while the load and the topic reader go on in the event loop.
"""

import asyncio
import json
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from devstack import kafka_admin
from devstack.stack import Stack

from faults.load import Load
from faults.observe import DLQ_SUFFIX, Record, TopicTail

# The processes a fault may kill: the services, never the simulator (it is the agencies' record we read).
SERVICES = ("intake", "routing", "agency-gateway", "notify")
# The broker's default message.max.bytes: an "oversized" record is as large as the broker still accepts.
BROKER_MAX_MESSAGE_BYTES = 1048588
POISON_MARK = "faults-poison"


@dataclass
class Fault:
    kind: str
    target: str
    started: float  # monotonic seconds
    ended: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Options:
    interval: float = 4.0  # pause between faults
    min_faults: int = 3  # at least this many, even once the load has ended
    down_seconds: float = 4.0  # how long PostgreSQL or a broker stays down
    max_faults: int | None = None  # stop after this many, even while the load goes on
    ready_timeout: float = 180.0
    poll_seconds: float = 3.0  # how often the drain is checked
    replay_records: int = 30  # per topic family, each sent twice


@dataclass
class Context:
    stack: Stack
    load: Load
    tail: TopicTail
    options: Options
    rng: random.Random
    faults: list[Fault] = field(default_factory=list)
    down_windows: list[tuple[float, float]] = field(default_factory=list)  # PostgreSQL certainly down
    poison: list["Poison"] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def more_faults(self, done: int) -> bool:
        if self.options.max_faults is not None and done >= self.options.max_faults:
            return False
        return not self.load.finished.is_set() or done < self.options.min_faults

    async def blocking(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(call, *args)


@dataclass(frozen=True)
class Poison:
    key: str
    topic: str
    partition: int
    kind: str  # garbage, unknown-version, oversized
    size: int
    groups: tuple[str, ...]  # the consumer groups reading the topic: each should dead-letter it once


class Scenario:
    name: ClassVar[str]
    number: ClassVar[int]
    title: ClassVar[str]
    kafka_nodes: ClassVar[int] = 1

    async def inject(self, ctx: Context) -> None:
        raise NotImplementedError


class KillServices(Scenario):
    name, number, title = "kill-services", 1, "SIGKILL a random service every few seconds, restart it"

    async def inject(self, ctx: Context) -> None:
        done = 0
        while ctx.more_faults(done):
            await asyncio.sleep(ctx.options.interval)
            name = ctx.rng.choice([s for s in SERVICES if s in ctx.stack.processes])
            process = ctx.stack.processes[name]
            started = time.monotonic()
            await ctx.blocking(process.kill)
            killed = time.monotonic()
            await ctx.blocking(process.start)
            await ctx.blocking(process.wait_ready, ctx.options.ready_timeout)
            ctx.faults.append(
                Fault("SIGKILL", name, started, time.monotonic(), {"back_after_s": round(time.monotonic() - killed, 1)})
            )
            done += 1


class RestartPostgres(Scenario):
    name, number, title = "postgres", 2, "PostgreSQL stopped at once (no checkpoint), restarted"

    async def inject(self, ctx: Context) -> None:
        done = 0
        postgres = ctx.stack.postgres
        while ctx.more_faults(done):
            await asyncio.sleep(ctx.options.interval)
            started = time.monotonic()
            await ctx.blocking(postgres.kill)
            down_from = time.monotonic()
            await asyncio.sleep(ctx.options.down_seconds)
            down_until = time.monotonic()
            await ctx.blocking(postgres.start)
            await ctx.blocking(postgres.wait_ready, ctx.options.ready_timeout)
            ctx.down_windows.append((down_from, down_until))
            ctx.faults.append(
                Fault(
                    "pg_ctl stop -m immediate",
                    "postgres",
                    started,
                    time.monotonic(),
                    {"down_s": ctx.options.down_seconds},
                )
            )
            done += 1


class RestartKafka(Scenario):
    name, number, title = "kafka", 3, "the Kafka broker killed (SIGKILL) and restarted"

    async def inject(self, ctx: Context) -> None:
        done = 0
        kafka = ctx.stack.kafka
        while ctx.more_faults(done):
            await asyncio.sleep(ctx.options.interval)
            node = ctx.rng.randrange(kafka.size)
            started = time.monotonic()
            await ctx.blocking(kafka.kill, node)
            await asyncio.sleep(ctx.options.down_seconds)
            await ctx.blocking(kafka.restart, node)
            await ctx.blocking(kafka.wait_ready, ctx.options.ready_timeout)
            ctx.faults.append(Fault("SIGKILL", f"kafka node {node}", started, time.monotonic()))
            done += 1


class KillPartitionLeader(Scenario):
    name, number, title = "kafka-leader", 4, "3 brokers (RF 3, min ISR 2): kill -9 the busiest partition's leader"
    kafka_nodes = 3
    kills = 5

    async def inject(self, ctx: Context) -> None:
        kafka = ctx.stack.kafka
        bootstrap = kafka.bootstrap_servers
        replicas = {len(p.replicas) for p in await kafka_admin.partitions(bootstrap, include_internal=True)}
        ctx.notes["replicas_per_partition"] = sorted(replicas)
        before = await _data_offsets(bootstrap)
        for _ in range(self.kills):
            await asyncio.sleep(ctx.options.interval)
            now = await _data_offsets(bootstrap)
            growth = {tp: end - before.get(tp, 0) for tp, end in now.items()}
            busiest = max(growth, key=lambda tp: (growth[tp], now[tp]))
            before = now
            node = await ctx.blocking(kafka.leader_index, busiest.topic, busiest.partition)
            started = time.monotonic()
            await ctx.blocking(kafka.kill, node)
            await asyncio.sleep(ctx.options.down_seconds)
            await ctx.blocking(kafka.restart, node)
            await ctx.blocking(kafka.wait_ready, ctx.options.ready_timeout)
            await ctx.blocking(kafka.wait_fully_replicated, ctx.options.ready_timeout)
            ctx.faults.append(
                Fault(
                    "SIGKILL leader",
                    f"kafka node {node} (broker {node + 1})",
                    started,
                    time.monotonic(),
                    {"partition": f"{busiest.topic}/{busiest.partition}", "records_since_last": growth[busiest]},
                )
            )


async def _data_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    parts = await kafka_admin.partitions(bootstrap)
    return await kafka_admin.end_offsets(
        bootstrap, [TopicPartition(p.topic, p.partition) for p in parts if not p.topic.endswith(DLQ_SUFFIX)]
    )


class Replay(Scenario):
    name, number, title = "replay", 5, "consumer groups reset to the start; the same events sent twice"

    async def inject(self, ctx: Context) -> None:
        """As an operator would: stop the consumers, reset their groups to the earliest offsets, start them again;
        then send records already on the topics once more, twice each. Repeated while the load goes on."""
        cycles = 0
        while ctx.more_faults(cycles):
            await asyncio.sleep(ctx.options.interval)
            await self._reset_groups(ctx)
            await asyncio.sleep(ctx.options.interval)
            started = time.monotonic()
            sent = await _send_twice(ctx, ctx.stack.kafka.bootstrap_servers)
            ctx.faults.append(Fault("same events sent twice", "topics", started, time.monotonic(), sent))
            cycles += 1

    async def _reset_groups(self, ctx: Context) -> None:
        bootstrap = ctx.stack.kafka.bootstrap_servers
        names = [s for s in SERVICES if s != "intake" and s in ctx.stack.processes]
        groups = [g for g in await kafka_admin.consumer_groups(bootstrap) if set(names) & set(g.client_ids)]
        processes = [ctx.stack.processes[name] for name in names]
        started = time.monotonic()
        await asyncio.gather(*(ctx.blocking(p.stop) for p in processes))
        again = 0
        for group in groups:
            topics = set(group.topics) | {tp.topic for tp in group.committed}
            offsets = await kafka_admin.reset_group_to_earliest(bootstrap, group.group_id, topics)
            again += sum(max(0, group.committed.get(tp, 0) - offset) for tp, offset in offsets.items())
        await asyncio.gather(*(ctx.blocking(p.start) for p in processes))
        await asyncio.gather(*(ctx.blocking(p.wait_ready, ctx.options.ready_timeout) for p in processes))
        ctx.faults.append(
            Fault(
                "consumer groups reset to earliest",
                ", ".join(names),
                started,
                time.monotonic(),
                {"groups": len(groups), "records_to_read_again": again},
            )
        )


async def _send_twice(ctx: Context, bootstrap: str) -> dict[str, Any]:
    """Re-send records read back from the topics, verbatim (key, value, headers), twice each."""
    families: dict[str, list[Record]] = defaultdict(list)
    for topic, records in list(ctx.tail.records.items()):
        if topic.endswith(DLQ_SUFFIX):
            continue
        family = "referrals.*" if topic.startswith("referrals.") else topic
        families[family].extend(r for r in records if r.raw is not None and r.event is not None and not _is_poison(r))
    chosen = {
        family: ctx.rng.sample(records, min(len(records), ctx.options.replay_records))
        for family, records in families.items()
    }
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for records in chosen.values():
            for record in records:
                for _ in range(2):
                    await producer.send_and_wait(record.topic, record.raw, key=record.key, headers=list(record.headers))
    finally:
        await producer.stop()
    return {f"{family}": len(records) for family, records in chosen.items()} | {"copies_each": 2}


class PoisonRecords(Scenario):
    name, number, title = "poison", 6, "garbage, unknown version and oversized records on every topic"

    async def inject(self, ctx: Context) -> None:
        await asyncio.sleep(ctx.options.interval)
        bootstrap = ctx.stack.kafka.bootstrap_servers
        readers: dict[str, set[str]] = defaultdict(set)
        for group in await kafka_admin.consumer_groups(bootstrap):
            for topic in set(group.topics) | {tp.topic for tp in group.committed}:
                readers[topic].add(group.group_id)
        parts = [p for p in await kafka_admin.partitions(bootstrap) if not p.topic.endswith(DLQ_SUFFIX)]
        by_topic: dict[str, list[int]] = defaultdict(list)
        for p in parts:
            by_topic[p.topic].append(p.partition)
        run = uuid.uuid4().hex[:8]
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", max_request_size=2 * BROKER_MAX_MESSAGE_BYTES
        )
        await producer.start()
        started = time.monotonic()
        try:
            for n, (topic, partitions) in enumerate(sorted(by_topic.items())):
                groups = tuple(sorted(readers.get(topic, ())))
                for partition in partitions:
                    for kind in ("garbage", "unknown-version"):
                        key = f"{POISON_MARK}:{run}:{topic}:{partition}:{kind}"
                        value = _poison_value(kind, topic)
                        await producer.send_and_wait(topic, value, key=key.encode(), partition=partition)
                        ctx.poison.append(Poison(key, topic, partition, kind, len(value), groups))
                partition = partitions[n % len(partitions)]
                key = f"{POISON_MARK}:{run}:{topic}:{partition}:oversized"
                size = await _send_oversized(producer, topic, partition, key.encode())
                ctx.poison.append(Poison(key, topic, partition, "oversized", size, groups))
        finally:
            await producer.stop()
        ctx.faults.append(
            Fault(
                "poison records",
                f"{len(by_topic)} topics",
                started,
                time.monotonic(),
                {
                    "records": len(ctx.poison),
                    "topics_without_consumer": sorted(t for t in by_topic if t not in readers),
                },
            )
        )


def _is_poison(record: Record) -> bool:
    return (record.key or b"").startswith(POISON_MARK.encode())


def _poison_value(kind: str, topic: str) -> bytes:
    if kind == "garbage":
        return b"\x00\xff\xfe garbage, not JSON \x80\x81" + uuid.uuid4().bytes
    # A well-formed envelope of a version no contract has.
    return json.dumps(
        {
            "type": "case.submitted" if topic == "case.submitted" else "referral.requested",
            "version": 99,
            "event_id": str(uuid.uuid4()),
            "case_id": str(uuid.uuid4()),
            "occurred_at": "2024-07-22T00:00:00Z",
            "producer": "faults",
        }
    ).encode()


async def _send_oversized(producer: AIOKafkaProducer, topic: str, partition: int, key: bytes) -> int:
    """A JSON record as large as the broker accepts (just under message.max.bytes); returns its size."""
    size = BROKER_MAX_MESSAGE_BYTES - 400
    while True:
        head = b'{"type": "case.submitted", "version": 1, "summary": "'
        value = head + b"x" * (size - len(head) - 2) + b'"}'
        try:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
            return len(value)
        except MessageSizeTooLargeError:
            size -= 4096


SCENARIOS: tuple[type[Scenario], ...] = (
    KillServices,
    RestartPostgres,
    RestartKafka,
    KillPartitionLeader,
    Replay,
    PoisonRecords,
)


def scenario_named(name: str) -> type[Scenario]:
    for scenario in SCENARIOS:
        if name in (scenario.name, str(scenario.number)):
            return scenario
    raise KeyError(name)
