"""A real Apache Kafka cluster in KRaft mode as local JVM processes, its jars fetched by Maven."""

import asyncio
import base64
import concurrent.futures
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient

from devstack.errors import DevstackError
from devstack.kafka_admin import partitions
from devstack.kafka_security import KafkaSecurity
from devstack.paths import repo_root
from devstack.ports import free_ports, port_in_use
from devstack.process import ManagedProcess, describe_exit, log_tail

_T = TypeVar("_T")

HEAP_OPTS = ("-Xmx512m", "-Xms256m")
# log4j's own shutdown hook would close the log before Kafka's hook has logged its shutdown.
_JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
    "-Dlog4j2.shutdownHookEnabled=false",
)
_STOP_GRACE_SECONDS = 30.0
# The most an index file of a segment holds (`log.index.size.max.bytes`; see `_write_config`).
INDEX_BYTES = 1024 * 1024

_LOG4J2 = """\
# Written by devstack: each node logs to <state>/kafka/logs/<node>.log, rolled at 10 MB.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/${sys:devstack.node}.log
appender.file.filePattern = ${sys:kafka.logs.dir}/${sys:devstack.node}.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def kafka_pom() -> Path:
    return repo_root() / "deploy" / "kafka" / "pom.xml"


def ensure_kafka_jars(state_dir: Path) -> Path:
    """Copy the broker's runtime jars into `<state_dir>/kafka/libs` with Maven, once per pom content."""
    pom = kafka_pom()
    libs = state_dir.resolve() / "kafka" / "libs"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    marker = libs / ".pom-sha256"
    if marker.is_file() and marker.read_text().strip() == digest:
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevstackError("Maven (mvn) is not on PATH; it fetches the Kafka broker jars from Maven Central")
    # Copy into a fresh folder and swap it in, so jars of an older Kafka never linger on the classpath.
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        output = (result.stdout + result.stderr).splitlines()
        tail = "\n".join(output[-40:])
        raise DevstackError(f"Maven failed (exit {result.returncode}) running {' '.join(argv)}:\n{tail}")
    (staging / ".pom-sha256").write_text(digest + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise DevstackError("java is not on PATH (and JAVA_HOME is not set): the Kafka broker needs Java 17+")
    return java


def new_cluster_id() -> str:
    """A cluster id in Kafka's own format: a UUID in URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's Uuid refuses ids that would parse as a command-line flag
            return text


class KafkaCluster:
    """`size` combined broker+controller nodes on loopback; data and logs under `<state_dir>/kafka`.

    With `security`, clients must authenticate with SASL/SCRAM-SHA-512 and may do only what its ACLs allow.
    """

    def __init__(
        self, state_dir: Path, size: int = 1, base_port: int | None = None, security: KafkaSecurity | None = None
    ) -> None:
        if size < 1:
            raise ValueError("a Kafka cluster needs at least one node")
        self.state_dir = state_dir.resolve()
        self.root = self.state_dir / "kafka"
        self.size = size
        self.fixed_ports = base_port is not None
        ports = [base_port + i for i in range(2 * size)] if base_port is not None else free_ports(2 * size)
        # Node i listens for clients on ports[2i] and for the controller quorum on ports[2i+1] (9092/9093, ...).
        self.broker_ports = ports[0::2]
        self.controller_ports = ports[1::2]
        self.replication_factor = min(size, 3)
        self.min_insync_replicas = 2 if size >= 3 else 1
        self.security = security
        self._nodes: list[ManagedProcess] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.broker_ports)

    @property
    def admin_client_config(self) -> dict[str, str]:
        """Keyword arguments for an aiokafka client acting as the cluster's operator (the super user if secured)."""
        return self.security.admin.aiokafka() if self.security is not None else {}

    @property
    def pids(self) -> list[int | None]:
        return [node.pid for node in self._nodes] if self._nodes is not None else [None] * self.size

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def node_dir(self, index: int) -> Path:
        return self.root / f"node-{index}"

    def start(self) -> None:
        """Fetch the jars if needed, format new nodes' storage once, and start every node."""
        if self._nodes is None:
            if self.fixed_ports:
                self._check_ports_free()
            libs = ensure_kafka_jars(self.state_dir)
            self._write_config()
            self._format_storage(libs)
            self._nodes = [self._node_process(libs, i) for i in range(self.size)]
        for node in self._nodes:
            node.start()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Return once every running node is an active broker in the cluster's metadata."""
        nodes = self._require_started()
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while True:
            for index, node in enumerate(nodes):
                if node.crashed:
                    raise DevstackError(
                        f"Kafka node {index} stopped ({describe_exit(node.returncode)}) while starting; "
                        f"end of {self._log_path(index)}:\n{log_tail(self._log_path(index))}\n"
                        f"end of {node.log_path}:\n{log_tail(node.log_path, 15)}"
                    )
            expected = sum(1 for node in nodes if node.alive)
            if expected == 0:
                raise DevstackError("no Kafka node is running: start() or restart() one first")
            listening = sum(1 for port in self.broker_ports if port_in_use(port))
            try:
                # Probe with a client only once the ports listen, so it doesn't log a refused connection per try.
                if listening < expected:
                    raise ConnectionRefusedError(f"{listening} of {expected} broker ports listening")
                brokers = _run_sync(_active_brokers(self.bootstrap_servers, self.admin_client_config))
                if brokers >= expected:
                    if self.security is not None:
                        _run_sync(self.security.apply_acls(self.bootstrap_servers))
                    return
                last_error = f"{brokers} of {expected} brokers active"
            except Exception as exc:  # any failure to get metadata just means "not yet"
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise DevstackError(
                    f"Kafka at {self.bootstrap_servers} not ready after {timeout:.0f}s ({last_error}); "
                    f"end of {self._log_path(0)}:\n{log_tail(self._log_path(0))}"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop all nodes side by side (SIGTERM, then SIGKILL after a grace period)."""
        if self._nodes is None:
            return
        for node in self._nodes:
            node.terminate()
        for node in self._nodes:
            node.stop(_STOP_GRACE_SECONDS)

    def kill(self, node_index: int) -> None:
        """SIGKILL one node, as a crash would."""
        self._require_started()[node_index].kill()

    def restart(self, node_index: int) -> None:
        node = self._require_started()[node_index]
        node.stop(_STOP_GRACE_SECONDS)
        node.start()

    def node_index(self, broker_id: int) -> int:
        """The index (for kill/restart) of the node whose `node.id` is `broker_id`."""
        if not 1 <= broker_id <= self.size:
            raise DevstackError(f"no node with broker id {broker_id} in a cluster of {self.size}")
        return broker_id - 1

    def leader_index(self, topic: str, partition: int) -> int:
        """The index of the node leading `topic`'s `partition` now."""
        for info in _run_sync(partitions(self.bootstrap_servers, [topic], client_config=self.admin_client_config)):
            if info.partition == partition and info.leader >= 1:
                return self.node_index(info.leader)
        raise DevstackError(f"{topic}/{partition} has no leader now")

    def wait_fully_replicated(self, timeout: float = 120.0) -> None:
        """Return once every partition's in-sync replicas are all its replicas (a restarted node has caught up)."""
        deadline = time.monotonic() + timeout
        behind: list[str] = []
        while True:
            try:
                infos = _run_sync(
                    partitions(self.bootstrap_servers, include_internal=True, client_config=self.admin_client_config)
                )
                behind = [f"{p.topic}/{p.partition}" for p in infos if p.under_replicated or p.leader < 0]
                if not behind:
                    return
            except Exception as exc:  # metadata unavailable for a moment: try again
                behind = [f"metadata: {type(exc).__name__}"]
            if time.monotonic() > deadline:
                raise DevstackError(f"partitions still under-replicated after {timeout:.0f}s: {behind[:10]}")
            time.sleep(0.5)

    def _require_started(self) -> list[ManagedProcess]:
        if self._nodes is None:
            raise DevstackError("the Kafka cluster has not been started")
        return self._nodes

    def _check_ports_free(self) -> None:
        busy = [port for port in self.broker_ports + self.controller_ports if port_in_use(port)]
        if busy:
            raise DevstackError(
                f"ports {busy} are already in use: is another Kafka running? (set DEVSTACK_KAFKA_PORT to move it)"
            )

    def _log_path(self, index: int) -> Path:
        return self.logs_dir / f"node-{index}.log"

    def _cluster_id(self) -> str:
        path = self.root / "cluster-id"
        if path.is_file():
            return path.read_text().strip()
        cluster_id = new_cluster_id()
        path.write_text(cluster_id + "\n")
        return cluster_id

    def _write_config(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "log4j2.properties").write_text(_LOG4J2)
        voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(self.controller_ports))
        for index in range(self.size):
            node_dir = self.node_dir(index)
            node_dir.mkdir(parents=True, exist_ok=True)
            listener = "PLAINTEXT" if self.security is None else "SASL_PLAINTEXT"
            settings = {
                "process.roles": "broker,controller",
                "node.id": str(index + 1),
                "controller.quorum.voters": voters,
                "listeners": f"{listener}://127.0.0.1:{self.broker_ports[index]},"
                f"CONTROLLER://127.0.0.1:{self.controller_ports[index]}",
                "advertised.listeners": f"{listener}://127.0.0.1:{self.broker_ports[index]}",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": listener,
                "log.dirs": str(node_dir / "data"),
                "auto.create.topics.enable": "false",
                "num.partitions": "1",
                "default.replication.factor": str(self.replication_factor),
                "min.insync.replicas": str(self.min_insync_replicas),
                "offsets.topic.replication.factor": str(self.replication_factor),
                "transaction.state.log.replication.factor": str(self.replication_factor),
                "transaction.state.log.min.isr": str(self.min_insync_replicas),
                "share.coordinator.state.topic.replication.factor": str(self.replication_factor),
                "share.coordinator.state.topic.min.isr": str(self.min_insync_replicas),
                "group.initial.rebalance.delay.ms": "0",
                # Each partition's open segment has two index files, preallocated (sparse) at this size: 10 MiB by
                # default, 13 GB in all for the stack's ~640 partitions, which anything reading the data folder
                # (tests/e2e/test_canary.py) reads in full. 1 MiB still indexes 512 MiB of records per segment.
                "log.index.size.max.bytes": str(INDEX_BYTES),
            }
            if self.security is not None:
                settings.update(self.security.broker_settings(listener))
            lines = ["# Written by devstack at every start; edit devstack.kafka instead."]
            lines += [f"{key}={value}" for key, value in settings.items()]
            path = node_dir / "server.properties"
            path.touch(mode=0o600)  # it may hold the admin's password
            path.write_text("\n".join(lines) + "\n")

    def _java(self, libs: Path, node_name: str, main_class: str, *args: str) -> list[str]:
        return [
            java_executable(),
            *HEAP_OPTS,
            *_JVM_OPTS,
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Ddevstack.node={node_name}",
            "-cp",
            f"{libs}/*",
            main_class,
            *args,
        ]

    def _format_storage(self, libs: Path) -> None:
        """Format each node's log dir once; the persisted cluster id lets a later start reuse the data."""
        cluster_id = self._cluster_id()
        pending = [i for i in range(self.size) if not (self.node_dir(i) / "data" / "meta.properties").is_file()]
        self._check_security_unchanged(formatting=bool(pending))
        # SCRAM credentials go into the metadata at format time, so the brokers can authenticate from the start.
        scram = self.security.scram_arguments() if self.security is not None else []
        runs: dict[int, subprocess.Popen[str]] = {}
        for index in pending:
            config = str(self.node_dir(index) / "server.properties")
            argv = self._java(
                libs, f"node-{index}-format", "kafka.tools.StorageTool",
                "format", "--cluster-id", cluster_id, "--config", config, "--ignore-formatted", *scram,
            )  # fmt: skip
            runs[index] = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
            )
        for index, run in runs.items():
            output, _ = run.communicate(timeout=120)
            if run.returncode != 0:
                raise DevstackError(
                    f"formatting Kafka storage for node {index} failed (exit {run.returncode}):\n{output[-4000:]}"
                )

    def _check_security_unchanged(self, formatting: bool) -> None:
        """SCRAM users are made only at format time: refuse a data folder formatted for other principals."""
        marker = self.root / "principals"
        wanted = "\n".join(self.security.principals) if self.security is not None else ""
        if formatting:
            marker.write_text(wanted + "\n")
            return
        formatted = marker.read_text().strip() if marker.is_file() else ""
        if formatted != wanted:
            raise DevstackError(
                f"the Kafka data in {self.root} was formatted for other SASL principals ({formatted or 'none'}), "
                f"not {wanted.replace(chr(10), ', ') or 'none (plaintext)'}: delete {self.root} to start afresh"
            )

    def _node_process(self, libs: Path, index: int) -> ManagedProcess:
        argv = self._java(libs, f"node-{index}", "kafka.Kafka", str(self.node_dir(index) / "server.properties"))
        return ManagedProcess(
            f"kafka-{index}",
            argv,
            os.environ,
            self.logs_dir / f"node-{index}.out",
            cwd=self.node_dir(index),
            grace=_STOP_GRACE_SECONDS,
        )


async def _active_brokers(bootstrap_servers: str, client_config: dict[str, str]) -> int:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="devstack-probe", request_timeout_ms=5000, **client_config
    )
    try:
        await asyncio.wait_for(admin.start(), 10)
        cluster: dict[str, Any] = await asyncio.wait_for(admin.describe_cluster(), 10)
        return len(cluster["brokers"])
    finally:
        await admin.close()


def _run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    # A thread of its own keeps this blocking call usable from inside a running event loop (e.g. pytest-asyncio).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
