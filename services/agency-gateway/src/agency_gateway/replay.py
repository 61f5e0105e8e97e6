"""Replay an agency's DLQ once the cause is fixed: `onestop-replay-dlq <agency-id> [--dry-run]`.

Each dead letter not replayed before goes back to the topic it came from (`dlq.source.topic`), with its key, and
the gateway delivers it as if new: the same referral id, so the agency acts on it once. The consumer group
`agency-gateway.<agency-id>.replay` remembers what was replayed; `--dry-run` only lists.
"""

import argparse
import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from schemas.topics import agency_topic, dlq_topic

from .settings import GatewaySettings


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    partition: int
    key: str
    reason: str
    target: str


def _target(headers: dict[str, str], agency_id: str) -> str:
    source = headers.get("dlq.source.topic", agency_topic(agency_id))
    # A retry topic's dead letter starts again from the agency's topic, with a fresh count of attempts.
    return source.removesuffix(".retry")


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
        group_id=f"agency-gateway.{agency_id}.replay",
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
        end = await consumer.end_offsets(partitions)
        replayed: list[DeadLetter] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for tp, records in (await consumer.getmany(*partitions, timeout_ms=1000)).items():
                for record in records:
                    if record.offset >= end[tp]:
                        continue
                    headers = {k: v.decode(errors="replace") for k, v in record.headers}
                    target = _target(headers, agency_id)
                    if not dry_run:
                        await producer.send_and_wait(
                            target,
                            record.value,
                            key=record.key,
                            headers=[
                                ("replay.dlq.partition", str(record.partition).encode()),
                                ("replay.dlq.offset", str(record.offset).encode()),
                                ("replay.at", datetime.now(UTC).isoformat().encode()),
                            ],
                        )
                    key = record.key.decode(errors="replace") if record.key else ""
                    reason = headers.get("dlq.reason", "?")
                    replayed.append(DeadLetter(record.offset, record.partition, key, reason, target))
        if replayed and not dry_run:
            await consumer.commit({tp: end[tp] for tp in partitions})
        return replayed
    finally:
        await producer.stop()
        await consumer.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="onestop-replay-dlq", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("agency_id", help="the agency whose DLQ (referrals.<agency-id>.dlq) to replay")
    parser.add_argument("--dry-run", action="store_true", help="list the dead letters without replaying them")
    parser.add_argument("--bootstrap-servers", help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    bootstrap = args.bootstrap_servers or settings.kafka_bootstrap_servers
    config = settings.kafka_client_config()
    letters = asyncio.run(replay_dlq(bootstrap, args.agency_id, dry_run=args.dry_run, client_config=config))
    verb = "would replay" if args.dry_run else "replayed"
    for letter in letters:
        print(f"  {letter.partition}@{letter.offset} case {letter.key} ({letter.reason}) -> {letter.target}")
    print(f"{verb} {len(letters)} dead letter(s) from {dlq_topic(agency_topic(args.agency_id))}", file=sys.stderr)


if __name__ == "__main__":
    main()
