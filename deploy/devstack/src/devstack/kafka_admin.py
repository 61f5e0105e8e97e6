"""Looking at a running Kafka from the outside, and the operator's tools: leaders, offsets, groups, group resets.

All of it goes through the Kafka protocol (aiokafka's admin and consumer clients), as an operator's tools would;
nothing reads a service's internals. On a secured cluster pass `client_config=cluster.admin_client_config`.
"""

import asyncio
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from devstack.errors import DevstackError


@dataclass(frozen=True)
class PartitionInfo:
    topic: str
    partition: int
    leader: int  # broker (node) id; -1 while no leader is elected
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)


@dataclass(frozen=True)
class ConsumerGroup:
    group_id: str
    state: str  # Stable, Empty, PreparingRebalance, CompletingRebalance, Dead
    client_ids: tuple[str, ...]  # of its current members
    topics: tuple[str, ...]  # the topics its current members subscribe to
    committed: dict[TopicPartition, int] = field(default_factory=dict)


Config = Mapping[str, Any] | None  # SASL options for every client here (None: plaintext)


def _admin(bootstrap_servers: str, client_config: Config = None) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="devstack-admin",
        request_timeout_ms=10000,
        **dict(client_config or {}),
    )


def _consumer(bootstrap_servers: str, client_config: Config, group_id: str | None = None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=group_id, **dict(client_config or {})
    )


def is_internal(topic: str) -> bool:
    return topic.startswith("__")


async def partitions(
    bootstrap_servers: str,
    topics: Iterable[str] | None = None,
    *,
    include_internal: bool = False,
    client_config: Config = None,
) -> list[PartitionInfo]:
    """Every partition of `topics` (default: all; Kafka's internal ones if asked), its leader and in-sync replicas."""
    admin = _admin(bootstrap_servers, client_config)
    await admin.start()
    try:
        described = await admin.describe_topics(sorted(topics) if topics is not None else None)
    finally:
        await admin.close()
    found = [
        PartitionInfo(t["topic"], p["partition"], p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
        for t in described
        if topics is not None or include_internal or not is_internal(t["topic"])
        for p in t["partitions"]
    ]
    return sorted(found, key=lambda p: (p.topic, p.partition))


async def end_offsets(
    bootstrap_servers: str, parts: Iterable[TopicPartition], *, client_config: Config = None
) -> dict[TopicPartition, int]:
    """The next offset to be written on each partition (its high watermark)."""
    return await _offsets(bootstrap_servers, parts, client_config, end=True)


async def beginning_offsets(
    bootstrap_servers: str, parts: Iterable[TopicPartition], *, client_config: Config = None
) -> dict[TopicPartition, int]:
    """The first offset still kept on each partition."""
    return await _offsets(bootstrap_servers, parts, client_config, end=False)


async def _offsets(
    bootstrap_servers: str, parts: Iterable[TopicPartition], client_config: Config, *, end: bool
) -> dict[TopicPartition, int]:
    """Each partition's end or beginning offset, asked by a consumer of no group that reads nothing."""
    wanted = list(parts)
    if not wanted:
        return {}
    consumer = _consumer(bootstrap_servers, client_config)
    await consumer.start()
    # Assigned, so that the client's metadata covers every topic at once: asked for offsets of a topic it has no
    # metadata for, aiokafka learns one topic per retry, 100 ms apart (10 s for the stack's topics).
    consumer.assign(wanted)
    try:
        found = await (consumer.end_offsets(wanted) if end else consumer.beginning_offsets(wanted))
        return {tp: int(offset) for tp, offset in found.items()}
    finally:
        await consumer.stop()


async def consumer_groups(
    bootstrap_servers: str, *, client_config: Config = None, commits_only: bool = False
) -> list[ConsumerGroup]:
    """Every consumer group: its state, its members' client ids and topics, and its committed offsets. With
    `commits_only`, also the groups that never had a member and only commit offsets (a DLQ replay's)."""
    protocols = ("consumer", "") if commits_only else ("consumer",)
    admin = _admin(bootstrap_servers, client_config)
    await admin.start()
    try:
        names = sorted(name for name, protocol, *_ in await admin.list_consumer_groups() if protocol in protocols)
        groups = []
        for name in names:
            [response] = await admin.describe_consumer_groups([name])
            [described] = response.to_object()["groups"]
            members = described["members"]
            committed = await admin.list_consumer_group_offsets(name)
            groups.append(
                ConsumerGroup(
                    group_id=name,
                    state=described["state"],
                    client_ids=tuple(sorted({m["client_id"] for m in members})),
                    topics=tuple(sorted({t for m in members for t in _subscribed_topics(m["member_metadata"])})),
                    committed={tp: int(meta.offset) for tp, meta in committed.items() if meta.offset >= 0},
                )
            )
        return groups
    finally:
        await admin.close()


def _subscribed_topics(metadata: bytes) -> list[str]:
    """The topics in a classic consumer's subscription (ConsumerProtocolMemberMetadata: version, [topic], ...)."""
    if len(metadata) < 6:
        return []
    (count,) = struct.unpack_from(">i", metadata, 2)
    offset, topics = 6, []
    for _ in range(max(count, 0)):
        (length,) = struct.unpack_from(">h", metadata, offset)
        offset += 2
        topics.append(metadata[offset : offset + length].decode())
        offset += length
    return topics


async def wait_group_empty(
    bootstrap_servers: str, group_id: str, timeout: float = 60.0, *, client_config: Config = None
) -> None:
    """Wait until the group has no members (its consumers stopped, or their sessions timed out)."""
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        admin = _admin(bootstrap_servers, client_config)
        await admin.start()
        try:
            [response] = await admin.describe_consumer_groups([group_id])
            [described] = response.to_object()["groups"]
            state = described["state"]
        finally:
            await admin.close()
        if state in ("Empty", "Dead"):
            return
        await asyncio.sleep(0.5)
    raise DevstackError(f"consumer group {group_id} still {state} after {timeout:.0f}s: stop its consumers first")


async def reset_group_to_earliest(
    bootstrap_servers: str, group_id: str, topics: Iterable[str], timeout: float = 60.0, *, client_config: Config = None
) -> dict[TopicPartition, int]:
    """What `kafka-consumer-groups --reset-offsets --to-earliest --execute` does: the group re-reads everything.

    The group must have no members (Kafka refuses the commit otherwise): stop its consumers first; this waits
    up to `timeout` for them to leave. Returns the offsets committed.
    """
    await wait_group_empty(bootstrap_servers, group_id, timeout, client_config=client_config)
    wanted = sorted(set(topics))
    admin = _admin(bootstrap_servers, client_config)
    await admin.start()
    try:
        described = await admin.describe_topics(wanted)
    finally:
        await admin.close()
    parts = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    earliest = await beginning_offsets(bootstrap_servers, parts, client_config=client_config)
    # An empty group accepts a commit from outside (generation -1), as the admin API's AlterConsumerGroupOffsets.
    consumer = _consumer(bootstrap_servers, client_config, group_id)
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in earliest.items()})
    finally:
        await consumer.stop()
    return earliest


@dataclass(frozen=True)
class GroupLag:
    group_id: str
    state: str
    topic: str
    lag: int  # records on the topic after the group's committed offsets
    partitions: int  # the topic's partitions the group has committed an offset on


async def consumer_lag(bootstrap_servers: str, *, client_config: Config = None) -> list[GroupLag]:
    """Each consumer group's lag per topic it has committed offsets on: the end offsets minus the committed ones,
    as `kafka-consumer-groups --describe --all-groups` reports it."""
    groups = await consumer_groups(bootstrap_servers, client_config=client_config, commits_only=True)
    committed = {tp for group in groups for tp in group.committed}
    ends = await end_offsets(bootstrap_servers, committed, client_config=client_config)
    found = []
    for group in groups:
        per_topic: dict[str, list[int]] = {}
        for tp, offset in group.committed.items():
            per_topic.setdefault(tp.topic, []).append(max(ends.get(tp, offset) - offset, 0))
        found += [GroupLag(group.group_id, group.state, t, sum(lags), len(lags)) for t, lags in per_topic.items()]
    return sorted(found, key=lambda lag: (lag.group_id, lag.topic))


async def records(
    bootstrap_servers: str, topic: str, *, client_config: Config = None
) -> list[ConsumerRecord[Any, Any]]:
    """Every record on `topic` from its beginning to its end now, read by a consumer of no group (commits nothing)."""
    parts = [
        TopicPartition(p.topic, p.partition)
        for p in await partitions(bootstrap_servers, [topic], client_config=client_config)
    ]
    ends = await end_offsets(bootstrap_servers, parts, client_config=client_config)
    consumer = _consumer(bootstrap_servers, client_config)
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        found: list[ConsumerRecord[Any, Any]] = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for tp, batch in (await consumer.getmany(*parts, timeout_ms=1000)).items():
                found += [record for record in batch if record.offset < ends[tp]]
        return sorted(found, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()
