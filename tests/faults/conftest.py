"""A real stack for the short fault scenarios: durable PostgreSQL, free ports, a temporary folder."""

from collections.abc import AsyncIterator, Iterator

import pytest
from devstack.stack import Stack
from faults.runner import Observer, RunSettings, running_stack
from faults.scenarios import Options

# Short versions of the scenarios: a few hundred cases in all, two faults each, close together.
SHORT = RunSettings(
    cases=100,
    concurrency=6,
    rate=25.0,
    drain_timeout=150.0,
    timelines=20,
    wait_for_acks=False,
    options=Options(
        interval=1.0,
        min_faults=2,
        max_faults=2,
        down_seconds=2.0,
        ready_timeout=120.0,
        replay_records=10,
        poll_seconds=1.0,
    ),
    seed=5,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: kills services, PostgreSQL or Kafka under load on a real stack")


@pytest.fixture(scope="module")
def fault_stack() -> Iterator[Stack]:
    with running_stack(1, SHORT, print) as stack:
        yield stack


@pytest.fixture(scope="module")
async def observer(fault_stack: Stack) -> AsyncIterator[Observer]:
    async with Observer(fault_stack) as watching:
        yield watching
