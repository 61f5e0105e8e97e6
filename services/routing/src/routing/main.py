"""The routing service: consumes case.submitted, referral.rerouting, case.erased and consent.withdrawn, publishes
referrals.<agency-id> and case.routed."""

import logging

import asyncpg
from fastapi import FastAPI
from kit.access_log import AccessLog
from kit.health import install_health_route
from kit.http import install_problem_handlers
from kit.limits import install_request_limits
from kit.runtime import ServiceRuntime
from schemas.catalogue import Catalogue, CatalogueError, load_catalogue
from schemas.events import (
    CaseErased,
    CaseSubmitted,
    CaseSubmittedV1,
    ConsentWithdrawn,
    Envelope,
    ReroutingRequested,
    utc_now,
)
from schemas.topics import (
    CASE_ERASED,
    CASE_SUBMITTED,
    CONSENT_WITHDRAWN,
    REFERRAL_EVENTS,
    REFERRAL_REROUTING,
    agency_topic,
)

from .api import routes
from .erasure import ERASURE_CONSUMER, on_case_erased
from .handlers import (
    CONSENTS_CONSUMER,
    CONSUMER,
    REROUTING_CONSUMER,
    Clock,
    on_consent_withdrawn,
    on_rerouting_requested,
    route_submitted,
)
from .rules import Rules, load_rules
from .settings import RoutingSettings

log = logging.getLogger(__name__)


def load_routing_data(settings: RoutingSettings) -> tuple[Catalogue, Rules]:
    """The catalogue and the rules, checked together; a CatalogueError names the file, the field and the problem."""
    catalogue = load_catalogue(settings.catalogue_dir)
    return catalogue, load_rules(settings.rules_path, catalogue)


def create_app(settings: RoutingSettings, clock: Clock = utc_now) -> FastAPI:
    try:
        catalogue, rules = load_routing_data(settings)
    except CatalogueError as error:
        log.error("the catalogue cannot be used: %s", error)
        raise SystemExit(f"routing cannot start: {error}") from None
    runtime = ServiceRuntime(settings)

    async def handle_case(conn: asyncpg.Connection, event: Envelope) -> None:
        assert isinstance(event, CaseSubmitted | CaseSubmittedV1)  # the consumer accepts no other
        await route_submitted(conn, catalogue, rules, clock, event)

    async def handle_rerouting(event: ReroutingRequested) -> None:
        await on_rerouting_requested(runtime.pool, catalogue, rules, clock, event)

    async def handle_consent_withdrawn(event: ConsentWithdrawn) -> None:
        await on_consent_withdrawn(runtime.pool, event)

    # Cases waiting are routed in batches, one transaction each (kit/batches.py).
    runtime.consume_batch(CASE_SUBMITTED, CONSUMER, (CaseSubmitted, CaseSubmittedV1), handle_case, inbox=CONSUMER)
    runtime.consume(REFERRAL_REROUTING, REROUTING_CONSUMER, (ReroutingRequested,), handle_rerouting)
    runtime.consume(CONSENT_WITHDRAWN, CONSENTS_CONSUMER, (ConsentWithdrawn,), handle_consent_withdrawn)

    async def handle_erasure(event: CaseErased) -> None:
        await on_case_erased(runtime.pool, event)

    runtime.consume(CASE_ERASED, ERASURE_CONSUMER, (CaseErased,), handle_erasure)
    runtime.produces(REFERRAL_EVENTS, *(agency_topic(a.id) for a in catalogue))
    app = FastAPI(title="Routing", lifespan=runtime.lifespan)
    app.state.runtime = runtime
    runtime.instrument(app)  # traces, /metrics, /health
    install_problem_handlers(app)
    install_request_limits(app, settings)  # 413 body size, 429 per credential
    install_health_route(app, runtime)
    app.include_router(routes(catalogue, rules, clock, AccessLog.for_service(settings)))
    return app
