"""`./dev bench` (python -m bench): start a stack (or use a running one), run the phases, print and save the results."""

import argparse
import asyncio
import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from devstack import DevstackError, Stack, StackPorts
from devstack.paths import repo_root
from kit.auth import Role, issue_token
from rich.console import Console

from bench import statements
from bench.procs import ProcessSampler, pids_listening
from bench.report import comparison, machine, markdown, plot, print_report, targets
from bench.run import Bench, Plan, Results, Target


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="Drive cases through the whole pipeline at a fixed rate and at its maximum; time its catch-up on "
        "a queue; compare with a bare Kafka chain; measure CPU and memory per process and per case. Starts its own "
        "stack on free ports unless given URLs.",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="the fixed offered rate, cases/s (default 20)")
    parser.add_argument("--sweep", default="", help="more fixed rates, comma-separated, e.g. 50,100")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per phase (default 30)")
    parser.add_argument("--window", type=int, default=64, help="cases in flight at maximum rate (default 64)")
    parser.add_argument(
        "--drain", type=float, help="seconds to wait for the cases still in flight after each phase (default 60)"
    )
    parser.add_argument(
        "--catch-up",
        type=int,
        default=3000,
        metavar="N",
        help="cases queued while routing, the gateway and notify are stopped, then drained (default 3000; 0 skips)",
    )
    parser.add_argument(
        "--short", action="store_true", help="a quick run (CI): 10 cases/s, 4 s per phase, a catch-up of 100"
    )
    parser.add_argument("--no-scale-out", action="store_true", help="skip the two-replica run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare Kafka chain")
    parser.add_argument(
        "--agency-delay", type=float, default=0.5, help="seconds the simulated agencies take to accept (default 0.5)"
    )
    parser.add_argument("--fsync", action="store_true", help="PostgreSQL with fsync and synchronous_commit on")
    parser.add_argument(
        "--statements",
        action="store_true",
        help="PostgreSQL statements per delivered case, per phase (pg_stat_statements; the own stack only)",
    )
    parser.add_argument("--log-level", default="WARNING", help="the services' LOG_LEVEL (default WARNING)")
    parser.add_argument("--out", type=Path, help="where to write the JSON, PNG and Markdown (default .state/bench)")
    reuse = parser.add_argument_group("a running stack instead of a new one (all four needed)")
    reuse.add_argument("--intake-url")
    reuse.add_argument("--notify-url")
    reuse.add_argument("--simulator-url")
    reuse.add_argument("--kafka", help="bootstrap servers")
    reuse.add_argument("--postgres-port", type=int, help="to measure PostgreSQL too")
    args = parser.parse_args(argv)
    given = [args.intake_url, args.notify_url, args.simulator_url, args.kafka]
    if any(given) and not all(given):
        parser.error("a running stack needs --intake-url, --notify-url, --simulator-url and --kafka")
    if args.statements and any(given):
        parser.error(
            "--statements loads pg_stat_statements into the benchmark's own PostgreSQL: not with a running stack"
        )
    if args.short:
        args.rate, args.duration, args.window = min(args.rate, 10.0), min(args.duration, 4.0), min(args.window, 16)
        args.catch_up = min(args.catch_up, 100)
    return args


def plan_of(args: argparse.Namespace) -> Plan:
    sweep = tuple(float(x) for x in args.sweep.split(",") if x.strip())
    return Plan(
        rate=args.rate,
        sweep=sweep,
        duration=args.duration,
        window=args.window,
        drain_timeout=args.drain or (30.0 if args.short else 60.0),
        warmup_seconds=2.0 if args.short else 3.0,
        ack_stall_seconds=2.0 if args.short else 5.0,
        scale_out=not args.no_scale_out,
        catch_up=max(0, args.catch_up),
        baseline=not args.no_baseline,
    )


def _port(url: str) -> int:
    parsed = urlparse(url if "://" in url else f"tcp://{url}")
    assert parsed.port is not None
    return parsed.port


def _postgres_pid(stack: Stack) -> int | None:
    try:
        return int((stack.postgres.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def replica_starter(stack: Stack) -> Callable[[str], Awaitable[tuple[str, int, Callable[[], Awaitable[None]]]]]:
    """Another copy of a service: the same command and environment, its own HTTP port, the same consumer groups."""
    counts: dict[str, int] = {}

    async def add(service: str) -> tuple[str, int, Callable[[], Awaitable[None]]]:
        counts[service] = counts.get(service, 1) + 1
        process = stack.replica(service, counts[service])
        process.start()
        await asyncio.to_thread(process.wait_ready, stack.ready_timeout)
        assert process.pid is not None

        async def stop() -> None:
            await asyncio.to_thread(process.stop)

        return process.name, process.pid, stop

    return add


class StackConsumers:
    """Routing, the agency gateway and notify of the benchmark's own stack, stopped and started as a restart does."""

    names: tuple[str, ...] = ("routing", "agency-gateway", "notify")

    def __init__(self, stack: Stack) -> None:
        self.processes = [stack.processes[name] for name in self.names]
        self.ready_timeout = stack.ready_timeout

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop)

    def start(self) -> dict[str, int]:
        for process in self.processes:
            process.start()
        return {process.name: process.pid for process in self.processes if process.pid is not None}

    async def wait_ready(self) -> None:
        for process in self.processes:
            await asyncio.to_thread(process.wait_ready, self.ready_timeout)

    def _stop(self) -> None:
        for process in self.processes:  # side by side: each leaves its consumer groups meanwhile
            process.terminate()
        for process in self.processes:
            process.stop()


async def _bench(plan: Plan, target: Target, sampler: ProcessSampler, console: Console) -> Results:
    # aiokafka's clients must be made inside the running loop.
    return await Bench(plan, target, sampler, console).run()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    console = Console(highlight=False)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    out_dir: Path = (args.out or repo_root() / ".state" / "bench").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_of(args)
    report: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "./dev bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "plan": {k: v for k, v in vars(plan).items()},
    }
    stack: Stack | None = None
    state_dir: Path | None = None
    try:
        if args.intake_url:
            target = Target(args.intake_url, args.notify_url, args.simulator_url, args.kafka, token=_token())
            ports = {
                "intake": _port(args.intake_url),
                "notify": _port(args.notify_url),
                "agency-simulator": _port(args.simulator_url),
                "kafka": _port(args.kafka.split(",")[0]),
            }
            if args.postgres_port:
                ports["postgres"] = args.postgres_port
            pids = pids_listening(ports)
            report["stack"] = "reused: " + ", ".join(f"{k} {v}" for k, v in ports.items())
        else:
            state_dir = Path(tempfile.mkdtemp(prefix="onestop-bench-"))
            state_dir.chmod(0o755)  # PostgreSQL runs as its own user when we are root
            behaviour = {"default": {"action": "accept", "delay_seconds": args.agency_delay}}
            env = {
                **os.environ,
                "SIMULATOR_BEHAVIOUR": json.dumps(behaviour),
                "LOG_LEVEL": args.log_level,
                # The pipeline is measured, not the per-credential rate limit (one credential submits every case).
                "RATE_LIMIT_PER_SECOND": "1000000",
                "RATE_LIMIT_BURST": "1000000",
            }
            stack = Stack(
                state_dir,
                StackPorts.free(),
                fast_postgres=not args.fsync,
                postgres_settings=statements.SETTINGS if args.statements else None,
                env=env,
                ready_timeout=300,
            )
            began = time.monotonic()
            with console.status("starting Kafka, PostgreSQL and the services on free ports ..."):
                stack.start()
            console.print(f"stack ready in {time.monotonic() - began:.0f}s (state in {state_dir})")
            target = Target(
                stack.url("intake"),
                stack.url("notify"),
                stack.url("agency-simulator"),
                stack.kafka.bootstrap_servers,
                own_stack=True,
                add_replica=replica_starter(stack),
                consumers=StackConsumers(stack),
                token=stack.token("caseworker"),
                statements=statements.Statements(stack.postgres.dsn("postgres")) if args.statements else None,
            )
            pids = {name: process.pid for name, process in stack.processes.items() if process.pid is not None}
            pids["kafka"] = stack.kafka.pids[0] or 0
            if (pg := _postgres_pid(stack)) is not None:
                pids["postgres"] = pg
            report["stack"] = f"own, PostgreSQL fsync {'on' if args.fsync else 'off'}, LOG_LEVEL={args.log_level}"
        pids["bench"] = os.getpid()
        sampler = ProcessSampler(pids, alone=frozenset({"bench"}))
        results = asyncio.run(_bench(plan, target, sampler, console))
    except DevstackError as error:
        console.print(f"bench: {error}")
        return 1
    finally:
        if stack is not None:
            with console.status("stopping the stack ..."):
                stack.stop()
        if state_dir is not None:
            shutil.rmtree(state_dir, ignore_errors=True)
    report["phases"] = results.phases
    report["notes"] = results.notes
    report["comparison"] = comparison(results.phases, plan.rate)
    report["targets"] = targets(results.phases, report["comparison"])
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    stem = out_dir / time.strftime("bench-%Y%m%d-%H%M%S")
    paths = {"json": stem.with_suffix(".json"), "png": stem.with_suffix(".png"), "md": stem.with_suffix(".md")}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    paths["md"].write_text(markdown(report))
    plot(report, paths["png"])
    print_report(console, report)
    for kind, path in paths.items():
        console.print(f"{kind}: {path}")
    return 0


def _token() -> str | None:
    """For a running stack: BENCH_TOKEN, else a caseworker token signed with AUTH_SECRET, else `./dev up`'s."""
    if os.environ.get("BENCH_TOKEN"):
        return os.environ["BENCH_TOKEN"]
    if os.environ.get("AUTH_SECRET"):
        return issue_token(os.environ["AUTH_SECRET"], Role.caseworker, "bench", ttl_seconds=24 * 3600)
    dev = Path(".state/tokens/caseworker")
    return dev.read_text().strip() if dev.exists() else None
