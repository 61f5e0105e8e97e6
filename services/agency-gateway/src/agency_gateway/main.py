"""The agency gateway: per agency, a channel from its plugin and consumer groups of its own."""

import time
from uuid import UUID

from fastapi import FastAPI, Request
from kit.http import install_health_route, install_problem_handlers
from kit.runtime import ServiceRuntime
from schemas.catalogue import load_catalogue
from schemas.topics import REFERRAL_EVENTS

from . import storage
from .domain import CircuitBreaker, RetryPolicy
from .handlers import AgencyDeliveries
from .registry import ChannelRegistry
from .settings import GatewaySettings


def create_app(settings: GatewaySettings, registry: ChannelRegistry | None = None) -> FastAPI:
    catalogue = load_catalogue(settings.catalogue_dir)
    registry = registry or ChannelRegistry.discover()
    # Every agency's channel is opened now: a missing plugin or secret stops the start, naming the agency.
    channels = {agency.id: registry.open(agency) for agency in catalogue}
    runtime = ServiceRuntime(settings)
    policy = RetryPolicy(settings.delivery_attempts, settings.retry_base_seconds, settings.retry_max_seconds)
    deliveries = [
        AgencyDeliveries(
            runtime,
            agency,
            channels[agency.id],
            policy,
            CircuitBreaker(settings.breaker_threshold, settings.breaker_open_seconds),
        )
        for agency in catalogue
    ]
    for delivery in deliveries:
        delivery.subscribe()
    runtime.produces(REFERRAL_EVENTS)

    app = FastAPI(title="Agency gateway", lifespan=runtime.lifespan)
    app.state.runtime = runtime
    runtime.instrument(app)  # traces, /metrics, /health
    install_problem_handlers(app)
    install_health_route(app, runtime)

    @app.get("/cases/{case_id}/deliveries", tags=["deliveries"])
    async def case_deliveries(case_id: UUID, request: Request) -> list[dict[str, object]]:
        """Each referral's delivery: its outcome, the agency's answer, and every attempt."""
        return await storage.deliveries_of_case(request.app.state.runtime.pool, case_id)

    @app.get("/cases/{case_id}/notices", tags=["deliveries"])
    async def case_notices(case_id: UUID, request: Request) -> list[dict[str, object]]:
        """notify's reminders and cancellations of the case's referrals, and how delivering each to its agency ended."""
        return await storage.notices_of_case(request.app.state.runtime.pool, case_id)

    @app.get("/agencies", tags=["deliveries"])
    async def agencies() -> list[dict[str, object]]:
        """Each agency's channel and circuit: `open` while the gateway pauses calls to an agency that is down."""
        now = time.time()
        return [
            {
                "agency_id": d.agency.id,
                "channel": d.agency.channel.type,
                "circuit": "open" if d.breaker.is_open(now) else "closed",
                "consecutive_failures": d.breaker.consecutive_failures,
            }
            for d in deliveries
        ]

    return app
