"""The local stack without Docker: a real Kafka and PostgreSQL that round-trip data and keep it across restarts."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from devstack import (
    DevstackError,
    KafkaCluster,
    ManagedProcess,
    PostgresServer,
    ServiceSpec,
    Stack,
    StackPorts,
    ensure_kafka_jars,
)
from devstack.paths import repo_root
from devstack.ports import free_ports

pytestmark = pytest.mark.integration

DATABASE = "devstack_check"


@dataclass
class Infra:
    """Kafka and PostgreSQL on one state folder; the restart test swaps in fresh objects."""

    state_dir: Path
    kafka: KafkaCluster
    postgres: PostgresServer

    @classmethod
    def on(cls, state_dir: Path) -> "Infra":
        return cls(state_dir, KafkaCluster(state_dir), PostgresServer(state_dir, fast=True))

    def start(self) -> None:
        self.kafka.start()
        self.postgres.start()
        self.postgres.wait_ready()
        self.postgres.create_database(DATABASE)
        self.kafka.wait_ready()

    def stop(self) -> None:
        self.kafka.stop()
        self.postgres.stop()


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    infra = Infra.on(tmp_path_factory.mktemp("devstack"))
    try:
        infra.start()
        yield infra
    finally:
        infra.stop()


async def create_topic(bootstrap_servers: str, name: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        if name not in await admin.list_topics():
            await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def produce(bootstrap_servers: str, topic: str, key: bytes, value: bytes) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        metadata = await producer.send_and_wait(topic, value, key=key)
        return int(metadata.partition)
    finally:
        await producer.stop()


async def consume_one(bootstrap_servers: str, topic: str) -> tuple[bytes, bytes, int]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=f"devstack-check-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 60)
        return record.key, record.value, record.partition
    finally:
        await consumer.stop()


async def test_kafka_round_trips_a_keyed_message(infra: Infra) -> None:
    bootstrap = infra.kafka.bootstrap_servers
    topic = f"devstack.check.{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic)

    partition = await produce(bootstrap, topic, b"case-1", b'{"hello": "kafka"}')

    assert await consume_one(bootstrap, topic) == (b"case-1", b'{"hello": "kafka"}', partition)


async def test_kafka_does_not_create_topics_on_use(infra: Infra) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka.bootstrap_servers)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        assert [broker["host"] for broker in cluster["brokers"]] == ["127.0.0.1"]
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka.bootstrap_servers, request_timeout_ms=3000)
        await producer.start()
        try:
            with pytest.raises(Exception, match=r"(?i)metadata|timeout|unknown"):
                await producer.send_and_wait("devstack.never-created", b"x")
        finally:
            await producer.stop()
        assert "devstack.never-created" not in await admin.list_topics()
    finally:
        await admin.close()


async def test_postgres_answers_a_query(infra: Infra) -> None:
    connection = await asyncpg.connect(infra.postgres.dsn(DATABASE))
    try:
        assert await connection.fetchval("SELECT $1::int + 1", 41) == 42
        assert await connection.fetchval("SHOW server_encoding") == "UTF8"
        assert await connection.fetchval("SELECT current_user") == "onestop"
    finally:
        await connection.close()


async def test_create_database_is_idempotent(infra: Infra) -> None:
    infra.postgres.create_database(DATABASE)
    infra.postgres.create_database(DATABASE)
    connection = await asyncpg.connect(infra.postgres.dsn("postgres"))
    try:
        assert await connection.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", DATABASE) == 1
    finally:
        await connection.close()


async def test_a_second_start_reuses_kafka_and_postgres_data(infra: Infra) -> None:
    topic = f"devstack.kept.{uuid.uuid4().hex[:8]}"
    await create_topic(infra.kafka.bootstrap_servers, topic)
    partition = await produce(infra.kafka.bootstrap_servers, topic, b"case-2", b"kept")
    connection = await asyncpg.connect(infra.postgres.dsn(DATABASE))
    try:
        await connection.execute("CREATE TABLE IF NOT EXISTS kept (note text)")
        await connection.execute("INSERT INTO kept VALUES ($1)", topic)
    finally:
        await connection.close()
    cluster_id = (infra.state_dir / "kafka" / "cluster-id").read_text()

    infra.stop()
    assert infra.kafka.pids == [None]
    assert not infra.postgres.running
    # New objects, as a second `devstack up` would make: only the state folder carries over.
    fresh = Infra.on(infra.state_dir)
    infra.kafka, infra.postgres = fresh.kafka, fresh.postgres
    infra.start()

    assert (infra.state_dir / "kafka" / "cluster-id").read_text() == cluster_id
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka.bootstrap_servers)
    await admin.start()
    try:
        assert topic in await admin.list_topics()
    finally:
        await admin.close()
    assert await consume_one(infra.kafka.bootstrap_servers, topic) == (b"case-2", b"kept", partition)
    connection = await asyncpg.connect(infra.postgres.dsn(DATABASE))
    try:
        assert topic in await connection.fetchval("SELECT array_agg(note) FROM kept")
    finally:
        await connection.close()


def test_a_killed_kafka_node_comes_back(infra: Infra) -> None:
    pid = infra.kafka.pids[0]
    assert pid is not None

    infra.kafka.kill(0)
    assert infra.kafka.pids == [None]
    infra.kafka.restart(0)
    infra.kafka.wait_ready()

    assert infra.kafka.pids[0] not in (None, pid)


# A stand-in service: `migrate` records its environment, `serve` answers /health with it.
FAKE_SERVICE = textwrap.dedent(
    """
    import http.server, json, os, pathlib, sys

    if sys.argv[1:] == ["migrate"]:
        pathlib.Path(os.environ["FAKE_OUT"], "migrated").write_text(os.environ["DATABASE_URL"])
        sys.exit(0)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            wanted = ("_URL", "_SERVERS", "_PORT")
            body = json.dumps({key: value for key, value in os.environ.items() if key.endswith(wanted)})
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(body.encode())

    http.server.HTTPServer(("127.0.0.1", int(os.environ["HTTP_PORT"])), Health).serve_forever()
    """
)


def test_stack_migrates_then_serves_each_service_and_stops_them(infra: Infra, tmp_path: Path) -> None:
    (tmp_path / "fake_service.py").write_text(FAKE_SERVICE)
    state_dir = tmp_path / "state"
    # Reuse the jars fetched for `infra` so this test need not run Maven again.
    shutil.copytree(infra.state_dir / "kafka" / "libs", state_dir / "kafka" / "libs")
    specs = [
        ServiceSpec("alpha", "fake_service", 0, url_env="ALPHA_URL"),
        ServiceSpec("beta", "fake_service", 0, serve_args=("serve",), migrate_args=None),
    ]
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "FAKE_OUT": str(tmp_path)}
    stack = Stack(state_dir, StackPorts.free(specs), specs, fast_postgres=True, env=env)

    with stack:
        with urllib.request.urlopen(f"{stack.url('beta')}/health", timeout=5) as response:
            seen = json.loads(response.read())
        pids = [process.pid for process in stack.processes.values()]
        assert "alpha" in stack.describe() and stack.kafka.bootstrap_servers in stack.describe()

    assert (tmp_path / "migrated").read_text() == stack.postgres.dsn("onestop")
    assert seen["KAFKA_BOOTSTRAP_SERVERS"] == stack.kafka.bootstrap_servers
    assert seen["DATABASE_URL"] == stack.postgres.dsn("onestop")
    assert seen["ALPHA_URL"] == stack.url("alpha")
    assert seen["HTTP_PORT"] == str(stack.ports["beta"])
    assert all(pid is not None and not Path(f"/proc/{pid}").exists() for pid in pids)
    assert processes_using(state_dir) == []


def test_managed_process_fails_fast_with_its_log_when_it_exits(tmp_path: Path) -> None:
    process = ManagedProcess(
        "broken",
        [sys.executable, "-c", "import sys; print('cannot start: no config'); sys.exit(3)"],
        os.environ,
        tmp_path / "broken.log",
        "http://127.0.0.1:9/health",
    )
    process.start()
    began = time.monotonic()

    with pytest.raises(DevstackError, match=r"(?s)exit code 3.*cannot start: no config"):
        process.wait_ready(timeout=30)
    assert time.monotonic() - began < 10


def test_managed_process_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    process = ManagedProcess("stubborn", [sys.executable, "-c", stubborn], os.environ, tmp_path / "s.log", grace=1)
    process.start()
    deadline = time.monotonic() + 10
    # The log's first line echoes the command, so wait for the program's own output line.
    while "up" not in (tmp_path / "s.log").read_text().splitlines() and time.monotonic() < deadline:
        time.sleep(0.05)

    process.stop()

    assert not process.alive
    assert process.returncode == -signal.SIGKILL


def test_jars_command_reuses_the_fetched_jars(infra: Infra) -> None:
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "jars", "--state-dir", str(infra.state_dir)],
        capture_output=True,
        text=True,
        cwd=repo_root(),
    )
    assert result.returncode == 0, result.stderr
    assert str(infra.state_dir / "kafka" / "libs") in result.stdout
    assert time.monotonic() - began < 10


def test_a_maven_failure_is_reported_with_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "mvn").write_text("#!/bin/sh\necho 'Could not resolve dependencies: central unreachable'\nexit 1\n")
    (fake_bin / "mvn").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")

    with pytest.raises(DevstackError, match=r"(?s)Maven failed.*exit 1.*central unreachable"):
        ensure_kafka_jars(tmp_path / "state")
    assert not (tmp_path / "state" / "kafka" / "libs").exists()


def test_up_runs_until_sigterm_and_exits_cleanly(infra: Infra, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    shutil.copytree(infra.state_dir / "kafka" / "libs", state_dir / "kafka" / "libs")
    kafka_port, postgres_port = free_ports(2)
    env = {**os.environ, "DEVSTACK_KAFKA_PORT": str(kafka_port), "DEVSTACK_POSTGRES_PORT": str(postgres_port)}
    argv = [sys.executable, "-m", "devstack", "up", "--infra-only", "--state-dir", str(state_dir)]
    up = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=repo_root())
    assert up.stdout is not None
    lines = []
    for line in up.stdout:
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            break
    assert any(f"127.0.0.1:{kafka_port}" in line for line in lines), "".join(lines)

    up.send_signal(signal.SIGTERM)
    rest, _ = up.communicate(timeout=90)

    assert up.returncode == 0, "".join(lines) + rest
    assert "stopped." in rest
    assert processes_using(state_dir) == []


def processes_using(state_dir: Path) -> list[int]:
    """Pids of live processes whose command line names `state_dir` (Kafka nodes, the postmaster)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(state_dir).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found
