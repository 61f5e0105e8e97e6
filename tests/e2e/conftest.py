"""The whole system as real processes: a real Kafka broker, a real PostgreSQL, the four services, the simulator."""

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from devstack.ports import free_ports
from devstack.stack import Stack, StackPorts

from tests.e2e.otlp import OtlpReceiver

# Long enough that every delivery of a case is recorded before the first acceptance, so the timeline reads in
# the order the issue promises (submitted, routed, delivered x3, accepted x3) even on a busy machine.
SIMULATOR_BEHAVIOUR = {"default": {"action": "accept", "delay_seconds": 1.0}}


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    """Every span the services export, over OTLP/HTTP as to Jaeger (tests/e2e/test_observability.py reads them)."""
    receiver = OtlpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


class Mailbox:
    """A real SMTP server in the test process (aiosmtpd): every e-mail notify sends, as received."""

    def __init__(self) -> None:
        [self.port] = free_ports(1)
        self._lock = threading.Lock()
        self._received: list[EmailMessage] = []
        self._server = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self._received.append(message)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self._received if m["To"] == address]

    def start(self) -> "Mailbox":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    """Where notify's e-mails arrive (tests/e2e/test_notify_*.py and test_deadlines.py read them)."""
    box = Mailbox().start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="session")
def stack(otlp: OtlpReceiver, mailbox: Mailbox) -> Iterator[Stack]:
    env = {**os.environ, "SIMULATOR_BEHAVIOUR": json.dumps(SIMULATOR_BEHAVIOUR), "LOG_LEVEL": "INFO"}
    # Traces go to the test's receiver, configured only by the standard variables; exported within ~0.2 s.
    env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    # Notify's e-mails go to the test's SMTP server; an hour of an acknowledgement deadline lasts 10 s, so the
    # police's 4 hours for a high-urgency case pass in 40 s (reminder at 30 s), the default 6 hours in 60 s.
    env |= {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mailbox.port), "ACK_DEADLINE_HOUR_SECONDS": "10"}
    # Rate limits per credential low enough that tests/e2e/test_security_http.py reaches one with 300 requests;
    # each test's client has a credential of its own (helpers.StackAuth).
    env |= {"RATE_LIMIT_BURST": "100", "RATE_LIMIT_PER_SECOND": "10"}
    # A closed case's personal data is kept 20 s, not years (tests/e2e/test_closing.py); no other test closes one.
    env |= {"CASE_RETENTION": "PT20S", "RETENTION_POLL_SECONDS": "1"}
    # The gateway's attempts 0.3 s apart, doubling: six of them last about 9 s (14 s at most with the spread), so
    # tests/e2e/test_trust.py shows an intake outage longer than that fails nothing without waiting a minute.
    env |= {"RETRY_BASE_SECONDS": "0.3"}
    # Not pytest's tmp_path: its parent is private to root, and PostgreSQL runs as its own user.
    state = Path(tempfile.mkdtemp(prefix="onestop-e2e-"))
    state.chmod(0o755)
    running = Stack(state, StackPorts.free(), fast_postgres=True, env=env)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        if keep := os.environ.get("E2E_KEEP_LOGS"):  # a folder to keep the services' logs in, for a post-mortem
            shutil.copytree(running.logs_dir, Path(keep), dirs_exist_ok=True)
        shutil.rmtree(state, ignore_errors=True)
