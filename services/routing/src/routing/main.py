"""The routing service: consumes case.submitted, publishes referrals.<agency-id> and case.routed."""

from fastapi import FastAPI
from kit.http import install_health_route, install_problem_handlers
from kit.runtime import ServiceRuntime
from schemas.catalogue import load_catalogue
from schemas.events import CaseSubmitted
from schemas.topics import CASE_SUBMITTED, REFERRAL_EVENTS, agency_topic

from .api import routes
from .handlers import CONSUMER, on_case_submitted
from .settings import RoutingSettings


def create_app(settings: RoutingSettings) -> FastAPI:
    catalogue = load_catalogue(settings.catalogue_dir)
    runtime = ServiceRuntime(settings)

    async def handle(event: CaseSubmitted) -> None:
        await on_case_submitted(runtime.pool, catalogue, event)

    runtime.consume(CASE_SUBMITTED, CONSUMER, (CaseSubmitted,), handle)
    runtime.produces(REFERRAL_EVENTS, *(agency_topic(a.id) for a in catalogue))
    app = FastAPI(title="Routing", lifespan=runtime.lifespan)
    app.state.runtime = runtime
    install_problem_handlers(app)
    install_health_route(app, runtime)
    app.include_router(routes(catalogue))
    return app
