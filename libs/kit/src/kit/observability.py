"""A service's operations surface on its HTTP app: server spans, `/metrics` and `/health`, installed by one call
(`runtime.instrument(app)` in the service's `main.py`)."""

import time
from typing import Any

from fastapi import FastAPI, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import metrics
from .health import HealthReporter, install_health_route
from .telemetry import instrument_libraries

# Probes and scrapes every few seconds would bury the cases' traces.
_UNTRACED_PATHS = "/health$,/metrics$"


def install_observability(app: FastAPI, runtime: HealthReporter) -> None:
    """Server spans for every request but probes (no headers, bodies or query strings recorded; see
    `kit.telemetry.PrivacyFilter`), request metrics by route template, `GET /metrics` and `GET /health`."""
    instrument_libraries()
    FastAPIInstrumentor.instrument_app(app, excluded_urls=_UNTRACED_PATHS, exclude_spans=["receive", "send"])
    app.add_middleware(HttpMetrics)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def prometheus_metrics() -> Response:
        # From memory: the sampled gauges are refreshed in the background (`ServiceRuntime._sample_metrics`).
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    install_health_route(app, runtime)


class HttpMetrics:
    """Times each request under its route template (`/cases/{case_id}`), never its concrete path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template != "/metrics":
                metrics.HTTP_SECONDS.labels(scope["method"], template, str(status)).observe(
                    time.perf_counter() - started
                )
