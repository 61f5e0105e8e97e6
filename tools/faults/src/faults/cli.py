"""`./dev faults` (python -m faults): run fault scenarios on a real local stack, print the figures, save them."""

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devstack.errors import DevstackError
from devstack.paths import default_state_dir
from devstack.stack import Stack

from faults.outcome import Outcome, table
from faults.runner import Observer, RunSettings, run_scenario, running_stack, save
from faults.scenarios import SCENARIOS, Options, Scenario, scenario_named


def main(argv: Sequence[str] | None = None) -> int:
    names = ", ".join(f"{s.number} {s.name}" for s in SCENARIOS)
    parser = argparse.ArgumentParser(
        prog="faults",
        description="Kill services, PostgreSQL and Kafka under load on a real local stack; count, from the outside, "
        "what became of every case.",
    )
    parser.add_argument(
        "--scenario", action="append", metavar="NAME", help=f"run only these (repeatable; by name or number): {names}"
    )
    parser.add_argument("--cases", type=int, default=3000, help="cases submitted per scenario (default 3000)")
    parser.add_argument("--rate", type=float, default=20.0, help="cases offered per second (default 20)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests to intake at once (default 8)")
    parser.add_argument("--interval", type=float, default=4.0, help="seconds between faults (default 4)")
    parser.add_argument("--min-faults", type=int, default=3, help="faults per scenario at least (default 3)")
    parser.add_argument("--down", type=float, default=4.0, help="seconds PostgreSQL or a broker stays down")
    parser.add_argument(
        "--outage",
        type=float,
        metavar="SECONDS",
        help="how long the outage lasts in intake-outage (default 120) and agency-outage (default 300)",
    )
    parser.add_argument(
        "--outage-start", type=float, default=30.0, metavar="SECONDS", help="seconds of load before an outage"
    )
    parser.add_argument(
        "--agency", help="the agency that turns hostile (default police) or answers 503 (default legal-aid)"
    )
    parser.add_argument(
        "--hostile-referrals",
        type=int,
        default=60,
        metavar="N",
        help="hostile: the agency's referrals given every bad answer (the rest are accepted plainly; default 60)",
    )
    parser.add_argument(
        "--cpu-window", type=float, default=20.0, metavar="SECONDS", help="hostile: CPU measured this long (default 20)"
    )
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to wait for the drain")
    parser.add_argument("--fresh-stack", action="store_true", help="a new stack for every scenario")
    parser.add_argument("--seed", type=int, help="random seed (which service is killed, which events replayed)")
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON results: a file, or a folder for results-<time>.json (default: .state/faults/results-<time>.json)",
    )
    parser.add_argument("--keep-state", action="store_true", help="keep each stack's data and logs")
    parser.add_argument("--log-level", default="WARNING", help="the services' log level (default WARNING)")
    parser.add_argument(
        "--unsafe-postgres",
        action="store_true",
        help="PostgreSQL without fsync and synchronous commits (devstack's fast mode), to see a loss get caught",
    )
    args = parser.parse_args(argv)
    try:
        chosen = [scenario_named(n)() for n in args.scenario] if args.scenario else [s() for s in SCENARIOS]
    except KeyError as unknown:
        parser.error(f"no scenario {unknown}; choose from {names}")
    settings = RunSettings(
        cases=args.cases,
        concurrency=args.concurrency,
        rate=args.rate,
        drain_timeout=args.drain_timeout,
        options=Options(
            interval=args.interval,
            min_faults=args.min_faults,
            down_seconds=args.down,
            outage_start=args.outage_start,
            outage_seconds=args.outage,
            agency=args.agency,
            hostile_referrals=args.hostile_referrals,
            cpu_window=args.cpu_window,
        ),
        seed=args.seed,
        keep_state=args.keep_state,
        log_level=args.log_level,
        unsafe_postgres=args.unsafe_postgres,
    )
    out = results_path(args.out, default_state_dir() / "faults")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, _stop)
    try:
        outcomes = run(chosen, settings, args.fresh_stack)
    except DevstackError as error:
        print(f"faults: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("faults: interrupted; the stacks were stopped", file=sys.stderr)
        return 130
    print()
    print(table(outcomes))
    save(outcomes, out, settings)
    print(f"\nresults saved to {out}")
    return 0 if all(o.passed for o in outcomes) else 1


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def run(chosen: list[Scenario], settings: RunSettings, fresh_stack: bool) -> list[Outcome]:
    """Scenarios grouped by the Kafka cluster they need; one stack per group unless `fresh_stack`."""
    groups: list[list[Scenario]] = []
    for scenario in chosen:
        same = [g for g in groups if g[0].kafka_nodes == scenario.kafka_nodes and not fresh_stack]
        if same:
            same[0].append(scenario)
        else:
            groups.append([scenario])
    outcomes: list[Outcome] = []
    for group in groups:
        with running_stack(group[0].kafka_nodes, settings, say) as stack:
            outcomes += asyncio.run(_run_group(group, stack, settings))
    order = {s.name: i for i, s in enumerate(chosen)}
    return sorted(outcomes, key=lambda o: order[o.scenario])


async def _run_group(group: list[Scenario], stack: Stack, settings: RunSettings) -> list[Outcome]:
    outcomes = []
    async with Observer(stack) as observer:
        for scenario in group:
            outcome = await run_scenario(scenario, stack, observer, settings, say)
            say(f"[{scenario.name}] {'passed' if outcome.passed else 'FAILED: ' + '; '.join(outcome.problems)}")
            outcomes.append(outcome)
    return outcomes


def results_path(given: Path | None, default_dir: Path) -> Path:
    """Where the results go: `given` when it names a file, `results-<time>.json` in it when it is a folder (decided
    before the run, not after an hour of it), else in `default_dir`."""
    name = time.strftime("results-%Y%m%dT%H%M%SZ.json", time.gmtime())
    if given is None:
        return default_dir / name
    return given / name if given.is_dir() else given
