"""Reading the running system from the outside: its HTTP APIs and its Kafka topics."""

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from devstack.stack import Stack
from kit.auth import Role, issue_token

T = TypeVar("T")


_AGENCY_ANSWER = re.compile(r"^/referrals/[^/]+/(accept|decline|start|complete)$")


class StackAuth(httpx.Auth):
    """Credentials for the tests' calls, as the real callers have them: an agency's answer goes with that agency's
    token (the agency its body names), everything else as a supervisor (staff)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        # A credential of its own per client: one test's requests never spend another's rate limit.
        subject = f"e2e-{uuid4().hex[:8]}"
        self.staff = issue_token(stack.env["AUTH_SECRET"], Role.supervisor, subject)
        self.staff_credential = f"{Role.supervisor}:{subject}"  # as the access log and the consent ledger name it
        self._agencies: dict[str, str] = {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "authorization" not in request.headers:
            request.headers["authorization"] = f"Bearer {self._token_for(request)}"
        yield request

    def _token_for(self, request: httpx.Request) -> str:
        if request.method == "POST" and _AGENCY_ANSWER.match(request.url.path):
            try:
                agency = json.loads(request.content or b"{}").get("agency_id")
            except (ValueError, AttributeError):
                agency = None
            if isinstance(agency, str):
                if agency not in self._agencies:
                    self._agencies[agency] = self.stack.token("agency", agency)
                return self._agencies[agency]
        return self.staff


def restart(stack: Stack, names: tuple[str, ...], env: dict[str, str]) -> None:
    """Stop the services, give them `env`, start them again and wait until they are healthy."""
    for name in names:
        stack.processes[name].stop()
    for name in names:
        stack.processes[name].env = {**env, "HTTP_PORT": str(stack.ports[name])}
        stack.processes[name].start()
    for name in names:
        stack.processes[name].wait_ready(120)


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy, or fail saying what never happened."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


async def timeline(client: httpx.AsyncClient, notify_url: str, case_id: str) -> list[dict[str, Any]]:
    answer = await client.get(f"{notify_url}/cases/{case_id}/timeline")
    return answer.json()["events"] if answer.status_code == 200 else []


async def referrals_by_agency(client: httpx.AsyncClient, stack: Stack, case_id: str) -> dict[str, dict[str, Any]]:
    """The case's referrals as notify has them, by agency (none yet: empty)."""
    answer = await client.get(f"{stack.url('notify')}/cases/{case_id}/referrals")
    return {r["agency_id"]: r for r in answer.json()} if answer.status_code == 200 else {}


async def read_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> list[Any]:
    """Every record on the topic, from the start, as a fresh reader that commits nothing."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in partitions]
            if all(position >= end[tp] for position, tp in zip(positions, partitions, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=500)
            for tp_records in batch.values():
                records.extend(tp_records)
        return records
    finally:
        await consumer.stop()


async def produce(bootstrap: str, topic: str, value: bytes, key: bytes = b"poison") -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def group_is_past(bootstrap: str, group: str, record: Any) -> bool:
    """Whether the consumer group has committed past this record (so its service has handled it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    meta = committed.get(TopicPartition(record.topic, record.partition))
    return meta is not None and meta.offset > record.offset
