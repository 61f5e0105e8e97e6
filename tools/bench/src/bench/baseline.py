"""The bare baseline: the pipeline's Kafka hops with the same message sizes, through plain aiokafka clients only.

submitted ──▶ "routing" ──referrals.<agency> ×3──▶ "gateway" ×3 ──events──▶ "notify"
                   └──────────── events (routed) ──────────────────────────▶

No database, no framework, no HTTP: what the broker and the client library alone cost on this machine.
"""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.cases import AGENCIES


def payload(case_id: str, size: int, kind: str, agency: str = "") -> bytes:
    """A JSON object of exactly `size` bytes (if that is enough) naming the case, the kind and the agency."""
    head = json.dumps({"case_id": case_id, "kind": kind, "agency": agency, "pad": ""})
    return (head[:-2] + "x" * max(0, size - len(head)) + '"}').encode()


@dataclass
class ChainTrace:
    """One case through the bare chain: epoch seconds at each stage."""

    case_id: str
    sent: float
    routed_in: float | None = None  # "routing" received it
    routed_out: float | None = None  # "routing" sent the referrals
    agency_in: dict[str, float] = field(default_factory=dict)  # each "gateway" received its referral
    agency_out: dict[str, float] = field(default_factory=dict)
    events_in: dict[str, float] = field(default_factory=dict)  # "notify" received each agency's delivered event
    done: asyncio.Event = field(default_factory=asyncio.Event)


class BareChain:
    """Topics of its own (6 partitions, like the pipeline's), one producer and consumer per stage."""

    def __init__(self, bootstrap: str, sizes: dict[str, int], partitions: int = 6, replication: int = 1) -> None:
        self.bootstrap = bootstrap
        self.sizes = sizes
        self.partitions = partitions
        self.replication = replication
        run = uuid.uuid4().hex[:8]
        self.prefix = f"bench-baseline-{run}"
        self.submitted = f"{self.prefix}.submitted"
        self.referrals = {agency: f"{self.prefix}.referrals.{agency}" for agency in AGENCIES}
        self.events = f"{self.prefix}.events"
        self.traces: dict[str, ChainTrace] = {}
        self._producers: list[AIOKafkaProducer] = []
        self._consumers: list[AIOKafkaConsumer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._source: AIOKafkaProducer | None = None

    @property
    def topics(self) -> list[str]:
        return [self.submitted, *self.referrals.values(), self.events]

    async def start(self, timeout: float = 60.0) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="bench-baseline")
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(t, num_partitions=self.partitions, replication_factor=self.replication) for t in self.topics]
            )
        finally:
            await admin.close()
        self._source = await self._producer()
        routing_out = await self._producer()
        gateway_out = await self._producer()
        await self._consume(self.submitted, "routing", lambda r: self._route(r, routing_out))
        for agency, topic in self.referrals.items():
            await self._consume(topic, f"gateway.{agency}", self._deliverer(agency, gateway_out))
        await self._consume(self.events, "notify", self._record_event)
        # Every consumer must own its partitions before the first case, as the services do after start-up.
        deadline = time.monotonic() + timeout
        while not all(c.assignment() for c in self._consumers):
            if time.monotonic() > deadline:
                raise RuntimeError("the baseline's consumers got no partitions in time")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for consumer in self._consumers:
            await consumer.stop()
        for producer in self._producers:
            await producer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="bench-baseline")
        await admin.start()
        try:
            with contextlib.suppress(Exception):  # a leftover topic of a benchmark harms nothing
                await admin.delete_topics(self.topics)
        finally:
            await admin.close()

    async def submit(self) -> ChainTrace:
        """Send one case-sized record, as intake's relay does; return its trace."""
        assert self._source is not None
        case_id = str(uuid.uuid4())
        trace = ChainTrace(case_id, time.time())
        self.traces[case_id] = trace
        await self._source.send(
            self.submitted, payload(case_id, self.sizes["case.submitted"], "submitted"), key=case_id.encode()
        )
        return trace

    async def _producer(self) -> AIOKafkaProducer:
        # The services' producer settings: idempotent, acks=all.
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all")
        await producer.start()
        self._producers.append(producer)
        return producer

    async def _consume(self, topic: str, group: str, handle: Callable[[Any], Awaitable[list[Any]]]) -> None:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=self.bootstrap, group_id=f"{self.prefix}.{group}", auto_offset_reset="earliest"
        )
        await consumer.start()
        self._consumers.append(consumer)

        async def loop() -> None:
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                pending: list[Any] = []
                for records in batches.values():
                    for record in records:
                        pending += await handle(record)
                if pending:
                    await asyncio.gather(*pending)

        self._tasks.append(asyncio.create_task(loop(), name=f"baseline {group}"))

    async def _route(self, record: Any, producer: AIOKafkaProducer) -> list[Any]:
        now = time.time()
        body = json.loads(record.value)
        trace = self.traces.get(body["case_id"])
        if trace is not None:
            trace.routed_in = now
        key = record.key
        case_id = body["case_id"]
        routed = payload(case_id, self.sizes["case.routed"], "routed")
        futures = [await producer.send(self.events, routed, key=key)]
        for agency, topic in self.referrals.items():
            referral = payload(case_id, self.sizes["referral.requested"], "requested", agency)
            futures.append(await producer.send(topic, referral, key=key))
        if trace is not None:
            trace.routed_out = time.time()
        return futures

    def _deliverer(self, agency: str, producer: AIOKafkaProducer) -> Callable[[Any], Awaitable[list[Any]]]:
        async def deliver(record: Any) -> list[Any]:
            now = time.time()
            body = json.loads(record.value)
            trace = self.traces.get(body["case_id"])
            if trace is not None:
                trace.agency_in[agency] = now
            delivered = payload(body["case_id"], self.sizes["referral.delivered"], "delivered", agency)
            future = await producer.send(self.events, delivered, key=record.key)
            if trace is not None:
                trace.agency_out[agency] = time.time()
            return [future]

        return deliver

    async def _record_event(self, record: Any) -> list[Any]:
        now = time.time()
        body = json.loads(record.value)
        trace = self.traces.get(body["case_id"])
        if trace is None or body["kind"] != "delivered":
            return []  # the routed event is not on the measured path
        trace.events_in[body["agency"]] = now
        if len(trace.events_in) >= len(self.referrals):
            trace.done.set()
        return []
