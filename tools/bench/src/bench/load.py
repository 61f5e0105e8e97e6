"""Driving cases into intake and watching them come out of the pipeline, from the outside."""

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.cases import CASE_BODY

_BODY = json.dumps(CASE_BODY).encode()
_HEADERS = {"content-type": "application/json"}
# Submissions in flight at once, at most (the maximum-rate window is 64 by default), and how long one may take.
MAX_CONNECTIONS = 128
SUBMIT_TIMEOUT_SECONDS = 30.0
# Beyond this many submissions waiting for an answer the open loop stops offering more (and counts it).
MAX_OUTSTANDING = 256
# Intake's answers worth asking again with the same Idempotency-Key (as tools/faults does).
RETRIED_STATUSES = frozenset({500, 502, 503, 504})


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@dataclass
class CaseTrace:
    """One submitted case: epoch seconds at each stage, on the one clock every process of this machine shares."""

    case_id: str
    sent: float
    accepted: float  # intake's 201 arrived
    routed: float | None = None  # case.routed occurred_at (routing)
    referrals: int | None = None  # how many referrals routing made
    delivered: dict[str, float] = field(default_factory=dict)  # referral id -> referral.delivered occurred_at
    acknowledged: dict[str, float] = field(default_factory=dict)  # referral id -> referral.accepted occurred_at
    received: dict[str, float] = field(default_factory=dict)  # referral id -> the agency's receipt (simulator)
    done_at: float | None = None  # when the gateway's last referral.delivered was seen
    done: asyncio.Event = field(default_factory=asyncio.Event)  # every referral delivered

    @property
    def all_delivered(self) -> bool:
        return self.referrals is not None and len(self.delivered) >= self.referrals

    @property
    def all_acknowledged(self) -> bool:
        return self.referrals is not None and len(self.acknowledged) >= self.referrals


class Tracker:
    """The cases of one phase; the observer fills in what happens to them."""

    def __init__(self) -> None:
        self.cases: dict[str, CaseTrace] = {}
        self.completed = 0  # cases whose referrals were all delivered
        self.acknowledged = 0  # cases whose referrals were all acknowledged
        self.rejected: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()  # attempts asked again with the same Idempotency-Key
        self.first_sent: float | None = None
        self.last_done: float | None = None

    def register(self, case_id: str, sent: float, accepted: float, early: list[dict[str, Any]]) -> CaseTrace:
        trace = CaseTrace(case_id, sent, accepted)
        self.cases[case_id] = trace
        if self.first_sent is None or sent < self.first_sent:
            self.first_sent = sent
        for body in early:
            self.apply(trace, body)
        return trace

    def apply(self, trace: CaseTrace, body: dict[str, Any]) -> None:
        kind = body.get("type")
        if kind == "case.routed" and trace.routed is None:
            trace.routed = epoch(body["occurred_at"])
            trace.referrals = len(body["referrals"])
        elif kind == "referral.delivered":
            trace.delivered.setdefault(body["referral_id"], epoch(body["occurred_at"]))
        elif kind == "referral.accepted" and body["referral_id"] not in trace.acknowledged:
            trace.acknowledged[body["referral_id"]] = epoch(body["occurred_at"])
            self.acknowledged += int(trace.all_acknowledged)
        if trace.all_delivered and not trace.done.is_set():
            trace.done_at = time.time()
            self.last_done = trace.done_at
            self.completed += 1
            trace.done.set()


class Observer:
    """Reads referral.events as a plain consumer (no group, nothing committed) and feeds the current tracker."""

    WATCHED = frozenset({"case.routed", "referral.delivered", "referral.accepted"})

    def __init__(self, bootstrap_servers: str, topic: str = "referral.events") -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100
        )
        self.tracker: Tracker | None = None
        self._early: dict[str, list[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self.consumer._client.force_metadata_update()
            partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise RuntimeError(f"topic {self.topic} not found: is the pipeline running?")
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(assigned)
        await self.consumer.seek_to_end(*assigned)
        for tp in assigned:  # resolve the positions now, so nothing published after this is missed
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run(), name="observer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()

    def follow(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._early.clear()

    def take_early(self, case_id: str) -> list[dict[str, Any]]:
        """Events of a case seen before intake's answer reached the driver (routing can be that quick)."""
        return self._early.pop(case_id, [])

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=200, max_records=2000)
            for records in batches.values():
                for record in records:
                    self._on_record(record.value)

    def _on_record(self, value: bytes | None) -> None:
        if value is None or self.tracker is None:
            return
        try:
            body = json.loads(value)
        except ValueError:
            return
        if body.get("type") not in self.WATCHED:
            return
        trace = self.tracker.cases.get(body.get("case_id", ""))
        if trace is not None:
            self.tracker.apply(trace, body)
        elif len(self._early) < 100_000:
            self._early.setdefault(body.get("case_id", ""), []).append(body)


class Traced(Protocol):
    done: asyncio.Event


Submit = Callable[[], Coroutine[Any, Any, Traced | None]]


class Driver:
    """Submits the benchmark case to intake and registers each accepted case with the observer's tracker.

    Through aiohttp, its connections kept alive: the load generator shares the cores it measures, and httpx cost
    it four times the CPU per call (py-spy, issue #15)."""

    def __init__(self, intake_url: str, observer: Observer, token: str | None = None) -> None:
        self.url = intake_url.rstrip("/") + "/cases"
        self.observer = observer
        self.headers = {**_HEADERS, "authorization": f"Bearer {token}"} if token else _HEADERS
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made in the running event loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=SUBMIT_TIMEOUT_SECONDS),
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def submit(self, tracker: Tracker, retry_for: float = 0.0) -> CaseTrace | None:
        """One case. With `retry_for` it carries an Idempotency-Key of its own and a 5xx or a transport error is
        asked again with the same key, with backoff, for up to that many seconds: never a case recorded twice."""
        headers = {**self.headers, "idempotency-key": uuid.uuid4().hex} if retry_for else self.headers
        deadline, pause = time.monotonic() + retry_for, 0.2
        sent = time.time()
        while True:
            try:
                async with self._client().post(self.url, data=_BODY, headers=headers) as answer:
                    status, body = answer.status, await answer.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                failure = type(error).__name__
            else:
                if status in (200, 201):  # 200: intake replays the case a lost answer had recorded
                    break
                failure = str(status)
                if status not in RETRIED_STATUSES:
                    deadline = 0.0
            if time.monotonic() + pause > deadline:
                tracker.rejected[failure] += 1
                return None
            tracker.retried[failure] += 1
            await asyncio.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(2 * pause, 2.0)
        accepted = time.time()
        case_id = json.loads(body)["case_id"]
        return tracker.register(case_id, sent, accepted, self.observer.take_early(case_id))


async def at_rate(submit: Submit, rate: float, duration: float, tick: Callable[[], None]) -> int:
    """Open loop: one case every 1/rate seconds whatever happens downstream."""
    count = max(1, round(rate * duration))
    tasks: set[asyncio.Task[Any]] = set()
    fell_behind = 0
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        while len(tasks) >= MAX_OUTSTANDING:
            fell_behind += 1
            await asyncio.sleep(0.005)
        task = asyncio.create_task(submit())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        tick()
    if tasks:
        await asyncio.gather(*tasks)
    return fell_behind


async def in_bulk(submit: Submit, count: int, concurrency: int, tick: Callable[[], None]) -> None:
    """`count` submissions as fast as intake answers them: `concurrency` at a time, each waiting only for its answer."""
    left = count

    async def one_after_another() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            tick()
            await submit()

    await asyncio.gather(*(one_after_another() for _ in range(min(concurrency, count))))


async def as_fast_as_possible(
    submit: Submit, window: int, duration: float, tick: Callable[[], None], case_timeout: float = 120.0
) -> None:
    """Closed loop: keep `window` cases between submission and their last delivery, for `duration` s."""
    slots = asyncio.Semaphore(window)
    submitting: set[asyncio.Task[Any]] = set()
    waiting: set[asyncio.Task[Any]] = set()

    async def one() -> None:
        try:
            trace = await submit()
            if trace is None:
                await asyncio.sleep(0.05)  # intake refused: don't spin
                return
            task = asyncio.current_task()
            assert task is not None
            submitting.discard(task)
            waiting.add(task)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(trace.done.wait(), case_timeout)
        finally:
            slots.release()

    end = time.monotonic() + duration
    while True:
        remaining = end - time.monotonic()
        if remaining <= 0:
            break
        try:
            await asyncio.wait_for(slots.acquire(), remaining)
        except TimeoutError:
            break
        task = asyncio.create_task(one())
        submitting.add(task)
        task.add_done_callback(submitting.discard)
        task.add_done_callback(waiting.discard)
        tick()
    # Let the last submissions get their answer; the drain waits for the cases themselves.
    if submitting:
        await asyncio.wait(list(submitting))
    for task in list(waiting):
        task.cancel()
