"""`GET /health`: what a service depends on and whether each answers now.

Typed against `HealthReporter`, what the route needs from a running service (`kit.runtime.ServiceRuntime` is one), so
that this module, and `kit.http` beside it, import nothing of Kafka, FastStream or OpenTelemetry."""

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.responses import JSONResponse


@dataclass
class Dependency:
    """Something the service needs, where it is (never with credentials) and whether it answered just now."""

    name: str
    kind: str  # postgresql, kafka or http
    target: str
    required: bool  # when False the service works without it, less fully
    reachable: bool = False
    latency_ms: float | None = None
    error: str | None = None  # the error's type only
    detail: dict[str, Any] = field(default_factory=dict)


class Named(Protocol):
    @property
    def service_name(self) -> str: ...


class HealthReporter(Protocol):
    """A running service's health report: its name, each dependency checked now, and its topics."""

    @property
    def settings(self) -> Named: ...

    async def dependencies(self) -> list[Dependency]: ...

    def topology(self) -> dict[str, Any]: ...


def summary(dependencies: list[Dependency]) -> dict[str, str]:
    """The short form: `{"postgres": "ok", "kafka": "unreachable (TimeoutError)", "outbox_backlog": "0", ...}`."""
    checks: dict[str, str] = {}
    for d in dependencies:
        checks[d.name] = "ok" if d.reachable else f"unreachable ({d.error})" if d.error else "unreachable"
        if d.name == "postgres" and d.reachable:
            checks["outbox_backlog"] = str(d.detail["outbox_backlog"])
    return checks


def as_json(dependency: Dependency) -> dict[str, Any]:
    return asdict(dependency)


def install_health_route(app: FastAPI, runtime: HealthReporter) -> None:
    """`GET /health`: what the service depends on and whether each answers now; 503 when a required one does not.

    `status` is `ok`, `impaired` (an optional dependency is unreachable: some features fail) or `degraded`
    (a required one is: 503). `checks` is the short form; `dependencies` says what, where, and how fast.
    """
    if any(getattr(route, "path", None) == "/health" for route in app.routes):
        return

    @app.get("/health", tags=["operations"])
    async def health() -> JSONResponse:
        dependencies = await runtime.dependencies()
        healthy = all(d.reachable for d in dependencies if d.required)
        complete = all(d.reachable for d in dependencies)
        return JSONResponse(
            {
                "status": "ok" if complete else "impaired" if healthy else "degraded",
                "service": runtime.settings.service_name,
                "checks": summary(dependencies),
                "dependencies": [as_json(d) for d in dependencies],
                **runtime.topology(),
            },
            status_code=200 if healthy else 503,
        )
