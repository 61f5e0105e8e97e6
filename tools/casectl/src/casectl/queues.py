"""`casectl lag` and `casectl dlq`: what waits in Kafka, read through the Kafka protocol as an operator.

Lag is each consumer group's committed offsets against the topics' end offsets (as `kafka-consumer-groups
--describe` reports it), per service (a group is named `<service>.<consumer>`) and agency (`referrals.<agency>`,
its `.retry` and `acks.<agency>`). Dead letters are the records on every `<topic>.dlq`, with the reason and time
their headers carry; `dlq replay` is the gateway's own replay (`onestop-replay-dlq`), not a second one.

The Kafka login is the one `onestop-replay-dlq` reads: KAFKA_BOOTSTRAP_SERVERS, and on a secured broker
KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD (an operator's, or the admin's).
"""

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agency_gateway.replay import main as replay_main
from agency_gateway.settings import GatewaySettings
from devstack.kafka_admin import GroupLag, consumer_lag, partitions, records

from .text import table

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Kafka:
    bootstrap_servers: str
    client_config: Mapping[str, Any]

    @classmethod
    def from_env(cls, bootstrap_servers: str | None = None) -> "Kafka":
        settings = GatewaySettings()
        return cls(bootstrap_servers or settings.kafka_bootstrap_servers, settings.kafka_client_config())


def service_of(group_id: str) -> str:
    return group_id.split(".", 1)[0]


def agency_of(topic: str) -> str | None:
    """`police` for referrals.police, referrals.police.retry, referrals.police.dlq or acks.police; else None."""
    for prefix in ("referrals.", "acks."):
        if topic.startswith(prefix):
            return topic.removeprefix(prefix).split(".", 1)[0]
    return None


def render_lag(lags: Sequence[GroupLag], *, only_lagging: bool = False) -> str:
    rows = [("service", "group", "agency", "topic", "lag", "state")]
    rows += [
        (service_of(g.group_id), g.group_id, agency_of(g.topic) or "-", g.topic, str(g.lag), g.state)
        for g in lags
        if g.lag > 0 or not only_lagging
    ]
    total = sum(g.lag for g in lags)
    return "\n".join(table(rows, right={4})) + f"\n{total} record(s) not yet consumed in all"


def show_lag(kafka: Kafka, only_lagging: bool, as_json: bool) -> int:
    lags = asyncio.run(consumer_lag(kafka.bootstrap_servers, client_config=kafka.client_config))
    if as_json:
        print(json.dumps([{**g.__dict__, "service": service_of(g.group_id), "agency_id": agency_of(g.topic)}
                          for g in lags], indent=2))  # fmt: skip
    else:
        print(render_lag(lags, only_lagging=only_lagging))
    return 0


@dataclass(frozen=True)
class DeadLetter:
    topic: str  # the dead-letter topic
    partition: int
    offset: int
    reason: str
    failed_at: datetime
    headers: dict[str, str]
    key: str
    event_type: str | None
    event_id: str | None


def dead_letter(topic: str, record: Any) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in record.headers}
    stamp = headers.get("dlq.failed_at")
    failed_at = datetime.fromisoformat(stamp) if stamp else datetime.fromtimestamp(record.timestamp / 1000, UTC)
    try:  # the event's type and id only: its body may hold case details
        body = json.loads(record.value or b"")
        event_type, event_id = body.get("type"), body.get("event_id")
    except (ValueError, AttributeError):
        event_type = event_id = None
    key = record.key.decode(errors="replace") if record.key else ""
    return DeadLetter(topic, record.partition, record.offset, headers.get("dlq.reason", "?"), failed_at, headers, key,
                      event_type, None if event_id is None else str(event_id))  # fmt: skip


async def dead_letter_topics(kafka: Kafka) -> list[str]:
    found = await partitions(kafka.bootstrap_servers, client_config=kafka.client_config)
    return sorted({p.topic for p in found if p.topic.endswith(DLQ_SUFFIX)})


async def dead_letters(kafka: Kafka, topic: str) -> list[DeadLetter]:
    found = await records(kafka.bootstrap_servers, topic, client_config=kafka.client_config)
    return [dead_letter(topic, record) for record in found]


async def every_dead_letter(kafka: Kafka) -> list[DeadLetter]:
    letters = [await dead_letters(kafka, topic) for topic in await dead_letter_topics(kafka)]
    return [letter for batch in letters for letter in batch]


def render_dlq_summary(letters: Sequence[DeadLetter]) -> str:
    """Per dead-letter topic and reason: how many, the first and the last."""
    groups: dict[tuple[str, str], list[DeadLetter]] = {}
    for letter in letters:
        groups.setdefault((letter.topic, letter.reason), []).append(letter)
    rows = [("topic", "reason", "count", "first", "last")]
    for (topic, reason), batch in sorted(groups.items()):
        times = sorted(letter.failed_at for letter in batch)
        rows.append((topic, reason, str(len(batch)), _when(times[0]), _when(times[-1])))
    if not groups:
        return "no dead letters"
    return "\n".join(table(rows, right={2}))


def render_dead_letters(letters: Sequence[DeadLetter]) -> str:
    """Each dead letter of one topic: where it came from, why, when; the event's type and id, never its body."""
    lines = []
    for letter in letters:
        h = letter.headers
        lines.append(
            f"{letter.partition}@{letter.offset}  {_when(letter.failed_at)}  {letter.reason}  key {letter.key or '-'}  "
            f"{letter.event_type or '?'} {letter.event_id or ''}".rstrip()
        )
        source = (
            f"{h.get('dlq.source.topic', '?')}/{h.get('dlq.source.partition', '?')}@{h.get('dlq.source.offset', '?')}"
        )
        extra = "".join(f", {k.removeprefix('dlq.')} {v}" for k, v in sorted(h.items()) if k in _SHOWN_EXTRA)
        lines.append(f"    from {source} (group {h.get('dlq.consumer.group', '?')}{extra}): {h.get('dlq.detail', '')}")
    return "\n".join(lines) if lines else "no dead letters"


_SHOWN_EXTRA = ("dlq.attempts", "dlq.agency_status", "dlq.channel", "dlq.body_omitted")


def show_dlq(kafka: Kafka, topic: str | None) -> int:
    if topic is None:
        print(render_dlq_summary(asyncio.run(every_dead_letter(kafka))))
        return 0
    name = topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX
    if name not in asyncio.run(dead_letter_topics(kafka)):
        print(f"casectl: no dead-letter topic {name}")
        return 1
    print(render_dead_letters(asyncio.run(dead_letters(kafka, name))))
    return 0


def replay(kafka: Kafka, agency_id: str, dry_run: bool) -> int:
    """The gateway's replay of an agency's DLQ (`onestop-replay-dlq`), with the same login."""
    replay_main([agency_id, "--bootstrap-servers", kafka.bootstrap_servers, *(["--dry-run"] if dry_run else [])])
    return 0


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
