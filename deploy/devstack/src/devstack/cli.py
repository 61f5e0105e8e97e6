"""Command line: `python -m devstack up` runs the whole system, `python -m devstack jars` fetches Kafka."""

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devstack import grafana
from devstack import kubernetes as k8s
from devstack.errors import DevstackError
from devstack.kafka import ensure_kafka_jars
from devstack.kafka_security import kafka_setup_script
from devstack.kafka_tools import TOOLS, run_tool
from devstack.paths import default_state_dir, repo_root
from devstack.prometheus import ensure_prometheus
from devstack.stack import SERVICES, ServiceSpec, Stack, StackPorts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description="The onestop stack on this machine, no Docker.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run Kafka, PostgreSQL and every service until Ctrl-C")
    up.add_argument("--state-dir", type=Path, help="data and logs (default: <repo>/.state)")
    up.add_argument("--kafka-nodes", type=int, default=1, help="Kafka nodes, each broker and controller")
    up.add_argument("--infra-only", action="store_true", help="only Kafka and PostgreSQL, no services")
    up.add_argument(
        "--secure-kafka",
        "--secure",
        action="store_true",
        help="Kafka with SASL/SCRAM and ACLs: one principal per service and Kafka-native agency (a new state dir)",
    )
    jars = commands.add_parser("jars", help="fetch the Kafka broker jars with Maven (done by `up` too)")
    jars.add_argument("--state-dir", type=Path, help="data and logs (default: <repo>/.state)")
    commands.add_parser(
        "prometheus", help="install Prometheus and promtool (Debian's package, with apt-get) if missing (done by `up`)"
    )
    kafka = commands.add_parser(
        "kafka",
        help="one of Kafka's own tools against the running stack: kafka topics --list, "
        "kafka consumer-groups --describe --all-groups, kafka console-consumer --topic T --from-beginning",
    )
    kafka.add_argument("--state-dir", type=Path, help="the stack's data and logs (default: <repo>/.state)")
    kafka.add_argument("tool", choices=sorted(TOOLS), help="the tool (kafka-<tool>.sh in Kafka's distribution)")
    kafka.add_argument("args", nargs=argparse.REMAINDER, help="the tool's own arguments")
    script = commands.add_parser(
        "kafka-setup-script", help="print docker-compose.secure.yml's SCRAM users and ACLs script for a catalogue"
    )
    script.add_argument("--catalogue", type=Path, default=repo_root() / "catalogue" / "agencies")
    kubernetes = commands.add_parser(
        "kubernetes", help="write deploy/kubernetes's generated manifests (topics, users, services, scaling)"
    )
    kubernetes.add_argument("--check", action="store_true", help="only say which generated file differs")
    grafana = commands.add_parser("grafana", help="write deploy/grafana/onestop.json from devstack.grafana")
    grafana.add_argument("--check", action="store_true", help="only say whether the committed file differs")
    args = parser.parse_args(argv)
    if args.command == "grafana":
        return _grafana(args.check)
    if args.command == "kafka-setup-script":
        print(kafka_setup_script(args.catalogue), end="")
        return 0
    if args.command == "kubernetes":
        return _kubernetes(args.check)
    if args.command == "prometheus":
        return _install_prometheus()
    state_dir: Path = (args.state_dir or default_state_dir()).resolve()
    # aiokafka logs every refused connection while the broker boots; those are expected, not news.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        if args.command == "kafka":
            run_tool(state_dir, args.tool, args.args)  # replaces this process
        if args.command == "jars":
            print(f"Kafka jars in {ensure_kafka_jars(state_dir)}")
            return 0
        return _up(state_dir, args.kafka_nodes, () if args.infra_only else SERVICES, args.secure_kafka)
    except DevstackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1


def _kubernetes(check: bool) -> int:
    repo = repo_root()
    changed = k8s.drift(repo) if check else k8s.write(repo)
    for path in changed:
        print(f"{'differs' if check else 'wrote'}: {path}")
    return 1 if check and changed else 0


def _grafana(check: bool) -> int:
    repo = repo_root()
    if check:
        differs = (repo / grafana.DASHBOARD_PATH).read_text(encoding="utf-8") != grafana.render()
        print(f"{'differs' if differs else 'up to date'}: {grafana.DASHBOARD_PATH}")
        return 1 if differs else 0
    print(f"{'wrote' if grafana.write(repo) else 'unchanged'}: {grafana.DASHBOARD_PATH}")
    return 0


def _install_prometheus() -> int:
    try:
        binaries = ensure_prometheus()
    except DevstackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    print(f"Prometheus at {binaries.prometheus}, promtool at {binaries.promtool}")
    return 0


class _StopRequested(Exception):
    pass


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested(signal.Signals(signum).name)


def _up(state_dir: Path, kafka_nodes: int, services: Sequence[ServiceSpec], secure_kafka: bool) -> int:
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)
    stack = Stack(
        state_dir,
        StackPorts.from_env(),
        services,
        kafka_nodes=kafka_nodes,
        secure_kafka=secure_kafka,
        prometheus=bool(services),  # with --infra-only there is nothing of ours to scrape
    )
    began = time.monotonic()
    try:
        print(f"starting the onestop dev stack in {state_dir} ...", flush=True)
        stack.start()
        print(f"{stack.describe()}\nready in {time.monotonic() - began:.1f}s; Ctrl-C stops everything.", flush=True)
        _watch(stack)
    except _StopRequested as stop:
        print(f"\n{stop.args[0]}: stopping services, then Kafka, then PostgreSQL ...", flush=True)
    finally:
        # A second Ctrl-C must not cut the orderly shutdown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    print("stopped.", flush=True)
    return 0


def _watch(stack: Stack) -> None:
    """Wait for a signal, saying so once if a service dies meanwhile."""
    reported: set[str] = set()
    while True:
        for name, process in stack.processes.items():
            if process.crashed and name not in reported:
                reported.add(name)
                print(f"{name} exited with code {process.returncode}; see {process.log_path}", flush=True)
        time.sleep(1)
