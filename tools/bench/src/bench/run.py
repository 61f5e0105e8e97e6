"""The benchmark's phases: the pipeline at a fixed rate and at its maximum, scaled out, catching up on a queue, and
the bare baseline."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bench.baseline import BareChain
from bench.cases import AGENCIES, event_sizes
from bench.load import Driver, Observer, Tracker, as_fast_as_possible, at_rate, in_bulk
from bench.measure import (
    ack_statuses,
    apply_receipts,
    baseline_figures,
    catch_up_figures,
    cpu_per_case,
    notify_hop_seconds,
    pipeline_figures,
    received_by_case,
)
from bench.procs import ProcessSampler
from bench.statements import Statements, per_case

TIMELINE_SAMPLE = 50
# Catch-up: how long a submission is retried (same Idempotency-Key); how long notify may stay silent while the
# simulator's acknowledgements, refused while notify was starting, back off (up to 30 s).
RETRY_SECONDS = 60.0
ACK_BACKOFF_SECONDS = 30.0


@dataclass
class Plan:
    """What to run: the offered rates, the window of the maximum-rate runs, how long each lasts."""

    rate: float = 20.0
    sweep: tuple[float, ...] = ()
    duration: float = 30.0
    window: int = 64
    drain_timeout: float = 60.0
    warmup_seconds: float = 3.0
    ack_stall_seconds: float = 5.0  # stop waiting for acknowledgements after this long without one (past the delay)
    scale_out: bool = True
    catch_up: int = 0  # cases queued while the consumers are stopped (0: no catch-up phase)
    baseline: bool = True


class Consumers(Protocol):
    """The consuming services of the benchmark's own stack, stopped and started again (the catch-up phase)."""

    names: tuple[str, ...]

    async def stop(self) -> None: ...

    def start(self) -> dict[str, int]:
        """Start them all, without waiting: their new pids."""
        ...

    async def wait_ready(self) -> None:
        """Until each answers healthy."""
        ...


@dataclass
class Target:
    """Where the running pipeline is, and what the benchmark may do to it."""

    intake_url: str
    notify_url: str
    simulator_url: str
    kafka: str
    topic_replication: int = 1
    own_stack: bool = False  # ours: the simulator's records may be cleared between phases
    token: str | None = None  # a caseworker's bearer token for intake and notify
    # Starts one more replica of a service and returns (name, pid, stop); None where that cannot be done.
    add_replica: Callable[[str], Awaitable[tuple[str, int, Callable[[], Awaitable[None]]]]] | None = None
    consumers: Consumers | None = None  # None where they cannot be stopped
    statements: Statements | None = None  # pg_stat_statements to reset and read per phase (`--statements`)


@dataclass
class Results:
    phases: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


SCALED_OUT = ("routing", "agency-gateway", "notify")


class Bench:
    def __init__(self, plan: Plan, target: Target, sampler: ProcessSampler, console: Console) -> None:
        self.plan = plan
        self.target = target
        self.sampler = sampler
        self.console = console
        self.results = Results()
        self.delay = 0.0  # the agencies' answer delay, as the simulator says
        self.client = httpx.AsyncClient(
            timeout=30.0,
            trust_env=False,
            limits=httpx.Limits(max_connections=128, max_keepalive_connections=128),
            headers={"authorization": f"Bearer {target.token}"} if target.token else None,
        )
        self.observer = Observer(target.kafka)
        self.driver = Driver(target.intake_url, self.observer, target.token)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )

    async def run(self) -> Results:
        p = self.plan
        behaviour = await self._get_json(f"{self.target.simulator_url}/behaviour")
        self.delay = float(behaviour.get("default", {}).get("delay_seconds", 0.0))
        await self.observer.start()
        self.sampler.start()
        try:
            with self.progress:
                await self._pipeline("warm-up", rate=10.0, duration=p.warmup_seconds, keep=False)
                for rate in sorted({p.rate, *p.sweep}):
                    await self._pipeline(f"pipeline at {rate:g} cases/s", rate=rate, duration=p.duration)
                await self._pipeline("pipeline at maximum rate", window=p.window, duration=p.duration)
                if p.scale_out:
                    await self._scaled_out()
                if p.catch_up:
                    await self._catch_up(p.catch_up)
                if p.baseline:
                    await self._baseline()
        finally:
            self.sampler.stop()
            await self.observer.stop()
            await self.client.aclose()
            await self.driver.close()
        return self.results

    async def _scaled_out(self) -> None:
        if self.target.add_replica is None:
            self.results.notes.append("scale-out skipped: replicas can only be started on the benchmark's own stack")
            return
        replicas = []
        try:
            # Every consuming service twice (intake is one HTTP endpoint the load generator drives; it keeps one).
            with self.console.status("starting a second routing, agency-gateway and notify ..."):
                for service in SCALED_OUT:
                    replicas.append(await self.target.add_replica(service))
            for name, pid, _ in replicas:
                self.sampler.add(name, pid)
            # The consumer groups rebalance onto the new members; let that settle before measuring.
            await self._pipeline("warm-up (2 replicas)", rate=10.0, duration=self.plan.warmup_seconds, keep=False)
            await self._pipeline(
                "2 replicas at maximum rate", window=self.plan.window, duration=self.plan.duration, replicas=2
            )
        finally:
            for name, _, stop in replicas:
                self.sampler.remove(name)
                await stop()

    async def _pipeline(
        self,
        name: str,
        *,
        rate: float | None = None,
        window: int | None = None,
        duration: float,
        replicas: int = 1,
        keep: bool = True,
    ) -> None:
        tracker = Tracker()
        self.observer.follow(tracker)
        await self._statements_from_zero()
        self.sampler.begin()
        sent = _Count()
        began = time.time()
        async with self._shown(name, duration, lambda: _status(sent, tracker)):
            if rate is not None:
                fell_behind = await at_rate(lambda: self.driver.submit(tracker), rate, duration, sent.tick)
            else:
                assert window is not None
                fell_behind = 0
                await as_fast_as_possible(lambda: self.driver.submit(tracker), window, duration, sent.tick)
        load_seconds = time.time() - began
        figures = await self._through(name, tracker, load_seconds, keep=keep)
        if not keep:
            return
        self.results.phases.append(
            {
                "name": name,
                "system": "pipeline",
                "mode": "rate" if rate is not None else "max",
                "offered_rate": rate,
                "window": window,
                "replicas": replicas,
                "load_seconds": round(load_seconds, 2),
                "submitted": sent.n,
                "open_loop_fell_behind": fell_behind,
                **figures,
            }
        )

    async def _catch_up(self, count: int) -> None:
        """Stop every consumer, queue `count` cases through intake as fast as it answers, start the consumers again
        and time the queue's drain: until every referral is delivered and acknowledged."""
        consumers = self.target.consumers
        if consumers is None:
            self.results.notes.append("catch-up skipped: only the benchmark's own stack can stop its consumers")
            return
        name = f"catch-up of {count} queued cases"
        tracker = Tracker()
        self.observer.follow(tracker)
        with self.console.status(f"stopping {', '.join(consumers.names)} ..."):
            for service in consumers.names:
                self.sampler.remove(service)
            await consumers.stop()
        await self._statements_from_zero()
        self.sampler.begin()
        sent = _Count()
        began = time.time()
        async with self._shown(f"{name}: queueing", count, lambda: _status(sent, tracker), lambda: sent.n):
            await in_bulk(
                lambda: self.driver.submit(tracker, retry_for=RETRY_SECONDS), count, self.plan.window, sent.tick
            )
        submit_seconds = time.time() - began
        started = time.time()
        # Their CPU counts from their start: a consumer may work through the queue before its neighbours are up.
        for service, pid in consumers.start().items():
            self.sampler.add(service, pid)
        with self.console.status(f"starting {', '.join(consumers.names)} ..."):
            await consumers.wait_ready()
        healthy = time.time()
        startup = {k: v["cpu_s"] for k, v in self.sampler.phase().items() if k in consumers.names}
        # The queue drains at what the pipeline sustains: wait for it, however long it is.
        timeout = self.plan.drain_timeout + count / 5
        figures = await self._through(name, tracker, submit_seconds, timeout=timeout, ack_backoff=ACK_BACKOFF_SECONDS)
        self.results.phases.append(
            {
                "name": name,
                "system": "pipeline",
                "mode": "catch-up",
                "offered_rate": None,
                "window": self.plan.window,
                "replicas": 1,
                "load_seconds": round(submit_seconds, 2),
                "submitted": sent.n,
                "open_loop_fell_behind": 0,
                **figures,
                "catch_up": catch_up_figures(tracker, submit_seconds, started, healthy, startup),
            }
        )

    async def _through(
        self,
        name: str,
        tracker: Tracker,
        load_seconds: float,
        *,
        keep: bool = True,
        timeout: float | None = None,
        ack_backoff: float = 0.0,
    ) -> dict[str, Any]:
        """Once the load is in: wait for the cases, then measure what happened to them and what it cost."""
        await self._drain(name, lambda: tracker.completed, lambda: len(tracker.cases), timeout=timeout)
        if keep:
            # Acknowledgements come after the agencies' answer delay; one that notify refused never comes.
            stall = self.delay + self.plan.ack_stall_seconds + ack_backoff
            await self._drain(
                f"{name} (acks)", lambda: tracker.acknowledged, lambda: len(tracker.cases), stall=stall, timeout=timeout
            )
        processes = self.sampler.phase()
        sampling = self.sampler.sampling_cpu_s()
        snapshot = await self._get_json(f"{self.target.simulator_url}/received")
        apply_receipts(tracker.cases.values(), received_by_case(snapshot))
        acks = ack_statuses(snapshot, tracker.cases)
        if self.target.own_stack:
            await self.client.delete(f"{self.target.simulator_url}/received")
        if not keep:
            return {}
        hops = await self._notify_hops(list(tracker.cases))
        figures = pipeline_figures(tracker, load_seconds, hops, acks, self.delay)
        if self.target.statements is not None:
            figures["statements"] = per_case(await self.target.statements.read(), figures["delivered"])
        return {
            **figures,
            "processes": processes,
            "cpu_ms_per_case": cpu_per_case(processes, figures["delivered"], sampling),
        }

    async def _statements_from_zero(self) -> None:
        if self.target.statements is not None:
            await self.target.statements.reset()

    async def _baseline(self) -> None:
        sizes = event_sizes()
        chain = BareChain(self.target.kafka, sizes, replication=self.target.topic_replication)
        with self.console.status("setting up the bare aiokafka chain ..."):
            await chain.start()
        try:
            await self._chain_phase(chain, "bare Kafka chain at warm-up", rate=10.0, duration=2.0, keep=False)
            name = f"bare Kafka chain at {self.plan.rate:g} cases/s"
            await self._chain_phase(chain, name, rate=self.plan.rate, duration=self.plan.duration)
            await self._chain_phase(
                chain, "bare Kafka chain at maximum rate", window=self.plan.window, duration=self.plan.duration
            )
        finally:
            await chain.stop()

    async def _chain_phase(
        self,
        chain: BareChain,
        name: str,
        *,
        rate: float | None = None,
        window: int | None = None,
        duration: float,
        keep: bool = True,
    ) -> None:
        chain.traces = {}
        self.sampler.begin()
        sent = _Count()

        def done() -> int:
            return sum(1 for t in chain.traces.values() if t.done.is_set())

        began = time.time()
        async with self._shown(name, duration, lambda: f"sent {sent.n} · through {done()}"):
            if rate is not None:
                await at_rate(chain.submit, rate, duration, sent.tick)
            else:
                assert window is not None
                await as_fast_as_possible(chain.submit, window, duration, sent.tick)
        load_seconds = time.time() - began
        await self._drain(name, done, lambda: len(chain.traces))
        processes = {k: v for k, v in self.sampler.phase().items() if k in ("kafka", "bench")}
        sampling = self.sampler.sampling_cpu_s()
        if not keep:
            return
        figures = baseline_figures(chain.traces, load_seconds, len(AGENCIES))
        self.results.phases.append(
            {
                "name": name,
                "system": "baseline",
                "mode": "rate" if rate is not None else "max",
                "offered_rate": rate,
                "window": window,
                "replicas": 1,
                "load_seconds": round(load_seconds, 2),
                "submitted": sent.n,
                "message_bytes": chain.sizes,
                **figures,
                "processes": processes,
                # The system is the broker alone; the chain's clients run in the benchmark's process.
                "cpu_ms_per_case": cpu_per_case(processes, figures["delivered"], sampling),
            }
        )

    @contextlib.asynccontextmanager
    async def _shown(
        self, name: str, total: float, status: Callable[[], str], completed: Callable[[], float] | None = None
    ) -> AsyncIterator[None]:
        """A progress bar to `total`: seconds of load, or what `completed` counts; refreshed four times a second."""
        task = self.progress.add_task(name, total=round(total), status=status())
        began = time.monotonic()

        def progress() -> float:
            return completed() if completed is not None else min(total, time.monotonic() - began)

        async def refresh() -> None:
            while True:
                self.progress.update(task, completed=progress(), status=status())
                await asyncio.sleep(0.25)

        refresher = asyncio.create_task(refresh())
        try:
            yield
        finally:
            refresher.cancel()
            self.progress.update(task, completed=round(total), status=status())

    async def _drain(
        self,
        name: str,
        done: Callable[[], int],
        total: Callable[[], int],
        stall: float | None = None,
        timeout: float | None = None,
    ) -> None:
        """Wait until every accepted case is through, the timeout (default the plan's drain timeout) passes, or
        nothing moves for `stall` s."""
        task = self.progress.add_task(f"  …draining {name}", total=max(1, total()), status="")
        deadline = time.monotonic() + (timeout or self.plan.drain_timeout)
        last, moved = done(), time.monotonic()
        while done() < total() and time.monotonic() < deadline:
            if done() != last:
                last, moved = done(), time.monotonic()
            elif stall is not None and time.monotonic() - moved > stall:
                break
            self.progress.update(task, completed=done(), total=max(1, total()))
            await asyncio.sleep(0.1)
        self.progress.update(task, completed=done(), total=max(1, total()))
        if done() < total():
            self.results.notes.append(f"{name}: {total() - done()} case(s) not through after the drain timeout")

    async def _get_json(self, url: str) -> dict[str, Any]:
        answer = await self.client.get(url)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    async def _notify_hops(self, case_ids: list[str]) -> list[float]:
        """Notify's timeline for a sample of the cases: when it recorded each delivery the gateway reported."""
        step = max(1, len(case_ids) // TIMELINE_SAMPLE)
        hops: list[float] = []
        for case_id in case_ids[::step][:TIMELINE_SAMPLE]:
            answer = await self.client.get(f"{self.target.notify_url}/cases/{case_id}/timeline")
            if answer.status_code == 200:
                hops += notify_hop_seconds(answer.json())
        return hops


@dataclass
class _Count:
    """Submissions made so far (the load calls `tick` for each)."""

    n: int = 0

    def tick(self) -> None:
        self.n += 1


def _status(sent: _Count, tracker: Tracker) -> str:
    return f"sent {sent.n} · delivered {tracker.completed} · acknowledged {tracker.acknowledged}"
