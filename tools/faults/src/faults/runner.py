"""Running scenarios: a real stack on free ports in a temporary folder, the load and the faults side by side,
then waiting for the system to drain and counting what became of every case."""

import asyncio
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from devstack.stack import Stack, StackPorts

from faults import observe
from faults.load import Load
from faults.outcome import Outcome, count, dead_letter_positions
from faults.scenarios import SERVICES, Context, Options, Scenario

Say = Callable[[str], None]

# The agencies accept every referral, five seconds after receiving it (their acknowledgement then goes to notify).
SIMULATOR_BEHAVIOUR = {"default": {"action": "accept", "delay_seconds": 5.0}}


@dataclass
class RunSettings:
    cases: int = 3000
    concurrency: int = 8
    rate: float = 20.0  # cases per second offered to intake
    drain_timeout: float = 900.0
    timelines: int = 200  # cases whose timeline is read back from notify's API
    wait_for_acks: bool = True  # drained only once every agency's acknowledgement reached notify (or was refused)
    options: Options = field(default_factory=Options)
    seed: int | None = None
    keep_state: bool = False
    log_level: str = "WARNING"
    # devstack's fast mode (fsync and synchronous_commit off): a commit may be answered before it is durable, so a
    # stop without checkpoint can lose what intake acknowledged. Only to show that the suite notices.
    unsafe_postgres: bool = False


def stack_env(kafka_nodes: int, log_level: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SIMULATOR_BEHAVIOUR": json.dumps(SIMULATOR_BEHAVIOUR),
        "LOG_LEVEL": log_level,
        # The agencies keep retrying an acknowledgement notify cannot take yet (it may be down) for 10 minutes.
        "SIMULATOR_ACK_RETRY_SECONDS": "600",
        # The faults are under test, not the per-credential rate limit (one credential submits every case).
        "RATE_LIMIT_PER_SECOND": "1000000",
        "RATE_LIMIT_BURST": "1000000",
    }
    if kafka_nodes >= 3:
        env["TOPIC_REPLICATION_FACTOR"] = "3"
    return env


@contextmanager
def running_stack(kafka_nodes: int, settings: RunSettings, say: Say) -> Iterator[Stack]:
    """A whole stack in a temporary folder on free ports; PostgreSQL durable (fsync and synchronous commits on,
    unless `unsafe_postgres`), as a stop without checkpoint must not lose a commit intake acknowledged."""
    state = Path(tempfile.mkdtemp(prefix="onestop-faults-"))
    state.chmod(0o755)  # PostgreSQL runs as its own user when we are root
    stack = Stack(
        state,
        StackPorts.free(),
        kafka_nodes=kafka_nodes,
        fast_postgres=settings.unsafe_postgres,
        env=stack_env(kafka_nodes, settings.log_level),
        ready_timeout=settings.options.ready_timeout,
    )
    say(f"starting a stack with {kafka_nodes} Kafka node(s) in {state} ...")
    began = time.monotonic()
    stack.start()
    say(f"stack ready in {time.monotonic() - began:.0f}s")
    failed = True
    try:
        yield stack
        failed = False
    finally:
        stack.stop()
        if settings.keep_state or failed:
            say(f"state and logs kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)


class Observer:
    """The outside view of one stack, kept across the scenarios run on it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.tail = observe.TopicTail(stack.kafka.bootstrap_servers)
        caseworker = {"authorization": f"Bearer {stack.token('caseworker')}"}
        self.client = httpx.AsyncClient(timeout=30.0, trust_env=False, headers=caseworker)
        self._received: tuple[float, list[dict[str, Any]]] | None = None

    async def __aenter__(self) -> "Observer":
        await self.tail.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.tail.stop()
        await self.client.aclose()

    async def received(self, max_age: float = 0.0) -> list[dict[str, Any]]:
        """The agencies' record; while draining, at most one read per `max_age` seconds (it is large to build)."""
        if self._received is None or time.monotonic() - self._received[0] > max_age:
            self._received = (
                time.monotonic(),
                await observe.simulator_record(self.client, self.stack.url("agency-simulator")),
            )
        return self._received[1]

    async def agencies(self) -> list[str]:
        answer = await self.client.get(f"{self.stack.url('routing')}/agencies")
        answer.raise_for_status()
        return [str(a["id"]) for a in answer.json()]


async def run_scenario(
    scenario: Scenario, stack: Stack, observer: Observer, settings: RunSettings, say: Say, cases: int | None = None
) -> Outcome:
    """The load and the scenario's faults side by side, then the drain, then the count."""
    rng = random.Random(settings.seed)
    earlier_dlq = dead_letter_positions(observer.tail)
    load = Load(
        stack.url("intake"),
        await observer.agencies(),
        cases if cases is not None else settings.cases,
        key_prefix=f"faults-{scenario.name}-{uuid.uuid4().hex[:8]}",
        concurrency=settings.concurrency,
        rate=settings.rate,
        token=stack.token("caseworker"),
    )
    ctx = Context(stack, load, observer.tail, settings.options, rng)
    outcome = Outcome(scenario.name, scenario.title)
    say(f"[{scenario.name}] {scenario.title}: {len(load.submissions)} cases at {settings.rate:g}/s")
    began = time.monotonic()
    results = await asyncio.gather(
        load.run(), scenario.inject(ctx), _progress(load, ctx, say, scenario.name), return_exceptions=True
    )
    for result in results[:2]:
        if isinstance(result, BaseException):
            raise result
    load_end = load.ended_at or time.monotonic()
    outcome.load_seconds = round(load_end - began, 1)
    last_fault = max([f.ended for f in ctx.faults], default=load_end)
    say(
        f"[{scenario.name}] load done in {outcome.load_seconds:.0f}s: {len(load.acknowledged)}/{len(load.submissions)}"
        f" acknowledged, {len(ctx.faults)} fault(s); waiting for the system to drain ..."
    )
    drained_at = await drain(ctx, observer, settings, say, scenario.name)
    outcome.drained = drained_at is not None
    if drained_at is not None:
        outcome.drain_seconds = round(max(0.0, drained_at - last_fault), 1)
    await _recheck_keys(load, observer.client)
    record = await observer.received()
    await scenario.verify(ctx, record)
    lags = await observe.settled_lags(stack.kafka.bootstrap_servers)
    count(ctx, outcome, observer.tail, record, lags, earlier_dlq)
    for name in SERVICES:
        outcome.outbox_backlog[name] = await observe.outbox_backlog(observer.client, stack.url(name))
    await _check_timelines(outcome, ctx, observer, settings.timelines)
    return outcome


async def _progress(load: Load, ctx: Context, say: Say, name: str) -> None:
    while not load.finished.is_set():
        await asyncio.sleep(15)
        done = sum(1 for s in load.submissions if s.case_id is not None or s.refused is not None)
        say(f"[{name}] {done}/{len(load.submissions)} submitted, {len(ctx.faults)} fault(s) so far")


async def drain(ctx: Context, observer: Observer, settings: RunSettings, say: Say, name: str) -> float | None:
    """Wait until every acknowledged case is routed, every referral taken by its agency (and acknowledged, if
    `wait_for_acks`), every consumer group caught up and every outbox empty. Returns when (monotonic), or None."""
    timeout = settings.drain_timeout
    deadline = time.monotonic() + timeout
    last_said = time.monotonic()
    while time.monotonic() < deadline:
        waiting = await _still_waiting(ctx, observer, settings.wait_for_acks)
        if not waiting:
            return time.monotonic()
        if time.monotonic() - last_said > 30:
            say(f"[{name}] draining: waiting for {waiting}")
            last_said = time.monotonic()
        await asyncio.sleep(ctx.options.poll_seconds)
    say(f"[{name}] did not drain within {timeout:.0f}s")
    return None


async def _still_waiting(ctx: Context, observer: Observer, wait_for_acks: bool) -> str:
    stack = observer.stack
    if not await observer.tail.caught_up():
        return "the topic reader to catch up"
    case_ids = {str(s.case_id) for s in ctx.load.acknowledged}
    routed: dict[str, set[str]] = {}
    ended: set[tuple[str, str]] = set()  # the gateway said delivered (or failed) on referral.events
    for record in observer.tail.events("referral.events"):
        event = record.event or {}
        case_id = str(event.get("case_id"))
        if case_id not in case_ids:
            continue
        if event.get("type") == "case.routed":
            routed.setdefault(case_id, set()).update(str(r["agency_id"]) for r in event["referrals"])
        elif event.get("type") in ("referral.delivered", "referral.failed"):
            ended.add((case_id, str(event.get("agency_id"))))
    if len(routed) < len(case_ids):
        return f"{len(case_ids) - len(routed)} case(s) to be routed"
    # Asked of the topic first: the agencies' record is large, and reading it often slows the agencies down.
    undelivered = sum(1 for c, agencies in routed.items() for a in agencies if (c, a) not in ended)
    if undelivered:
        return f"{undelivered} referral(s) to be delivered"
    try:
        received = await observer.received(max_age=10.0)
    except httpx.HTTPError:
        return "the agency simulator to answer"
    taken = {
        (str(e["case_id"]), str(e["agency_id"])): e
        for e in received
        if str(e["case_id"]) in case_ids and e.get("decision") is not None
    }
    missing = sum(1 for c, agencies in routed.items() for a in agencies if (c, a) not in taken)
    if missing:
        return f"{missing} referral(s) to reach their agency"
    pending = sum(1 for e in taken.values() if (e.get("ack") or {}).get("status") == "pending")
    if pending and wait_for_acks:
        return f"{pending} acknowledgement(s) to reach notify"
    try:
        lags = await observe.group_lags(stack.kafka.bootstrap_servers)
    except Exception:
        return "Kafka to answer"
    behind = [g.group_id for g in lags if g.total]
    if behind:
        return f"consumer groups to catch up ({', '.join(behind[:4])}{', ...' if len(behind) > 4 else ''})"
    for name in SERVICES:
        backlog = await observe.outbox_backlog(observer.client, stack.url(name))
        if backlog is None or backlog > 0:
            return f"{name}'s outbox to empty ({backlog})"
    return ""


async def _recheck_keys(load: Load, client: httpx.AsyncClient) -> None:
    """Ask intake again for a sample of acknowledged keys: each must still name its one case (a replay)."""
    for submission in load.acknowledged[:: max(1, len(load.acknowledged) // 50)]:
        try:
            await load.confirm(client, submission)
        except httpx.HTTPError:
            continue


async def _check_timelines(outcome: Outcome, ctx: Context, observer: Observer, sample: int) -> None:
    """Read back a sample of case timelines from notify: the case, its routing and each delivery must be there."""
    acknowledged = ctx.load.acknowledged
    chosen = ctx.rng.sample(acknowledged, min(sample, len(acknowledged)))
    routed: dict[str, int] = {}
    for record in observer.tail.events("referral.events"):
        event = record.event or {}
        if event.get("type") == "case.routed":
            routed[str(event["case_id"])] = len(event.get("referrals", []))
    incomplete = []
    for submission in chosen:
        events = await observe.timeline(observer.client, observer.stack.url("notify"), str(submission.case_id))
        types = [e["type"] for e in events]
        expected = routed.get(str(submission.case_id), 0)
        if "case.submitted" not in types or "case.routed" not in types or types.count("referral.delivered") < expected:
            incomplete.append(str(submission.case_id))
    outcome.timelines_checked = len(chosen)
    outcome.timelines_incomplete = len(incomplete)
    outcome.samples["timelines_incomplete"] = incomplete[:10]


def save(outcomes: list[Outcome], path: Path, settings: RunSettings, extra: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "run_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "settings": {
            "cases": settings.cases,
            "concurrency": settings.concurrency,
            "rate": settings.rate,
            "options": settings.options.__dict__,
        },
        "scenarios": [o.as_json() for o in outcomes],
        **(extra or {}),
    }
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
