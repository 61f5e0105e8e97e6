"""Replay an agency's DLQ once the cause is fixed: `onestop-replay-dlq <agency-id> [--dry-run]`, or an operator's
POST /agencies/{agency_id}/dead-letters/replay on the gateway's API (api.py), which runs the same `replay_dlq`.

Each dead letter not replayed before goes back to the topic it came from (`dlq.source.topic`), with its key, and
the gateway delivers it as if new: the same referral id, so the agency acts on it once. The consumer group
`agency-gateway.<agency-id>.replay` remembers what was replayed; `--dry-run` only lists. `dead_letters` reads every
agency's DLQ from its beginning, each letter saying whether a replay has put it back already.
"""

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from schemas.topics import agency_topic, dlq_topic

from .settings import GatewaySettings


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    partition: int
    key: str  # the case id
    reason: str
    target: str
    failed_at: datetime
    replayed: bool = False  # put back by an earlier replay


class ReplayUnderWay(Exception):
    """Another replay of the agency's dead letters holds its lock: nothing was put back."""


def replay_lock_key(agency_id: str) -> str:
    """The PostgreSQL advisory lock a replay of the agency's dead letters holds while it runs."""
    return f"agency-gateway.dlq-replay.{agency_id}"


@contextlib.asynccontextmanager
async def one_at_a_time(conn: asyncpg.Connection, agency_id: str) -> AsyncIterator[None]:
    """One replay of an agency's dead letters at a time, across every replica of the gateway and the command line:
    two at once would read the same committed offsets and put the same letters back twice. A session-level advisory
    lock on `conn`, so a process that dies mid-replay lets go with its connection."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", replay_lock_key(agency_id)):
        raise ReplayUnderWay(f"a replay of {agency_id}'s dead letters is under way; look again once it is done")
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", replay_lock_key(agency_id))


def replay_group(agency_id: str) -> str:
    """The consumer group whose committed offsets say how far the agency's DLQ has been replayed."""
    return f"agency-gateway.{agency_id}.replay"


def _target(headers: dict[str, str], agency_id: str) -> str:
    source = headers.get("dlq.source.topic", agency_topic(agency_id))
    # A retry topic's dead letter starts again from the agency's topic, with a fresh count of attempts.
    return source.removesuffix(".retry")


def _letter(record: ConsumerRecord[Any, Any], agency_id: str, replayed: bool = False) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in record.headers}
    stamp = headers.get("dlq.failed_at")
    failed_at = datetime.fromisoformat(stamp) if stamp else datetime.fromtimestamp(record.timestamp / 1000, UTC)
    key = record.key.decode(errors="replace") if record.key else ""
    reason = headers.get("dlq.reason", "?")
    return DeadLetter(record.offset, record.partition, key, reason, _target(headers, agency_id), failed_at, replayed)


async def _read_to_end(
    consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
) -> tuple[list[ConsumerRecord[Any, Any]], dict[TopicPartition, int]]:
    """Every record from each partition's position to its end offset now, and those end offsets."""
    end = await consumer.end_offsets(list(partitions))
    found: list[ConsumerRecord[Any, Any]] = []
    while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
        for tp, records in (await consumer.getmany(*partitions, timeout_ms=1000)).items():
            found += [record for record in records if record.offset < end[tp]]
    return sorted(found, key=lambda r: (r.topic, r.partition, r.offset)), end


async def replay_dlq(
    bootstrap_servers: str, agency_id: str, *, dry_run: bool = False, client_config: Mapping[str, Any] | None = None
) -> list[DeadLetter]:
    """Put back the agency's dead letters added since the last replay; return what was (or would be) replayed.

    `client_config`: SASL options on a secured broker (the settings' `kafka_client_config()`, an operator's login).
    """
    dlq = dlq_topic(agency_topic(agency_id))
    config = dict(client_config or {})
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=replay_group(agency_id),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **config,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True, acks="all", **config)
    await consumer.start()
    await producer.start()
    try:
        if dlq not in await consumer.topics():
            return []
        partitions = [TopicPartition(dlq, p) for p in sorted(await producer.partitions_for(dlq))]
        consumer.assign(partitions)
        records, end = await _read_to_end(consumer, partitions)
        replayed = [_letter(record, agency_id) for record in records]
        if dry_run:
            return replayed
        for record, letter in zip(records, replayed, strict=True):
            await producer.send_and_wait(
                letter.target,
                record.value,
                key=record.key,
                headers=[
                    ("replay.dlq.partition", str(record.partition).encode()),
                    ("replay.dlq.offset", str(record.offset).encode()),
                    ("replay.at", datetime.now(UTC).isoformat().encode()),
                ],
            )
        if replayed:
            await consumer.commit({tp: end[tp] for tp in partitions})
        return replayed
    finally:
        await producer.stop()
        await consumer.stop()


async def dead_letters(
    bootstrap_servers: str, agency_ids: Iterable[str], *, client_config: Mapping[str, Any] | None = None
) -> dict[str, list[DeadLetter]]:
    """Every dead letter on each agency's DLQ (those with any), read from the beginning by a consumer of no group
    (it commits nothing); each says whether the agency's replay group has put it back already."""
    config = dict(client_config or {})
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **config)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **config)
    await consumer.start()
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        by_topic = {dlq_topic(agency_topic(a)): a for a in agency_ids if dlq_topic(agency_topic(a)) in existing}
        described = await admin.describe_topics(sorted(by_topic)) if by_topic else []
        partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
        if not partitions:
            return {}
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records, _ = await _read_to_end(consumer, partitions)
        found: dict[str, list[DeadLetter]] = {}
        for topic in sorted({r.topic for r in records}):
            agency_id = by_topic[topic]
            mine = [tp for tp in partitions if tp.topic == topic]
            committed = await admin.list_consumer_group_offsets(replay_group(agency_id), partitions=mine)
            done = {tp: meta.offset for tp, meta in committed.items() if meta is not None}
            found[agency_id] = [
                _letter(r, agency_id, r.offset < done.get(TopicPartition(topic, r.partition), -1))
                for r in records
                if r.topic == topic
            ]
        return found
    finally:
        await admin.close()
        await consumer.stop()


def summary(found: Mapping[str, Sequence[DeadLetter]]) -> list[dict[str, Any]]:
    """Per agency and reason: how many dead letters, how many wait for a replay, the first and last seen."""
    rows = []
    for agency_id, letters in sorted(found.items()):
        for reason in sorted({letter.reason for letter in letters}):
            batch = [letter for letter in letters if letter.reason == reason]
            times = sorted(letter.failed_at for letter in batch)
            rows.append(
                {
                    "agency_id": agency_id,
                    "topic": dlq_topic(agency_topic(agency_id)),
                    "reason": reason,
                    "count": len(batch),
                    "waiting": sum(not letter.replayed for letter in batch),
                    "first_seen": times[0].isoformat(),
                    "last_seen": times[-1].isoformat(),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="onestop-replay-dlq", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("agency_id", help="the agency whose DLQ (referrals.<agency-id>.dlq) to replay")
    parser.add_argument("--dry-run", action="store_true", help="list the dead letters without replaying them")
    parser.add_argument("--bootstrap-servers", help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    bootstrap = args.bootstrap_servers or settings.kafka_bootstrap_servers
    config = settings.kafka_client_config()

    async def run() -> list[DeadLetter]:
        if args.dry_run:  # a look changes nothing: no lock
            return await replay_dlq(bootstrap, args.agency_id, dry_run=True, client_config=config)
        conn = await asyncpg.connect(settings.database_url)
        try:
            async with one_at_a_time(conn, args.agency_id):
                return await replay_dlq(bootstrap, args.agency_id, client_config=config)
        finally:
            await conn.close()

    try:
        letters = asyncio.run(run())
    except ReplayUnderWay as busy:
        sys.exit(f"onestop-replay-dlq: {busy}")
    verb = "would replay" if args.dry_run else "replayed"
    for letter in letters:
        print(f"  {letter.partition}@{letter.offset} case {letter.key} ({letter.reason}) -> {letter.target}")
    print(f"{verb} {len(letters)} dead letter(s) from {dlq_topic(agency_topic(args.agency_id))}", file=sys.stderr)


if __name__ == "__main__":
    main()
