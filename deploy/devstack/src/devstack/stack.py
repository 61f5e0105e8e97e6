"""The whole system as local processes: Kafka, PostgreSQL, then every service from a list of specs."""

import base64
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from kit.auth import Role, issue_token

from devstack.errors import DevstackError
from devstack.kafka import KafkaCluster
from devstack.kafka_security import KafkaSecurity
from devstack.paths import repo_root
from devstack.ports import free_ports, port_in_use
from devstack.postgres import PostgresServer
from devstack.process import ManagedProcess, describe_exit, log_tail
from devstack.prometheus import PrometheusServer

DATABASE = "onestop"
_SECRET_ENV = re.compile(r'^secret_env\s*=\s*"([A-Z][A-Z0-9_]*)"', re.MULTILINE)
_AGENCY_ID = re.compile(r'^id\s*=\s*"([a-z0-9-]+)"', re.MULTILINE)
DEV_TOKEN_HOURS = 24.0


def dev_secrets(catalogue: Path, env: Mapping[str, str]) -> dict[str, str]:
    """A random secret for each webhook secret variable the catalogue names, new every run, unless already set:
    the gateway signs with it and the simulator checks with it. Real secrets never live in the repository."""
    names = {name for path in sorted(catalogue.glob("*.toml")) for name in _SECRET_ENV.findall(path.read_text())}
    return {name: secrets.token_hex(32) for name in sorted(names) if not env.get(name)}


def agency_ids(catalogue: Path) -> list[str]:
    return sorted({agency for path in catalogue.glob("*.toml") for agency in _AGENCY_ID.findall(path.read_text())})


def dev_credentials(catalogue: Path, env: Mapping[str, str]) -> dict[str, str]:
    """The bearer tokens' signing secret (AUTH_SECRET), new every run unless already set, and the simulator's
    token for each agency it plays (SIMULATOR_AGENCY_TOKENS)."""
    secret = env.get("AUTH_SECRET") or secrets.token_hex(32)
    tokens = {
        agency: issue_token(secret, Role.agency, f"agency-{agency}", agency=agency, ttl_seconds=DEV_TOKEN_HOURS * 3600)
        for agency in agency_ids(catalogue)
    }
    return {"AUTH_SECRET": secret, "SIMULATOR_AGENCY_TOKENS": json.dumps(tokens)}


def dev_case_keys(state_dir: Path) -> str:
    """Intake's key-encryption key (CASE_KEYS) for this state folder: made once, kept owner-only beside the data
    it protects only for development; a deployment keeps it in its secret store, never with the database."""
    path = state_dir.resolve() / "intake" / "case-keys"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        path.write_text(f"dev-1={key}\n")
    return path.read_text().strip()


def dev_access_log_key(state_dir: Path) -> str:
    """The access log's chain key (ACCESS_LOG_KEY) for this state folder, made once: AUTH_SECRET is new every run, and
    a key derived from it would leave the rows of earlier runs, kept in the same database, unverifiable. Beside the
    data only for development; a deployment keeps it in its secret store, never with the database."""
    path = state_dir.resolve() / "access-log" / "key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32) + "\n")
    return path.read_text().strip()


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service: `python -m <module> <migrate_args>` once, then `python -m <module> <serve_args>`."""

    name: str
    module: str
    port: int
    serve_args: tuple[str, ...] = ("serve",)
    migrate_args: tuple[str, ...] | None = ("migrate",)
    url_env: str | None = None  # the variable through which the other services find this one
    metrics: bool = True  # serves Prometheus text on /metrics, scraped by the stack's Prometheus


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("intake", "intake", 8001, url_env="INTAKE_URL"),
    ServiceSpec("routing", "routing", 8002, url_env="ROUTING_URL"),
    ServiceSpec("agency-gateway", "agency_gateway", 8003, url_env="AGENCY_GATEWAY_URL"),
    ServiceSpec("notify", "notify", 8004, url_env="NOTIFY_URL"),
    ServiceSpec(
        "agency-simulator",
        "agency_simulator",
        8090,
        serve_args=(),
        migrate_args=None,
        url_env="AGENCY_SIMULATOR_URL",
        metrics=False,
    ),
    # The web console: pages over the services' APIs; no database, so no migrations.
    ServiceSpec("console", "console", 8005, serve_args=(), migrate_args=None, metrics=False),
)


@dataclass(frozen=True)
class StackPorts:
    """Where each piece listens; `None` for Kafka or PostgreSQL means free ports, picked when the Stack is made."""

    kafka: int | None = 9092
    postgres: int | None = 55432
    services: Mapping[str, int] = field(default_factory=dict)
    prometheus: int = 9190  # not 9090: Debian's package may run a Prometheus of the machine's own there

    @classmethod
    def from_env(cls) -> "StackPorts":
        """The well-known ports, moved by `DEVSTACK_KAFKA_PORT` / `DEVSTACK_POSTGRES_PORT` /
        `DEVSTACK_PROMETHEUS_PORT` if set."""
        return cls(
            kafka=int(os.environ.get("DEVSTACK_KAFKA_PORT", "9092")),
            postgres=int(os.environ.get("DEVSTACK_POSTGRES_PORT", "55432")),
            prometheus=int(os.environ.get("DEVSTACK_PROMETHEUS_PORT", "9190")),
        )

    @classmethod
    def free(cls, services: Sequence[ServiceSpec] = SERVICES) -> "StackPorts":
        """Free ports everywhere, so a test's stack runs beside a developer's."""
        *ports, prometheus = free_ports(len(services) + 1)
        return cls(
            kafka=None,
            postgres=None,
            services={spec.name: port for spec, port in zip(services, ports, strict=True)},
            prometheus=prometheus,
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
        postgres_settings: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 90.0,
        secure_kafka: bool | KafkaSecurity = False,
        prometheus: bool = False,
    ) -> None:
        ports = ports if ports is not None else StackPorts()
        self.state_dir = state_dir.resolve()
        self.logs_dir = self.state_dir / "logs"
        self.repo = repo_root()
        self.specs = list(services)
        self.ready_timeout = ready_timeout
        # The secure profile: SASL/SCRAM, one principal per service and Kafka-native agency, ACLs (kafka_security).
        # True takes the principals from the catalogue; a KafkaSecurity of its own adds agencies (tests do).
        self.kafka_security = (
            secure_kafka
            if isinstance(secure_kafka, KafkaSecurity)
            else KafkaSecurity.for_catalogue(self.state_dir, self.repo / "catalogue" / "agencies")
            if secure_kafka
            else None
        )
        self.kafka = KafkaCluster(self.state_dir, kafka_nodes, ports.kafka, security=self.kafka_security)
        self.postgres = PostgresServer(self.state_dir, ports.postgres, fast=fast_postgres, settings=postgres_settings)
        self.ports = {spec.name: ports.services.get(spec.name, spec.port) for spec in self.specs}
        # Scraping every service that serves /metrics, with the alert rules loaded (`./dev up` runs it).
        self.prometheus = (
            PrometheusServer(self.state_dir, ports.prometheus, self.metrics_targets()) if prometheus else None
        )
        self.env = self._service_env(env if env is not None else os.environ)
        self.processes = {
            spec.name: ManagedProcess(
                spec.name,
                [sys.executable, "-m", spec.module, *spec.serve_args],
                self._env_of(spec),
                self.logs_dir / f"{spec.name}.log",
                f"{self.url(spec.name)}/health",
                cwd=self.repo,
            )
            for spec in self.specs
        }

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def replica(self, service: str, number: int = 2) -> ManagedProcess:
        """Another copy of a running service, not started: the same command and environment, an HTTP port of its own,
        the same consumer groups (Kafka shares the partitions out between the copies) and database."""
        base = self.processes[service]
        port = free_ports(1)[0]
        return ManagedProcess(
            f"{service}#{number}",
            base.argv,
            {**base.env, "HTTP_PORT": str(port)},
            self.logs_dir / f"{service}-{number}.log",
            f"http://127.0.0.1:{port}/health",
            cwd=self.repo,
        )

    def metrics_targets(self) -> dict[str, str]:
        """`{service: "127.0.0.1:port"}` for every service that serves /metrics: what Prometheus scrapes."""
        return {spec.name: f"127.0.0.1:{self.ports[spec.name]}" for spec in self.specs if spec.metrics}

    def start(self) -> None:
        """Start everything and wait until each piece is ready; on failure stop what did start."""
        # A service port held by another process would answer our health checks in its stead.
        busy = [f"{name} ({port})" for name, port in self.ports.items() if port_in_use(port)]
        if self.prometheus is not None and port_in_use(self.prometheus.port):
            busy.append(f"prometheus ({self.prometheus.port}; DEVSTACK_PROMETHEUS_PORT moves it)")
        if busy:
            raise DevstackError(f"ports already in use for {', '.join(busy)}: is another dev stack running?")
        try:
            # Kafka's storage is formatted and its JVMs boot while PostgreSQL starts and the services' migrations run,
            # side by side (each migrates its own schema). Leaving the pool waits for every step, failed or not, so
            # `stop()` below never runs while one is halfway.
            with ThreadPoolExecutor(max_workers=1 + len(self.specs)) as pool:
                steps = [pool.submit(self.kafka.start)]
                self.postgres.start()
                self.postgres.wait_ready()
                self.postgres.create_database(DATABASE)
                steps += [pool.submit(self._migrate, spec) for spec in self.specs if spec.migrate_args is not None]
                for step in steps:
                    step.result()
            self.kafka.wait_ready(self.ready_timeout)
            for process in self.processes.values():
                process.start()
            if self.prometheus is not None:
                self.prometheus.start()
            for process in self.processes.values():
                process.wait_ready(self.ready_timeout)
            if self.prometheus is not None:
                self.prometheus.wait_ready(self.ready_timeout)
            self.write_tokens()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Services first (newest first), then Kafka, then PostgreSQL."""
        if self.prometheus is not None:
            self.prometheus.stop()
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
        if self.prometheus is not None:
            rows.append(("prometheus", self.prometheus.url, self.prometheus.log_path))
        width = max(len(row[1]) for row in rows)
        lines = [f"onestop dev stack, state in {self.state_dir}"]
        lines += [f"  {name:<18} {where:<{width}}  log: {self._shown(log)}" for name, where, log in rows]
        if self.kafka_security is not None:
            lines += [f"  kafka SASL/SCRAM-SHA-512 + ACLs; passwords in {self._shown(self.kafka_security.path)}"]
        lines += [f"  dev tokens (valid {DEV_TOKEN_HOURS:.0f} h) in {self._shown(self.state_dir / 'tokens')}/"]
        if "console" in self.ports:
            lines += [f"  the console: open {self.url('console')} in a browser and sign in as a dev identity"]
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
        env.update(dev_credentials(self.repo / "catalogue" / "agencies", env))
        # The access log's key and its signed checkpoints (one file per schema), kept with the state like the data.
        if not env.get("ACCESS_LOG_KEY"):
            env["ACCESS_LOG_KEY"] = dev_access_log_key(self.state_dir)
        env.setdefault("ACCESS_LOG_CHECKPOINT_DIR", str(self.state_dir / "access-log" / "checkpoints"))
        return env

    def token(self, role: Role | str, agency: str | None = None, ttl_seconds: float = DEV_TOKEN_HOURS * 3600) -> str:
        """A bearer token for this stack's services: `stack.token("caseworker")`, `stack.token("agency", "police")`."""
        subject = f"agency-{agency}" if agency is not None else f"dev-{Role(role).value}"
        return issue_token(self.env["AUTH_SECRET"], role, subject, agency=agency, ttl_seconds=ttl_seconds)

    def write_tokens(self) -> Path:
        """Ready-to-use dev tokens in `<state>/tokens/` (`caseworker`, `supervisor`, `auditor`, `agency-police`…),
        readable only by their owner, for curl: `-H "Authorization: Bearer $(cat .state/tokens/caseworker)"`."""
        folder = self.state_dir / "tokens"
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        tokens = {role.value: self.token(role) for role in (Role.caseworker, Role.supervisor, Role.auditor)}
        tokens |= {f"agency-{a}": self.token(Role.agency, a) for a in agency_ids(self.repo / "catalogue" / "agencies")}
        for name, token in tokens.items():
            path = folder / name
            path.touch(mode=0o600)
            path.write_text(token + "\n")
        return folder

    def _env_of(self, spec: ServiceSpec) -> dict[str, str]:
        """The stack's environment, the service's port and, on a secured broker, its own Kafka principal."""
        env = {**self.env, "HTTP_PORT": str(self.ports[spec.name])}
        if spec.name == "console":  # the development stack: its sign-in page lists the dev identities
            env.setdefault("CONSOLE_DEV_SIGN_IN", "true")
            if self.prometheus is not None:  # the operator's charts over time
                env.setdefault("CONSOLE_PROMETHEUS_URL", self.prometheus.url)
        if spec.name == "intake" and not env.get("CASE_KEYS"):  # only intake holds the key-encryption key
            env["CASE_KEYS"] = dev_case_keys(self.state_dir)
        if self.kafka_security is not None and spec.name in self.kafka_security.principals:
            env.update(self.kafka_security.credentials(spec.name).env())
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
                    env=self._env_of(spec),
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
