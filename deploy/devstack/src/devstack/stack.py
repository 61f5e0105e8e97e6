"""The whole system as local processes: Kafka, PostgreSQL, then every service from a list of specs."""

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from devstack.errors import DevstackError
from devstack.kafka import KafkaCluster
from devstack.paths import repo_root
from devstack.ports import free_ports, port_in_use
from devstack.postgres import PostgresServer
from devstack.process import ManagedProcess, describe_exit, log_tail

DATABASE = "onestop"
_SECRET_ENV = re.compile(r'^secret_env\s*=\s*"([A-Z][A-Z0-9_]*)"', re.MULTILINE)


def dev_secrets(catalogue: Path, env: Mapping[str, str]) -> dict[str, str]:
    """A random secret for each webhook secret variable the catalogue names, new every run, unless already set:
    the gateway signs with it and the simulator checks with it. Real secrets never live in the repository."""
    names = {name for path in sorted(catalogue.glob("*.toml")) for name in _SECRET_ENV.findall(path.read_text())}
    return {name: secrets.token_hex(32) for name in sorted(names) if not env.get(name)}


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service: `python -m <module> <migrate_args>` once, then `python -m <module> <serve_args>`."""

    name: str
    module: str
    port: int
    serve_args: tuple[str, ...] = ("serve",)
    migrate_args: tuple[str, ...] | None = ("migrate",)
    url_env: str | None = None  # the variable through which the other services find this one


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("intake", "intake", 8001),
    ServiceSpec("routing", "routing", 8002, url_env="ROUTING_URL"),
    ServiceSpec("agency-gateway", "agency_gateway", 8003),
    ServiceSpec("notify", "notify", 8004, url_env="NOTIFY_URL"),
    ServiceSpec(
        "agency-simulator", "agency_simulator", 8090, serve_args=(), migrate_args=None, url_env="AGENCY_SIMULATOR_URL"
    ),
)


@dataclass(frozen=True)
class StackPorts:
    """Where each piece listens; `None` for Kafka or PostgreSQL means free ports, picked when the Stack is made."""

    kafka: int | None = 9092
    postgres: int | None = 55432
    services: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "StackPorts":
        """The well-known ports, moved by `DEVSTACK_KAFKA_PORT` / `DEVSTACK_POSTGRES_PORT` if set."""
        return cls(
            kafka=int(os.environ.get("DEVSTACK_KAFKA_PORT", "9092")),
            postgres=int(os.environ.get("DEVSTACK_POSTGRES_PORT", "55432")),
        )

    @classmethod
    def free(cls, services: Sequence[ServiceSpec] = SERVICES) -> "StackPorts":
        """Free ports everywhere, so a test's stack runs beside a developer's."""
        ports = free_ports(len(services))
        return cls(
            kafka=None, postgres=None, services={spec.name: port for spec, port in zip(services, ports, strict=True)}
        )


class Stack:
    """Kafka, PostgreSQL and the services under one state folder; `start()` and `stop()` in the right order."""

    def __init__(
        self,
        state_dir: Path,
        ports: StackPorts | None = None,
        services: Sequence[ServiceSpec] = SERVICES,
        *,
        kafka_nodes: int = 1,
        fast_postgres: bool = False,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 90.0,
    ) -> None:
        ports = ports if ports is not None else StackPorts()
        self.state_dir = state_dir.resolve()
        self.logs_dir = self.state_dir / "logs"
        self.repo = repo_root()
        self.specs = list(services)
        self.ready_timeout = ready_timeout
        self.kafka = KafkaCluster(self.state_dir, kafka_nodes, ports.kafka)
        self.postgres = PostgresServer(self.state_dir, ports.postgres, fast=fast_postgres)
        self.ports = {spec.name: ports.services.get(spec.name, spec.port) for spec in self.specs}
        self.env = self._service_env(env if env is not None else os.environ)
        self.processes = {
            spec.name: ManagedProcess(
                spec.name,
                [sys.executable, "-m", spec.module, *spec.serve_args],
                {**self.env, "HTTP_PORT": str(self.ports[spec.name])},
                self.logs_dir / f"{spec.name}.log",
                f"{self.url(spec.name)}/health",
                cwd=self.repo,
            )
            for spec in self.specs
        }

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self) -> None:
        """Start everything and wait until each piece is ready; on failure stop what did start."""
        # A service port held by another process would answer our health checks in its stead.
        busy = [f"{name} ({port})" for name, port in self.ports.items() if port_in_use(port)]
        if busy:
            raise DevstackError(f"ports already in use for {', '.join(busy)}: is another dev stack running?")
        try:
            self.kafka.start()  # the JVMs boot while PostgreSQL starts
            self.postgres.start()
            self.postgres.wait_ready()
            self.postgres.create_database(DATABASE)
            self.kafka.wait_ready(self.ready_timeout)
            for spec in self.specs:
                if spec.migrate_args is not None:
                    self._migrate(spec)
            for process in self.processes.values():
                process.start()
            for process in self.processes.values():
                process.wait_ready(self.ready_timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Services first (newest first), then Kafka, then PostgreSQL."""
        running = list(reversed(self.processes.values()))
        for process in running:
            process.terminate()
        for process in running:
            process.stop()
        self.kafka.stop()
        self.postgres.stop()

    def __enter__(self) -> "Stack":
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def describe(self) -> str:
        """A short table: what runs where, and where its log is."""
        rows = [
            ("kafka", self.kafka.bootstrap_servers, self.kafka.logs_dir),
            ("postgres", self.postgres.dsn(DATABASE), self.postgres.log_path),
        ]
        rows += [(name, self.url(name), process.log_path) for name, process in self.processes.items()]
        width = max(len(row[1]) for row in rows)
        lines = [f"onestop dev stack, state in {self.state_dir}"]
        lines += [f"  {name:<18} {where:<{width}}  log: {self._shown(log)}" for name, where, log in rows]
        return "\n".join(lines)

    @staticmethod
    def _shown(path: Path) -> str:
        cwd = Path.cwd()
        return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)

    def _service_env(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.kafka.bootstrap_servers,
            DATABASE_URL=self.postgres.dsn(DATABASE),
            CATALOGUE_DIR=str(self.repo / "catalogue" / "agencies"),
            PYTHONUNBUFFERED="1",
        )
        # The services create their topics: as replicated as the cluster allows (3 on `--kafka-nodes 3`).
        env.setdefault("TOPIC_REPLICATION_FACTOR", str(self.kafka.replication_factor))
        for spec in self.specs:
            if spec.url_env is not None:
                env[spec.url_env] = self.url(spec.name)
        env.update(dev_secrets(self.repo / "catalogue" / "agencies", env))
        return env

    def _migrate(self, spec: ServiceSpec) -> None:
        assert spec.migrate_args is not None
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / f"{spec.name}.migrate.log"
        command = " ".join(["python", "-m", spec.module, *spec.migrate_args])
        with log_path.open("ab") as log:
            try:
                result = subprocess.run(
                    [sys.executable, "-m", spec.module, *spec.migrate_args],
                    env={**self.env, "HTTP_PORT": str(self.ports[spec.name])},
                    cwd=self.repo,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=self.ready_timeout,
                )
            except subprocess.TimeoutExpired:
                raise DevstackError(
                    f"`{command}` gave no result within {self.ready_timeout:.0f}s; "
                    f"end of {log_path}:\n{log_tail(log_path)}"
                ) from None
        if result.returncode != 0:
            raise DevstackError(
                f"`{command}` failed ({describe_exit(result.returncode)}); end of {log_path}:\n{log_tail(log_path)}"
            )
