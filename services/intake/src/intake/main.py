"""The intake service: HTTP API for staff, the consent ledger, the outbox relay publishing case.submitted,
case.erased and consent.withdrawn."""

from fastapi import FastAPI
from kit.health import install_health_route
from kit.http import install_problem_handlers
from kit.limits import install_request_limits
from kit.runtime import ServiceRuntime
from schemas.topics import CASE_ERASED, CASE_SUBMITTED, CONSENT_WITHDRAWN

from .api import routes
from .consents import routes as consent_routes
from .settings import IntakeSettings


def create_app(settings: IntakeSettings) -> FastAPI:
    runtime = ServiceRuntime(settings)
    runtime.produces(CASE_SUBMITTED, CASE_ERASED, CONSENT_WITHDRAWN)
    app = FastAPI(title="Intake", lifespan=runtime.lifespan)
    app.state.runtime = runtime
    runtime.instrument(app)  # traces, /metrics, /health
    install_problem_handlers(app)
    install_request_limits(app, settings)  # 413 body size, 429 per credential
    install_health_route(app, runtime)
    app.include_router(routes(settings))
    app.include_router(consent_routes(settings))
    return app
