"""The secure Kafka profile on a real broker: SASL/SCRAM-SHA-512 logins and ACLs, one principal per party.

A secured stack of its own (`Stack(..., secure_kafka=...)`, what `./dev up --secure-kafka` runs): the real
catalogue's agencies plus two Kafka-native ones (`agency-a`, `agency-b`). Each refusal is shown next to the same
thing allowed, so no test passes on a broker that refuses everything; and a case flows through every service.
"""

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from devstack import KafkaCluster, KafkaSecurity, Stack, StackPorts
from devstack.kafka_security import ClientCredentials, agency_group_prefix, agency_principal, catalogue_agencies
from devstack.paths import repo_root
from kit.messaging import ensure_topics, make_broker
from kit.settings import ServiceSettings

from tests.e2e.helpers import StackAuth, eventually, timeline
from tests.samples import sample_case_json

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TIMEOUT = 60.0
AGENCIES = ("agency-a", "agency-b")
CASE_KEY = b"case-1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("secure-kafka")
    every, _ = catalogue_agencies(repo_root() / "catalogue" / "agencies")
    security = KafkaSecurity(state, [*every, *AGENCIES], AGENCIES)
    with Stack(state, StackPorts.free(), fast_postgres=True, secure_kafka=security, ready_timeout=180) as running:
        yield running


@pytest.fixture(scope="module")
def secured(stack: Stack) -> KafkaCluster:
    return stack.kafka


def security(cluster: KafkaCluster) -> KafkaSecurity:
    assert cluster.security is not None
    return cluster.security


@pytest.fixture(scope="module")
async def referral_on_agency_a(secured: KafkaCluster) -> AsyncIterator[bytes]:
    """A referral for agency A on its topic, written as the admin (as routing would write it)."""
    admin_config = security(secured).admin.aiokafka()
    admin = AIOKafkaAdminClient(bootstrap_servers=secured.bootstrap_servers, **admin_config)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"referrals.{a}", 1, 1) for a in AGENCIES])
    finally:
        await admin.close()
    value = f"referral for agency a {uuid.uuid4()}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=secured.bootstrap_servers, **admin_config)
    await producer.start()
    try:
        await producer.send_and_wait("referrals.agency-a", value, key=CASE_KEY)
    finally:
        await producer.stop()
    yield value


async def login(cluster: KafkaCluster, credentials: ClientCredentials) -> None:
    host, port = cluster.bootstrap_servers.split(",")[0].split(":")
    conn = await create_conn(host, int(port), request_timeout_ms=10000, **credentials.aiokafka())
    conn.close()


async def read_first(
    cluster: KafkaCluster, credentials: ClientCredentials | dict[str, Any], topic: str, group: str, key: bytes
) -> bytes:
    """The first record with `key` on `topic`, read in `group` from the start."""
    config = credentials.aiokafka() if isinstance(credentials, ClientCredentials) else credentials
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=cluster.bootstrap_servers, group_id=group, auto_offset_reset="earliest", **config
    )
    try:
        await asyncio.wait_for(consumer.start(), TIMEOUT)
        while True:
            record = await asyncio.wait_for(consumer.getone(), TIMEOUT)
            if record.key == key:
                assert record.value is not None
                value: bytes = record.value
                return value
    finally:
        await consumer.stop()


def own_group(prefix: str) -> str:
    """A group no running service uses (theirs would take the partitions), within the principal's prefix."""
    return f"{prefix}test-{uuid.uuid4().hex[:8]}"


async def test_a_wrong_password_is_refused_and_the_right_one_accepted(secured: KafkaCluster) -> None:
    right = security(secured).credentials("intake")
    await login(secured, right)
    with pytest.raises(SaslAuthenticationFailed):
        await login(secured, ClientCredentials("intake", right.password[::-1]))
    with pytest.raises(SaslAuthenticationFailed):
        await login(secured, ClientCredentials("somebody", right.password))


async def test_an_unauthenticated_client_gets_nothing(secured: KafkaCluster, referral_on_agency_a: bytes) -> None:
    consumer = AIOKafkaConsumer(
        "referrals.agency-a", bootstrap_servers=secured.bootstrap_servers, request_timeout_ms=5000
    )
    with pytest.raises((KafkaConnectionError, TimeoutError)) as refused:
        await asyncio.wait_for(consumer.start(), 20)
        await asyncio.wait_for(consumer.getone(), 10)
    await consumer.stop()
    assert referral_on_agency_a not in str(refused.value).encode()


async def test_agency_b_cannot_consume_agency_a_topic_while_agency_a_can(
    secured: KafkaCluster, referral_on_agency_a: bytes
) -> None:
    sec = security(secured)
    agency_a = sec.credentials(agency_principal("agency-a"))
    agency_b = sec.credentials(agency_principal("agency-b"))
    group_of_a, group_of_b = agency_group_prefix("agency-a"), agency_group_prefix("agency-b")
    with pytest.raises(TopicAuthorizationFailedError):
        await read_first(secured, agency_b, "referrals.agency-a", own_group(group_of_b), CASE_KEY)
    got = await read_first(secured, agency_a, "referrals.agency-a", own_group(group_of_a), CASE_KEY)
    assert got == referral_on_agency_a


async def test_an_agency_may_use_only_consumer_groups_of_its_own(secured: KafkaCluster) -> None:
    agency_b = security(secured).credentials(agency_principal("agency-b"))
    with pytest.raises(GroupAuthorizationFailedError):
        await read_first(secured, agency_b, "referrals.agency-b", own_group(agency_group_prefix("agency-a")), CASE_KEY)


def service_settings(cluster: KafkaCluster, name: str) -> ServiceSettings:
    """The service's settings as it reads them from the environment `./dev up --secure-kafka` gives it."""
    env = {
        **security(cluster).credentials(name).env(),
        "SERVICE_NAME": name,
        "DB_SCHEMA": name,
        "HTTP_PORT": "8000",
        "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_servers,
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        return ServiceSettings()  # every required field is in the environment


async def test_services_use_their_own_topics_through_the_kit_and_nothing_else(secured: KafkaCluster) -> None:
    intake, routing = service_settings(secured, "intake"), service_settings(secured, "routing")
    # Intake creates and writes case.submitted with the kit's admin client and broker, as it does when it starts.
    await ensure_topics(intake.kafka_bootstrap_servers, ["case.submitted"], 1, 1, intake.kafka_client_config())
    broker = make_broker(intake.kafka_bootstrap_servers, "intake", intake.kafka_client_config())
    marker = f"case {uuid.uuid4()}".encode()
    await asyncio.wait_for(broker.start(), TIMEOUT)
    try:
        await broker.publish(marker, "case.submitted", key=b"case-2")
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(broker.publish(b"not intake's to write", "referral.events", key=b"case-2"), TIMEOUT)
    finally:
        await broker.stop()
    config = routing.kafka_client_config()
    received = await read_first(secured, config, "case.submitted", own_group("routing."), b"case-2")
    assert received == marker
    intake_login = security(secured).credentials("intake")
    with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
        await read_first(secured, intake_login, "case.submitted", own_group("intake."), b"case-2")


async def test_a_case_flows_through_every_service_on_the_secured_broker(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=10.0, auth=StackAuth(stack)) as client:
        answer = await client.post(f"{stack.url('intake')}/cases", json=sample_case_json())
        assert answer.status_code == 201, answer.text
        case_id = answer.json()["case_id"]

        async def accepted() -> list[dict[str, Any]] | None:
            events = await timeline(client, stack.url("notify"), case_id)
            return events if sum(e["type"] == "referral.accepted" for e in events) >= 3 else None

        events = await eventually(accepted, 120, f"three acceptances of case {case_id}")
        assert {e["type"] for e in events} >= {"case.submitted", "case.routed", "referral.delivered"}
        for service in ("intake", "routing", "agency-gateway", "notify"):
            health = (await client.get(f"{stack.url(service)}/health")).json()
            assert health["checks"]["kafka"] == "ok", (service, health)


async def test_kafka_tools_log_in_as_the_admin_of_the_secured_stack(stack: Stack) -> None:
    """`./dev kafka ...` finds the secured stack's listener in its state folder and logs in as its admin."""

    def kafka_tool(*args: str) -> str:
        command = [sys.executable, "-m", "devstack", "kafka", "--state-dir", str(stack.state_dir), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    described = await asyncio.to_thread(kafka_tool, "consumer-groups", "--describe", "--all-groups")
    assert re.search(r"^routing\.case-submitted\s+case\.submitted\s+\d+\s", described, re.MULTILINE), described
    login = stack.state_dir / "kafka" / "admin-client.properties"
    assert login.stat().st_mode & 0o077 == 0, "the admin's password is readable by its owner only"


async def test_an_operators_replay_through_the_gateways_api_works_under_the_gateways_own_login(stack: Stack) -> None:
    """The gateway reads an agency's DLQ and writes the agency's topic as its own principal (its ACLs allow just
    that), so an operator's replay over HTTP (the console's Replay button) works on the secured broker."""
    agency, simulator, gateway = "microfinance", stack.url("agency-simulator"), stack.url("agency-gateway")
    async with httpx.AsyncClient(timeout=30.0, auth=StackAuth(stack)) as client:
        refusing = {"action": "fail", "status": 410, "times": None}
        assert (await client.put(f"{simulator}/behaviour/{agency}", json=refusing)).status_code == 200
        try:
            case = sample_case_json(
                crime_type="fraud", needs=["financial"], consents=[{"agency_id": agency, "granted": True}]
            )
            answer = await client.post(f"{stack.url('intake')}/cases", json=case)
            assert answer.status_code == 201, answer.text
            case_id = answer.json()["case_id"]

            async def dead_lettered() -> list[dict[str, Any]] | None:
                listed = await client.get(f"{gateway}/agencies/{agency}/dead-letters")
                assert listed.status_code == 200, listed.text
                return [d for d in listed.json() if d["case_id"] == case_id] or None

            await eventually(dead_lettered, 120, f"case {case_id} in referrals.{agency}.dlq")
            summary = (await client.get(f"{gateway}/dead-letters")).json()
            assert [r["waiting"] for r in summary if r["agency_id"] == agency] == [1]
        finally:
            await client.delete(f"{simulator}/behaviour/{agency}")
        replayed = await client.post(f"{gateway}/agencies/{agency}/dead-letters/replay")
        assert replayed.status_code == 200, replayed.text
        assert [d["case_id"] for d in replayed.json()["letters"]] == [case_id]

        async def delivered() -> list[dict[str, Any]] | None:
            events = await timeline(client, stack.url("notify"), case_id)
            return [e for e in events if e["type"] == "referral.delivered" and e["agency_id"] == agency] or None

        assert len(await eventually(delivered, 120, f"case {case_id} delivered to {agency} after the replay")) == 1
