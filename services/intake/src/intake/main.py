"""The intake service: HTTP API for staff, the consent ledger, the outbox relay publishing case.submitted,
case.erased and consent.withdrawn."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from kit.access_log import AccessLog
from kit.health import install_health_route
from kit.http import install_problem_handlers
from kit.limits import install_request_limits
from kit.loops import every
from kit.runtime import ServiceRuntime
from schemas.topics import CASE_CLOSED, CASE_ERASED, CASE_SUBMITTED, CONSENT_WITHDRAWN

from .api import routes
from .closing import closing_routes, destroy_expired
from .consents import routes as consent_routes
from .settings import IntakeSettings


def create_app(settings: IntakeSettings) -> FastAPI:
    runtime = ServiceRuntime(settings)
    runtime.produces(CASE_SUBMITTED, CASE_ERASED, CONSENT_WITHDRAWN, CASE_CLOSED)
    access_log = AccessLog.for_service(settings)

    async def destroy_round() -> int:
        return await destroy_expired(runtime.pool, access_log)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app):
            # Closed cases whose retention ended: destroyed at start (if due meanwhile) and then as they fall due.
            loop = asyncio.create_task(every(settings.retention_poll_seconds, destroy_round, "retention"))
            try:
                yield
            finally:
                loop.cancel()
                await asyncio.gather(loop, return_exceptions=True)

    app = FastAPI(title="Intake", lifespan=lifespan)
    app.state.runtime = runtime
    runtime.instrument(app)  # traces, /metrics, /health
    install_problem_handlers(app)
    install_request_limits(app, settings)  # 413 body size, 429 per credential
    install_health_route(app, runtime)
    app.include_router(routes(settings))
    app.include_router(consent_routes(settings))
    app.include_router(closing_routes(access_log, settings.case_retention, settings.case_retention_by_crime_type))
    return app
