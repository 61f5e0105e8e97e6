"""kit.health on its own: the health route needs only a health report (any `HealthReporter`), and kit.http and
kit.auth load nothing of Kafka, FastStream or OpenTelemetry's SDK (import-linter checks the imports; this checks
what a fresh interpreter actually loads)."""

import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from kit.health import Dependency, install_health_route, summary


@dataclass
class Named:
    service_name: str = "unit"


@dataclass
class FakeReporter:
    found: list[Dependency]
    settings: Named = field(default_factory=Named)

    async def dependencies(self) -> list[Dependency]:
        return self.found

    def topology(self) -> dict[str, Any]:
        return {"consumes": [], "produces": ["case.submitted"]}


def postgres(reachable: bool) -> Dependency:
    return Dependency(
        "postgres", "postgresql", "db:5432/onestop", True, reachable, detail={"outbox_backlog": 3} if reachable else {}
    )


@pytest.mark.parametrize(
    ("found", "status", "code"),
    [
        ([postgres(True), Dependency("routing", "http", "http://routing", False, True)], "ok", 200),
        (
            [postgres(True), Dependency("routing", "http", "http://routing", False, False, error="ConnectError")],
            "impaired",
            200,
        ),
        ([postgres(False), Dependency("routing", "http", "http://routing", False, True)], "degraded", 503),
    ],
)
async def test_the_health_route_reads_any_health_reporter(found: list[Dependency], status: str, code: int) -> None:
    app = FastAPI()
    install_health_route(app, FakeReporter(found))
    install_health_route(app, FakeReporter([]))  # installed once
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://unit") as client:
        answer = await client.get("/health")
    assert answer.status_code == code
    report = answer.json()
    assert report["status"] == status and report["service"] == "unit"
    assert report["checks"] == summary(found)
    assert [d["name"] for d in report["dependencies"]] == [d.name for d in found]
    assert report["produces"] == ["case.submitted"]


def test_the_short_form_names_each_dependency_and_the_outbox_backlog() -> None:
    found = [postgres(True), Dependency("kafka", "kafka", "k:9092", True, False, error="TimeoutError")]
    assert summary(found) == {"postgres": "ok", "outbox_backlog": "3", "kafka": "unreachable (TimeoutError)"}


def test_kit_http_and_kit_auth_load_no_kafka_nor_tracing_sdk() -> None:
    heavy = ("faststream", "aiokafka", "opentelemetry.sdk", "opentelemetry.instrumentation", "kit.runtime")
    code = f"import sys, kit.auth, kit.http, kit.health; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
