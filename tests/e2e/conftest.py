"""The whole system as real processes: a real Kafka broker, a real PostgreSQL, the four services, the simulator."""

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from devstack.stack import Stack, StackPorts

SIMULATOR_BEHAVIOUR = {"default": {"action": "accept", "delay_seconds": 0.3}}


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    env = {**os.environ, "SIMULATOR_BEHAVIOUR": json.dumps(SIMULATOR_BEHAVIOUR), "LOG_LEVEL": "INFO"}
    # Not pytest's tmp_path: its parent is private to root, and PostgreSQL runs as its own user.
    state = Path(tempfile.mkdtemp(prefix="onestop-e2e-"))
    state.chmod(0o755)
    running = Stack(state, StackPorts.free(), fast_postgres=True, env=env)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(state, ignore_errors=True)
