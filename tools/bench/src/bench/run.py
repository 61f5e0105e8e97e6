"""The benchmark's phases: the pipeline at a fixed rate and at its maximum, scaled out, and the bare baseline."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bench.baseline import BareChain
from bench.cases import AGENCIES, event_sizes
from bench.load import Driver, Observer, Tracker, as_fast_as_possible, at_rate
from bench.measure import (
    ack_statuses,
    apply_receipts,
    baseline_figures,
    notify_hop_seconds,
    pipeline_figures,
    received_by_case,
)
from bench.procs import ProcessSampler

TIMELINE_SAMPLE = 50


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
    baseline: bool = True


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


@dataclass
class Results:
    phases: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
        self.driver = Driver(self.client, target.intake_url, self.observer)
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
                if p.baseline:
                    await self._baseline()
        finally:
            self.sampler.stop()
            await self.observer.stop()
            await self.client.aclose()
        return self.results

    async def _scaled_out(self) -> None:
        if self.target.add_replica is None:
            self.results.notes.append("scale-out skipped: replicas can only be started on the benchmark's own stack")
            return
        replicas = []
        try:
            with self.console.status("starting a second routing and a second agency-gateway ..."):
                for service in ("routing", "agency-gateway"):
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
        self.sampler.begin()
        sent = 0

        def tick() -> None:
            nonlocal sent
            sent += 1

        def status() -> str:
            return f"sent {sent} · delivered {tracker.completed} · acknowledged {tracker.acknowledged}"

        began = time.time()
        async with self._shown(name, duration, status):
            if rate is not None:
                fell_behind = await at_rate(lambda: self.driver.submit(tracker), rate, duration, tick)
            else:
                assert window is not None
                fell_behind = 0
                await as_fast_as_possible(lambda: self.driver.submit(tracker), window, duration, tick)
        load_seconds = time.time() - began
        await self._drain(name, lambda: tracker.completed, lambda: len(tracker.cases))
        if keep:
            # Acknowledgements come after the agencies' answer delay; one that notify refused never comes.
            stall = self.delay + self.plan.ack_stall_seconds
            await self._drain(f"{name} (acks)", lambda: tracker.acknowledged, lambda: len(tracker.cases), stall=stall)
        processes = self.sampler.phase()
        snapshot = await self._get_json(f"{self.target.simulator_url}/received")
        apply_receipts(tracker.cases.values(), received_by_case(snapshot))
        acks = ack_statuses(snapshot, tracker.cases)
        if self.target.own_stack:
            await self.client.delete(f"{self.target.simulator_url}/received")
        hops = await self._notify_hops(list(tracker.cases))
        if not keep:
            return
        figures = pipeline_figures(tracker, load_seconds, hops, acks, self.delay)
        self.results.phases.append(
            {
                "name": name,
                "system": "pipeline",
                "mode": "rate" if rate is not None else "max",
                "offered_rate": rate,
                "window": window,
                "replicas": replicas,
                "load_seconds": round(load_seconds, 2),
                "submitted": sent,
                "open_loop_fell_behind": fell_behind,
                **figures,
                "processes": processes,
            }
        )

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
        sent = 0

        def tick() -> None:
            nonlocal sent
            sent += 1

        def done() -> int:
            return sum(1 for t in chain.traces.values() if t.done.is_set())

        began = time.time()
        async with self._shown(name, duration, lambda: f"sent {sent} · through {done()}"):
            if rate is not None:
                await at_rate(chain.submit, rate, duration, tick)
            else:
                assert window is not None
                await as_fast_as_possible(chain.submit, window, duration, tick)
        load_seconds = time.time() - began
        await self._drain(name, done, lambda: len(chain.traces))
        processes = self.sampler.phase()
        if not keep:
            return
        self.results.phases.append(
            {
                "name": name,
                "system": "baseline",
                "mode": "rate" if rate is not None else "max",
                "offered_rate": rate,
                "window": window,
                "replicas": 1,
                "load_seconds": round(load_seconds, 2),
                "submitted": sent,
                "message_bytes": chain.sizes,
                **baseline_figures(chain.traces, load_seconds, len(AGENCIES)),
                "processes": {k: v for k, v in processes.items() if k in ("kafka", "bench")},
            }
        )

    @contextlib.asynccontextmanager
    async def _shown(self, name: str, duration: float, status: Callable[[], str]) -> AsyncIterator[None]:
        """A progress bar over the load's duration, its status line refreshed four times a second."""
        task = self.progress.add_task(name, total=round(duration), status=status())
        began = time.monotonic()

        async def refresh() -> None:
            while True:
                self.progress.update(task, completed=min(duration, time.monotonic() - began), status=status())
                await asyncio.sleep(0.25)

        refresher = asyncio.create_task(refresh())
        try:
            yield
        finally:
            refresher.cancel()
            self.progress.update(task, completed=round(duration), status=status())

    async def _drain(
        self, name: str, done: Callable[[], int], total: Callable[[], int], stall: float | None = None
    ) -> None:
        """Wait until every accepted case is through, the drain timeout passes, or nothing moves for `stall` s."""
        task = self.progress.add_task(f"  …draining {name}", total=max(1, total()), status="")
        deadline = time.monotonic() + self.plan.drain_timeout
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
