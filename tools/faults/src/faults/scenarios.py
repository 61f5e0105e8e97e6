"""The faults: each scenario injects its own while the load runs, and notes when each fault began and ended.

Stopping and starting processes blocks (health checks, pg_ctl, JVM start-up), so it runs in a worker thread
while the load and the topic reader go on in the event loop.
"""

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from devstack import kafka_admin
from devstack.stack import Stack

from faults import cpu, hostile, timing
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
    # The outage scenarios (intake-outage, agency-outage): when the outage begins and how long it lasts (None: the
    # scenario's own, 2 and 5 minutes); the agency to fail, or to play hostile (None: the scenario's own).
    outage_start: float = 30.0
    outage_seconds: float | None = None
    agency: str | None = None
    # hostile: referrals given the full script (the rest are accepted plainly); the CPU window once the bad records
    # are parked and the most a service may use in it (% of one core).
    hostile_referrals: int = 60
    hostile_wait: float = 600.0
    cpu_window: float = 20.0
    cpu_limit: float = 20.0


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
    # The scenario's own checks: each count must be 0 for it to pass.
    checks: dict[str, int] = field(default_factory=dict)
    # Records the scenario wrote itself ((topic, partition, offset)): their DLQ copies are not real events lost.
    own_records: set[tuple[str, int, int]] = field(default_factory=set)
    # (case, agency) referrals whose failure the scenario allows (an agency down until its attempts ran out).
    excused: set[tuple[str, str]] = field(default_factory=set)

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
    # Found in the DLQ by its source offset (dlq.source.* headers) when set, else by its key.
    offset: int | None = None
    reasons: tuple[str, ...] = ()  # the dlq.reason it must carry (any, when empty)


class Scenario:
    name: ClassVar[str]
    number: ClassVar[int]
    title: ClassVar[str]
    kafka_nodes: ClassVar[int] = 1

    async def inject(self, ctx: Context) -> None:
        raise NotImplementedError

    async def verify(self, ctx: Context, received: list[dict[str, Any]]) -> None:
        """After the drain, before the count: the scenario's own checks (`ctx.checks`) and figures (`ctx.notes`).
        `received` is the agencies' record (the simulator's `GET /received`)."""


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


# --- an agency that answers with hostile input; outages of intake and of one agency --------------------------------

REFERRAL_EVENTS_TOPIC = "referral.events"
# The gateway's retry policy when the stack does not set it (agency_gateway.settings): attempts per referral, the
# first included, before `referral.failed`.
GATEWAY_DELIVERY_ATTEMPTS = 6


def _case_ids(ctx: Context) -> set[str]:
    return {str(s.case_id) for s in ctx.load.submissions if s.case_id is not None}


def _events_of(ctx: Context, case_ids: set[str]) -> list[dict[str, Any]]:
    return [r.event for r in ctx.tail.events(REFERRAL_EVENTS_TOPIC) if str((r.event or {}).get("case_id")) in case_ids]  # type: ignore[misc]


def _service_pids(ctx: Context) -> dict[str, int]:
    pids = {name: ctx.stack.processes[name].pid for name in SERVICES if name in ctx.stack.processes}
    return {name: pid for name, pid in pids.items() if pid is not None}


def _simulator(ctx: Context) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=ctx.stack.url("agency-simulator"), timeout=30.0, trust_env=False)


async def _agency_ids(ctx: Context) -> list[str]:
    token = ctx.stack.token("caseworker")
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as client:
        answer = await client.get(f"{ctx.stack.url('routing')}/agencies", headers={"authorization": f"Bearer {token}"})
        answer.raise_for_status()
        return [str(a["id"]) for a in answer.json()]


class HostileAgencyAnswers(Scenario):
    name, number = "hostile", 7
    title = "one agency answers with malformed, out-of-range, foreign, replayed and reordered answers (HTTP, Kafka)"
    default_agency = "police"

    def __init__(self) -> None:
        self.player: hostile.HostileAgency | None = None
        self.parked_after: float | None = None  # seconds from the last bad record sent until all were in the DLQ
        self._watch: asyncio.Task[None] | None = None

    async def inject(self, ctx: Context) -> None:
        """The simulator plays the agency silent; each referral it takes gets the hostile script from here, while the
        load goes on. Returns once every referral routed to the agency (of this load's cases) has been answered."""
        agency_id = ctx.options.agency or self.default_agency
        others = [a for a in await _agency_ids(ctx) if a != agency_id]
        player = hostile.HostileAgency(
            agency_id,
            notify_url=ctx.stack.url("notify"),
            simulator_url=ctx.stack.url("agency-simulator"),
            bootstrap_servers=ctx.stack.kafka.bootstrap_servers,
            token=ctx.stack.token("agency", agency_id),
            scripted=ctx.options.hostile_referrals,
            rng=ctx.rng,
        )
        self.player = player
        started = time.monotonic()
        deadline = started + ctx.options.hostile_wait
        cpu_peaks: dict[str, float] = {}
        sampling = asyncio.create_task(_sample_cpu(ctx, cpu_peaks))
        try:
            async with _simulator(ctx) as simulator, player.playing(simulator):
                while time.monotonic() < deadline:
                    case_ids = _case_ids(ctx)
                    with contextlib.suppress(httpx.HTTPError):
                        await player.take_new(simulator, case_ids, others)
                    if ctx.load.finished.is_set() and self._all_taken(ctx, agency_id, player.taken):
                        break
                    await asyncio.sleep(1.0)
                else:
                    ctx.notes["hostile_gave_up_waiting_s"] = ctx.options.hostile_wait
                await player.finish()
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        report = player.report
        ctx.notes["cpu_peak_percent_during_hostile_answers"] = cpu_peaks
        groups = await _readers(ctx, f"acks.{agency_id}") or ("notify.acks",)
        for n, result in enumerate(report.kafka):
            position = (result.topic, result.partition, result.offset)
            ctx.own_records.add(position)
            if result.move.expect == "dead-letter":
                key = f"hostile:{n}:{result.move.label}"
                size = len(result.move.value or b"")
                ctx.poison.append(
                    Poison(
                        key,
                        result.topic,
                        result.partition,
                        f"hostile: {result.move.label}",
                        size,
                        groups,
                        offset=result.offset,
                        reasons=result.move.reasons,
                    )
                )
        ctx.faults.append(
            Fault(
                "hostile answers",
                f"agency {agency_id}",
                started,
                time.monotonic(),
                {
                    "referrals_scripted": len(report.scripted),
                    "referrals_answered_plainly": len(report.plain),
                    "http_requests": len(report.http),
                    "kafka_records": len(report.kafka),
                },
            )
        )
        self._watch = asyncio.create_task(self._watch_parking(ctx))

    def _all_taken(self, ctx: Context, agency_id: str, taken: set[str]) -> bool:
        """Every acknowledged case routed (as read from the topic) and each of its referrals to the agency taken."""
        case_ids = {str(s.case_id) for s in ctx.load.acknowledged}
        routed: set[str] = set()
        wanted: set[str] = set()
        for event in _events_of(ctx, case_ids):
            if event.get("type") == "case.routed":
                routed.add(str(event["case_id"]))
                wanted |= {str(r["referral_id"]) for r in event["referrals"] if r["agency_id"] == agency_id}
        return routed >= case_ids and wanted <= taken

    async def _watch_parking(self, ctx: Context) -> None:
        """How long after the last bad record was sent every one of them was read back from the DLQ."""
        assert self.player is not None
        expected = {(p.topic, p.partition, p.offset) for p in ctx.poison if p.offset is not None}
        last_sent = self.player.report.last_sent or time.monotonic()
        while True:
            found = {r.dlq_source for r in ctx.tail.dead_letters()}
            if expected <= found:
                self.parked_after = round(time.monotonic() - last_sent, 1)
                return
            await asyncio.sleep(0.5)

    async def verify(self, ctx: Context, received: list[dict[str, Any]]) -> None:
        assert self.player is not None
        report = self.player.report
        if self._watch is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._watch, 120.0)
        ctx.notes["bad_records_in_dlq_after_s"] = self.parked_after
        # The CPU once every bad record is parked and the load has drained: a consumer stuck on one would spin here.
        usage = await cpu.measure(_service_pids(ctx), ctx.options.cpu_window)
        ctx.notes[f"cpu_percent_over_{ctx.options.cpu_window:g}s_after_parked"] = usage
        ctx.checks[f"services above {ctx.options.cpu_limit:g}% CPU once the bad records were parked"] = sum(
            1 for v in usage.values() if v is not None and v > ctx.options.cpu_limit
        )

        verdicts = [(r, hostile.judge_http(r)) for r in report.http]
        wrong = [(r, v) for r, v in verdicts if v is not None]
        ctx.checks["HTTP requests answered 5xx or not at all"] = sum(
            1 for r, _ in wrong if r.status is None or r.status >= 500
        )
        ctx.checks["bad HTTP requests not refused with 4xx"] = sum(
            1 for r, _ in wrong if r.move.expect == "refused" and r.status is not None and r.status < 400
        )
        ctx.checks["another agency's referral not answered 404"] = sum(
            1 for r, _ in wrong if r.move.must_status and r.status is not None and 400 <= r.status < 500
        )
        ctx.checks["HTTP replays that changed something"] = sum(
            1 for r, _ in wrong if r.move.expect == "replay" and r.status is not None and r.status < 500
        )
        ctx.checks["good HTTP answers refused"] = sum(
            1 for r, _ in wrong if r.move.expect == "applied" and r.status is not None and r.status < 500
        )
        figures = hostile.http_figures(report.http)
        ctx.notes["http_answers_by_move"] = figures["answers"]
        ctx.notes["http_wrong_answers"] = figures["wrong"]

        # Kafka: the bad records' DLQ copies are counted with the poison (reason included); replays and good answers
        # must not be there at all, and each good answer's own event must be on referral.events.
        in_dlq: dict[tuple[str, int, int], list[str]] = defaultdict(list)
        for record in ctx.tail.dead_letters():
            if record.dlq_source is not None:
                in_dlq[record.dlq_source].append(record.header("dlq.reason") or "?")
        kept_out = [r for r in report.kafka if r.move.expect != "dead-letter"]
        ctx.checks["Kafka replays or good answers dead-lettered"] = sum(
            1 for r in kept_out if (r.topic, r.partition, r.offset) in in_dlq
        )
        case_ids = _case_ids(ctx)
        events = _events_of(ctx, case_ids)
        published = {str(e.get("event_id")) for e in events}
        ctx.checks["good Kafka answers whose event is not on referral.events"] = sum(
            1 for r in kept_out if r.move.expect == "applied" and r.move.event_id not in published
        )
        reasons: Counter[str] = Counter()
        for r in report.kafka:
            for reason in in_dlq.get((r.topic, r.partition, r.offset), []):
                reasons[f"{r.move.label}: {reason}"] += 1
        ctx.notes["dlq_reasons_by_move"] = dict(sorted(reasons.items()))

        # Every good answer applied once; no bad one changed a referral, the agency's own or another agency's.
        expected = {r: dict(hostile.SCRIPTED_EVENTS) for r in report.scripted}
        expected |= {r: dict(hostile.PLAIN_EVENTS) for r in report.plain}
        untouched = {
            t.other_referral_id: {"referral.accepted": 1}
            for t in [*report.scripted.values(), *report.plain.values()]
            if t.other_agency_id != "nobody"
        }
        judged = hostile.judge_events(expected, untouched, events)
        ctx.checks["the agency's good answers not applied (referrals)"] = len(judged["not_applied"])
        ctx.checks["referrals changed by a bad answer"] = len(judged["changed"])
        ctx.checks["referrals notify never showed the agency"] = len(report.unknown_to_notify)
        # The other agencies' answers (the simulator's, over HTTP) beside the hostile one: each applied.
        accepted = {str(e.get("referral_id")) for e in events if e.get("type") == "referral.accepted"}
        # An answer still waiting for its delay (a short run that does not wait for them) is not judged.
        answered = [
            e
            for e in received
            if str(e["case_id"]) in case_ids
            and e["agency_id"] != self.player.agency_id
            and e.get("decision") == "accept"
            and (e.get("ack") or {}).get("status") not in ("pending", "not_planned", None)
        ]
        other_not_applied = sum(1 for e in answered if str(e["referral_id"]) not in accepted)
        ctx.checks["other agencies' good answers not applied"] = other_not_applied
        ctx.notes["hostile"] = {
            "agency": report.agency_id,
            "referrals_scripted": len(report.scripted),
            "referrals_answered_plainly": len(report.plain),
            "http_requests": len(report.http),
            "http_by_expectation": dict(Counter(r.move.expect for r in report.http)),
            "kafka_records": len(report.kafka),
            "kafka_by_expectation": dict(Counter(r.move.expect for r in report.kafka)),
            "other_agencies_answers_applied": f"{len(answered) - other_not_applied}/{len(answered)}",
            "scripts_without_another_agencys_referral": report.without_other,
            "http_sent_again_after_a_dropped_connection": sum(1 for r in report.http if r.retried_after),
        }
        ctx.notes["samples"] = {
            "not_applied": judged["not_applied"][:5],
            "changed": judged["changed"][:5],
            "http_wrong": [f"{r.move.label} {r.referral_id}: {v}" for r, v in wrong[:10]],
        }


async def _readers(ctx: Context, topic: str) -> tuple[str, ...]:
    groups = await kafka_admin.consumer_groups(ctx.stack.kafka.bootstrap_servers)
    return tuple(sorted(g.group_id for g in groups if topic in set(g.topics) | {tp.topic for tp in g.committed}))


async def _sample_cpu(ctx: Context, peaks: dict[str, float]) -> None:
    """Each service's highest CPU over 5-second windows, for the figures."""
    while True:
        for name, value in (await cpu.measure(_service_pids(ctx), 5.0)).items():
            if value is not None:
                peaks[name] = max(value, peaks.get(name, 0.0))


class _Outage(Scenario):
    """An outage under load: when it began and ended (Unix seconds), and what it did to the referrals."""

    default_seconds: ClassVar[float]

    def __init__(self) -> None:
        self.began: float | None = None
        self.ended: float | None = None

    def seconds(self, ctx: Context) -> float:
        return ctx.options.outage_seconds if ctx.options.outage_seconds is not None else self.default_seconds

    def failures(self, ctx: Context) -> list[dict[str, Any]]:
        """The `referral.failed` events of this load's cases."""
        return [e for e in _events_of(ctx, _case_ids(ctx)) if e.get("type") == "referral.failed"]

    def latencies(self, ctx: Context, **which: Any) -> dict[str, Any]:
        found = timing.referrals(_events_of(ctx, _case_ids(ctx)), _case_ids(ctx))
        assert self.began is not None and self.ended is not None
        return {k: v for k, v in timing.latency_by_window(found.values(), self.began, self.ended, **which).items()}


class IntakeOutage(_Outage):
    name, number, title = "intake-outage", 8, "intake stopped for 2 minutes under load, then started again"
    default_seconds = 120.0

    async def inject(self, ctx: Context) -> None:
        await asyncio.sleep(ctx.options.outage_start)
        process = ctx.stack.processes["intake"]
        started = time.monotonic()
        self.began = time.time()
        await ctx.blocking(process.stop)
        await asyncio.sleep(self.seconds(ctx))
        await ctx.blocking(process.start)
        await ctx.blocking(process.wait_ready, ctx.options.ready_timeout)
        self.ended = time.time()
        ctx.faults.append(
            Fault(
                "stopped (SIGTERM), started again", "intake", started, time.monotonic(), {"down_s": self.seconds(ctx)}
            )
        )

    async def verify(self, ctx: Context, received: list[dict[str, Any]]) -> None:
        """No referral fails because intake was down: those routed before the stop wait for it, then go."""
        assert self.began is not None and self.ended is not None
        failed = self.failures(ctx)
        ctx.checks["referrals failed during the system's own outage (referral.failed)"] = len(failed)
        found = timing.referrals(_events_of(ctx, _case_ids(ctx)), _case_ids(ctx))
        before = [r for r in found.values() if r.routed_at < self.began]
        waited = [r for r in before if r.delivered_at is not None and r.delivered_at >= self.began]
        # Routed before intake was back, delivered only after it stopped: each waited for intake instead of failing.
        held = [
            r
            for r in found.values()
            if r.routed_at <= self.ended and r.delivered_at is not None and r.delivered_at >= self.began
        ]
        ctx.notes["intake_outage"] = {
            "down_s": round(self.ended - self.began, 1),
            "referrals_routed_before_the_stop": len(before),
            "of_which_delivered_after_the_stop": len(waited),
            "referrals_held_while_intake_was_down": len(held),
            "of_which_failed": sum(1 for r in before if r.failed),
            "referrals_routed_during": sum(1 for r in found.values() if self.began <= r.routed_at <= self.ended),
            "failed_samples": [f"{e.get('agency_id')}: {e.get('reason')}" for e in failed[:5]],
        }
        ctx.notes["delivery_latency_s"] = self.latencies(ctx)


class AgencyOutage(_Outage):
    name, number, title = "agency-outage", 9, "one agency answers every delivery with 503 for 5 minutes under load"
    default_seconds = 300.0
    default_agency = "legal-aid"

    def __init__(self) -> None:
        super().__init__()
        self.agency_id = self.default_agency

    async def inject(self, ctx: Context) -> None:
        self.agency_id = ctx.options.agency or self.default_agency
        await asyncio.sleep(ctx.options.outage_start)
        started = time.monotonic()
        async with _simulator(ctx) as simulator:
            behaviour = f"/behaviour/{self.agency_id}"
            answer = await simulator.put(behaviour, json={"action": "fail", "status": 503, "times": None})
            answer.raise_for_status()
            self.began = time.time()
            try:
                await asyncio.sleep(self.seconds(ctx))
            finally:
                self.ended = time.time()
                (await simulator.delete(behaviour)).raise_for_status()
        ctx.faults.append(
            Fault(
                "webhook answers 503",
                f"agency {self.agency_id}",
                started,
                time.monotonic(),
                {"for_s": self.seconds(ctx)},
            )
        )

    async def verify(self, ctx: Context, received: list[dict[str, Any]]) -> None:
        """The failing agency's referrals may fail only once their attempts ran out; every other agency's never.
        The others' delivery latency during the outage must be comparable to before it."""
        assert self.began is not None and self.ended is not None
        attempts = int(ctx.stack.env.get("DELIVERY_ATTEMPTS", GATEWAY_DELIVERY_ATTEMPTS))
        failed = self.failures(ctx)
        ran_out = [
            e for e in failed if e.get("agency_id") == self.agency_id and int(e.get("attempts") or 0) >= attempts
        ]
        ctx.excused |= {(str(e["case_id"]), self.agency_id) for e in ran_out}
        ctx.checks["referrals failed by the system's own outage (referral.failed, attempts left)"] = len(failed) - len(
            ran_out
        )
        others = self.latencies(ctx, exclude={self.agency_id})
        verdict = timing.comparable(others["before"], others["during"])
        ctx.checks["other agencies slowed during the outage"] = int(verdict is False)
        case_ids = _case_ids(ctx)
        mine = [e for e in received if e["agency_id"] == self.agency_id and str(e["case_id"]) in case_ids]
        ctx.notes["agency_outage"] = {
            "agency": self.agency_id,
            "down_s": round(self.ended - self.began, 1),
            "rule": (
                f"a referral to {self.agency_id} may fail only after {attempts} delivery attempts (DELIVERY_ATTEMPTS); "
                "after 5 failures in a row the gateway's circuit opens for 30 s, during which referrals wait on the "
                "retry topic without using an attempt, and each reopening lets one probe (one attempt) through"
            ),
            "failed_with_attempts_run_out": len(ran_out),
            "failed_otherwise": [
                f"{e.get('agency_id')} after {e.get('attempts')}: {e.get('reason')}" for e in failed if e not in ran_out
            ][:5],
            "webhook_calls_refused_503": sum(int(e.get("failed_deliveries", 0)) for e in mine),
            "its_referrals": len(mine),
            "other_agencies_comparable": verdict,
        }
        ctx.notes["delivery_latency_s_other_agencies"] = others
        ctx.notes["delivery_latency_s_failing_agency"] = self.latencies(ctx, agencies={self.agency_id})


SCENARIOS: tuple[type[Scenario], ...] = (
    KillServices,
    RestartPostgres,
    RestartKafka,
    KillPartitionLeader,
    Replay,
    PoisonRecords,
    HostileAgencyAnswers,
    IntakeOutage,
    AgencyOutage,
)


def scenario_named(name: str) -> type[Scenario]:
    for scenario in SCENARIOS:
        if name in (scenario.name, str(scenario.number)):
            return scenario
    raise KeyError(name)
