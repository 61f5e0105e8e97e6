"""Nothing on a hot path hops to a worker thread: FastAPI runs a plain `def` dependency or endpoint in a worker
thread, and FastStream's FastDepends resolves a `Context(...)` argument with a synchronous function, in a worker
thread too. Under load py-spy found those hops in every request and every fetch (docs/benchmark.md); these tests
fail when one comes back."""

import inspect
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import anyio.to_thread
import pytest
from agency_gateway.main import create_app as gateway_app
from agency_gateway.settings import GatewaySettings
from console.main import create_app as console_app
from console.settings import ConsoleSettings
from devstack.stack import dev_secrets
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from faststream.kafka import TestKafkaBroker
from intake.main import create_app as intake_app
from intake.settings import IntakeSettings
from kit.lanes import subscribe_lanes
from kit.messaging import make_broker, subscribe
from notify.main import create_app as notify_app
from notify.settings import NotifySettings
from routing.main import create_app as routing_app
from routing.settings import RoutingSettings
from schemas.events import CaseSubmitted, encode_event

from tests.samples import sample_case

SECRET = "unit-test-signing-secret-of-32-bytes!"
CATALOGUE = Path(__file__).resolve().parents[2] / "catalogue" / "agencies"


APPS: dict[str, Callable[[], FastAPI]] = {
    "intake": lambda: intake_app(IntakeSettings(auth_secret=SECRET)),
    "routing": lambda: routing_app(RoutingSettings(catalogue_dir=CATALOGUE, auth_secret=SECRET)),
    "agency-gateway": lambda: gateway_app(GatewaySettings(catalogue_dir=CATALOGUE, auth_secret=SECRET)),
    "notify": lambda: notify_app(NotifySettings(auth_secret=SECRET)),
    "console": lambda: console_app(ConsoleSettings(auth_secret=SECRET)),
}


def api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """The app's routes, those of the routers it includes too (FastAPI keeps an included router as one entry)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (router := getattr(route, "original_router", None)) is not None:
            yield from api_routes(router.routes)


def calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from calls(dependency)


def runs_on_the_loop(call: Any) -> bool:
    """A coroutine function, or an object whose `__call__` is one (FastAPI's HTTPBearer)."""
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


@pytest.mark.parametrize("service", ["intake", "routing", "agency-gateway", "notify", "console"])
def test_every_endpoint_and_dependency_runs_on_the_event_loop(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENCY_SIMULATOR_URL", "http://127.0.0.1:1")  # the sample catalogue's webhooks
    for name, secret in dev_secrets(CATALOGUE, {}).items():  # and the secrets they are signed with
        monkeypatch.setenv(name, secret)
    app = APPS[service]()
    routes = list(api_routes(app.routes))
    assert len(routes) > 2, "only /health and /metrics found: the walk below would check almost nothing"
    in_threads = {
        f"{route.path}: {getattr(call, '__qualname__', call)}"
        for route in routes
        for call in (route.dependant.call, *calls(route.dependant))
        if not runs_on_the_loop(call)
    }
    assert in_threads == set(), f"{service} runs these in worker threads"


@pytest.fixture
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every function handed to a worker thread while the test runs."""
    hops: list[Any] = []
    real = anyio.to_thread.run_sync

    async def recorded(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", recorded)
    return hops


@pytest.mark.parametrize("consumer", ["one record at a time", "lanes"])
async def test_the_kits_consumers_get_the_message_without_a_worker_thread(
    consumer: str, thread_hops: list[Any]
) -> None:
    broker = make_broker("in-memory", "thread-test")
    handled: list[CaseSubmitted] = []

    async def handle(event: CaseSubmitted) -> None:
        handled.append(event)

    if consumer == "lanes":
        subscribe_lanes(broker, ["case.submitted"], "thread-group", (CaseSubmitted,), handle, max_attempts=3)
    else:
        subscribe(broker, "case.submitted", "thread-group", (CaseSubmitted,), handle)
    event = CaseSubmitted(case_id=uuid4(), producer="test", case=sample_case().facts())
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(encode_event(event), "case.submitted", key=b"k")
    assert handled == [event]
    assert thread_hops == []
