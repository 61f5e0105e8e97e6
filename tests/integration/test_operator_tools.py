"""The operator's Kafka tools on a real broker: Kafka's own (`./dev kafka ...`, i.e. `python -m devstack kafka`) and
casectl's `lag` and `dlq` (list, show, and the gateway's replay).

One broker for the module with a known state: referrals.police holds 3 records, of which the gateway's group has
committed 1 (lag 2); routing's group is up to date on case.submitted; two referrals wait in referrals.police.dlq and
one event in case.submitted.dlq; two in referrals.legal-aid.dlq, which one test replays.
"""

import asyncio
import json
import re
import subprocess
import sys

import asyncpg
import pytest
from agency_gateway import replay
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata
from casectl.main import main as casectl
from devstack import KafkaCluster
from devstack.kafka_admin import end_offsets

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GATEWAY_GROUP = "agency-gateway.deliveries"
ROUTING_GROUP = "routing.cases"
TOPICS = {
    "referrals.police": 2,
    "referrals.police.dlq": 1,
    "case.submitted": 1,
    "case.submitted.dlq": 1,
    "referrals.legal-aid": 1,  # replayed by a test (the others' state stays as it is, whatever the order)
    "referrals.legal-aid.dlq": 1,
}


def dlq_headers(reason: str, source: str, failed_at: str) -> list[tuple[str, bytes]]:
    headers = {
        "dlq.reason": reason,
        "dlq.detail": "HTTP 503 from the agency" if source.startswith("referrals.") else "not an event",
        "dlq.source.topic": source,
        "dlq.source.partition": "0",
        "dlq.source.offset": "0",
        "dlq.consumer.group": GATEWAY_GROUP if source.startswith("referrals.") else ROUTING_GROUP,
        "dlq.failed_at": failed_at,
    }
    return [(k, v.encode()) for k, v in headers.items()]


async def fill(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, count, 1) for name, count in TOPICS.items()])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait("referrals.police", b"{}", key=f"case-{n}".encode(), partition=0)
        await producer.send_and_wait("case.submitted", b"{}", key=b"case-9")
        for n, at in enumerate(("2026-03-01T10:00:00+00:00", "2026-03-01T11:30:00+00:00")):
            body = json.dumps({"type": "referral.requested", "event_id": f"e-{n}"}).encode()
            headers = dlq_headers("retries_exhausted", "referrals.police", at)
            await producer.send_and_wait("referrals.police.dlq", body, key=f"case-{n}".encode(), headers=headers)
        for n in range(2):
            headers = dlq_headers("permanent_failure", "referrals.legal-aid", "2026-03-02T08:00:00+00:00")
            await producer.send_and_wait("referrals.legal-aid.dlq", b"{}", key=f"case-{n}".encode(), headers=headers)
        headers = dlq_headers("invalid", "case.submitted", "2026-03-01T09:00:00+00:00")
        await producer.send_and_wait("case.submitted.dlq", b"not json", key=b"case-8", headers=headers)
    finally:
        await producer.stop()
    for group, tp, offset in (
        (GATEWAY_GROUP, TopicPartition("referrals.police", 0), 1),
        (ROUTING_GROUP, TopicPartition("case.submitted", 0), 1),
    ):
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.commit({tp: OffsetAndMetadata(offset, "")})
        finally:
            await consumer.stop()


@pytest.fixture(scope="module")
def broker(kafka: KafkaCluster) -> KafkaCluster:
    asyncio.run(fill(kafka.bootstrap_servers))
    return kafka


def kafka_tool(cluster: KafkaCluster, *args: str) -> str:
    """`./dev kafka <args>` against the cluster's state folder, as the wrapper finds a running stack."""
    command = [sys.executable, "-m", "devstack", "kafka", "--state-dir", str(cluster.state_dir), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_kafka_topics_lists_the_stacks_topics(broker: KafkaCluster) -> None:
    listed = set(kafka_tool(broker, "topics", "--list").split())
    assert set(TOPICS) <= listed


def test_kafka_consumer_groups_describes_every_group_with_its_lag(broker: KafkaCluster) -> None:
    described = kafka_tool(broker, "consumer-groups", "--describe", "--all-groups")
    # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
    rows = re.findall(r"^(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", described, re.MULTILINE)
    lags = {(group, topic, int(partition)): int(lag) for group, topic, partition, _, _, lag in rows}
    assert lags[(GATEWAY_GROUP, "referrals.police", 0)] == 2, described
    assert lags[(ROUTING_GROUP, "case.submitted", 0)] == 0, described


def test_casectl_lag_by_service_and_agency(broker: KafkaCluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert casectl(["lag", "--json", "--bootstrap-servers", broker.bootstrap_servers]) == 0
    lags = [g for g in json.loads(capsys.readouterr().out) if g["group_id"] in (GATEWAY_GROUP, ROUTING_GROUP)]
    found = {(g["service"], g["agency_id"], g["topic"]): g["lag"] for g in lags}
    assert found == {("agency-gateway", "police", "referrals.police"): 2, ("routing", None, "case.submitted"): 0}
    assert casectl(["lag", "--lagging", "--bootstrap-servers", broker.bootstrap_servers]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["service", "group", "agency", "topic", "lag", "state"]
    assert [line.split()[:5] for line in table[1:-1]] == [
        ["agency-gateway", GATEWAY_GROUP, "police", "referrals.police", "2"]
    ], "only what waits: not routing's group, which is up to date"
    assert table[-1] == "2 record(s) not yet consumed in all"


def test_casectl_dlq_lists_and_shows_the_dead_letters(broker: KafkaCluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert casectl(["dlq", "list", "--bootstrap-servers", broker.bootstrap_servers]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows == [
        ["topic", "reason", "count", "first", "last"],
        ["case.submitted.dlq", "invalid", "1", "2026-03-01", "09:00:00", "2026-03-01", "09:00:00"],
        ["referrals.legal-aid.dlq", "permanent_failure", "2", "2026-03-02", "08:00:00", "2026-03-02", "08:00:00"],
        ["referrals.police.dlq", "retries_exhausted", "2", "2026-03-01", "10:00:00", "2026-03-01", "11:30:00"],
    ]
    assert casectl(["dlq", "show", "referrals.police", "--bootstrap-servers", broker.bootstrap_servers]) == 0
    shown = capsys.readouterr().out
    assert "0@0  2026-03-01 10:00:00  retries_exhausted  key case-0  referral.requested e-0" in shown
    assert "from referrals.police/0@0 (group agency-gateway.deliveries): HTTP 503 from the agency" in shown
    assert casectl(["dlq", "show", "no-such-topic", "--bootstrap-servers", broker.bootstrap_servers]) == 1


async def replay_while_another_runs(dsn: str, bootstrap: str) -> None:
    """casectl's replay while another replay of legal-aid (a gateway's, say) holds its lock: refused, nothing put
    back (the lock is PostgreSQL's, so it holds across every process on the gateway's database)."""
    other = await asyncpg.connect(dsn)
    try:
        async with replay.one_at_a_time(other, "legal-aid"):
            with pytest.raises(SystemExit, match="a replay of legal-aid's dead letters is under way"):
                await asyncio.to_thread(casectl, ["dlq", "replay", "legal-aid", "--bootstrap-servers", bootstrap])
    finally:
        await other.close()


def test_casectl_dlq_replay_is_the_gateways_replay(
    broker: KafkaCluster, postgres: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = broker.bootstrap_servers
    monkeypatch.setenv("DATABASE_URL", postgres)  # where the replay takes its lock, as the gateway's own does
    legal_aid = [TopicPartition("referrals.legal-aid", 0)]
    before = sum(asyncio.run(end_offsets(bootstrap, legal_aid)).values())
    assert casectl(["dlq", "replay", "legal-aid", "--dry-run", "--bootstrap-servers", bootstrap]) == 0
    assert "would replay 2 dead letter(s) from referrals.legal-aid.dlq" in capsys.readouterr().err
    assert sum(asyncio.run(end_offsets(bootstrap, legal_aid)).values()) == before
    asyncio.run(replay_while_another_runs(postgres, bootstrap))
    assert sum(asyncio.run(end_offsets(bootstrap, legal_aid)).values()) == before
    assert casectl(["dlq", "replay", "legal-aid", "--bootstrap-servers", bootstrap]) == 0
    assert "replayed 2 dead letter(s)" in capsys.readouterr().err
    assert sum(asyncio.run(end_offsets(bootstrap, legal_aid)).values()) == before + 2
    # The replay group remembers: nothing twice.
    assert casectl(["dlq", "replay", "legal-aid", "--bootstrap-servers", bootstrap]) == 0
    assert "replayed 0 dead letter(s)" in capsys.readouterr().err
