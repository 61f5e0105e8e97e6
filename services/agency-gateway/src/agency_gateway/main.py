"""The agency gateway: a consumer group per agency topic, each delivering in the agency's channel."""

from uuid import UUID

import httpx
from fastapi import FastAPI, Request
from kit.http import install_health_route, install_problem_handlers
from kit.runtime import ServiceRuntime
from schemas.catalogue import Agency, load_catalogue
from schemas.events import ReferralRequested
from schemas.topics import REFERRAL_EVENTS, agency_topic

from . import storage
from .handlers import consumer_name, on_referral
from .settings import GatewaySettings


def create_app(settings: GatewaySettings) -> FastAPI:
    catalogue = load_catalogue(settings.catalogue_dir)
    runtime = ServiceRuntime(settings)
    client = httpx.AsyncClient(follow_redirects=False)
    runtime.on_stop(client.aclose)

    def handler_for(agency: Agency):  # type: ignore[no-untyped-def]
        async def handle(referral: ReferralRequested) -> None:
            await on_referral(runtime.pool, client, settings, agency, referral)

        return handle

    # One consumer group per agency: a slow or failing agency holds up only its own topic.
    for agency in catalogue:
        runtime.consume(agency_topic(agency.id), consumer_name(agency), (ReferralRequested,), handler_for(agency))
    runtime.produces(REFERRAL_EVENTS)

    app = FastAPI(title="Agency gateway", lifespan=runtime.lifespan)
    app.state.runtime = runtime
    install_problem_handlers(app)
    install_health_route(app, runtime)

    @app.get("/cases/{case_id}/deliveries", tags=["deliveries"])
    async def deliveries(case_id: UUID, request: Request) -> list[dict[str, object]]:
        return await storage.deliveries_of_case(request.app.state.runtime.pool, case_id)

    return app
