"""The routing service: consumes case.submitted, referral.rerouting, case.erased, consent.withdrawn, consent.recorded,
case.closed and referral.events (a referral's state, for the plan's rules), publishes referrals.<agency-id>,
case.routed, case.plan and need.closed."""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
from fastapi import FastAPI
from kit.app import service_app
from kit.loops import every
from kit.runtime import ServiceRuntime
from schemas.catalogue import Catalogue, CatalogueError, load_catalogue
from schemas.events import (
    EVENT_MODELS,
    CaseClosed,
    CaseErased,
    CaseSubmitted,
    CaseSubmittedV1,
    ConsentRecorded,
    ConsentWithdrawn,
    Envelope,
    ReroutingRequested,
    utc_now,
)
from schemas.topics import (
    CASE_CLOSED,
    CASE_ERASED,
    CASE_SUBMITTED,
    CONSENT_RECORDED,
    CONSENT_WITHDRAWN,
    REFERRAL_EVENTS,
    REFERRAL_REROUTING,
    agency_topic,
)

from .api import Routing, router
from .erasure import ERASURE_CONSUMER, on_case_erased
from .handlers import (
    CLOSED_CONSUMER,
    CONSENTS_CONSUMER,
    CONSENTS_RECORDED_CONSUMER,
    CONSUMER,
    EVENTS_CONSUMER,
    REROUTING_CONSUMER,
    Clock,
    may_meet_a_rule,
    on_case_closed,
    on_consent_recorded,
    on_consent_withdrawn,
    on_referral_event,
    on_rerouting_requested,
    retry_pending,
    route_submitted,
)
from .rules import Rules, load_rules
from .settings import RoutingSettings

log = logging.getLogger(__name__)

# How long routing's reader of referral.events gathers events into one batch (kit/batches.py, `gather_ms`).
EVENTS_GATHER_MS = 250


@dataclass
class PendingRetry:
    """When pending needs are tried again: those last tried a round ago, and all of them as soon as something that
    may help happens (an agency reports places; the service starts, perhaps with a new catalogue). Each round takes
    only needs last tried before its cut-off, so a need tried in this round waits for the next."""

    clock: Clock
    every: timedelta
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    poked_at: datetime | None = None

    def __post_init__(self) -> None:
        self.poked_at = self.clock()

    def poke(self) -> None:
        self.poked_at = self.clock()
        self.wake.set()

    def cut_off(self) -> datetime:
        due = self.clock() - self.every
        return due if self.poked_at is None else max(due, self.poked_at)


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

    # Cases waiting are routed in batches, one transaction each (kit/batches.py); each asks whether its case is erased.
    runtime.consume_batch(
        CASE_SUBMITTED, CONSUMER, (CaseSubmitted, CaseSubmittedV1), handle_case, inbox=CONSUMER, checks_erasure=True
    )
    runtime.consume(REFERRAL_REROUTING, REROUTING_CONSUMER, (ReroutingRequested,), handle_rerouting)
    runtime.consume(CONSENT_WITHDRAWN, CONSENTS_CONSUMER, (ConsentWithdrawn,), handle_consent_withdrawn)

    async def handle_consent_recorded(event: ConsentRecorded) -> None:
        await on_consent_recorded(runtime.pool, catalogue, rules, clock, event)

    runtime.consume(CONSENT_RECORDED, CONSENTS_RECORDED_CONSUMER, (ConsentRecorded,), handle_consent_recorded)

    async def handle_erasure(event: CaseErased) -> None:
        await on_case_erased(runtime.pool, event)

    runtime.consume(CASE_ERASED, ERASURE_CONSUMER, (CaseErased,), handle_erasure)

    async def handle_case_closed(event: CaseClosed) -> None:
        await on_case_closed(runtime.pool, event)

    runtime.consume(CASE_CLOSED, CLOSED_CONSUMER, (CaseClosed,), handle_case_closed)

    async def handle_referral_event(conn: asyncpg.Connection, event: Envelope) -> None:
        await on_referral_event(conn, catalogue, rules, clock, event)

    # A referral's state (and a pending need closed) may end a plan's stage by its rule; every other event on the
    # topic is passed over without a transaction. No one waits on this consumer: it gathers a quarter of a second of
    # events per batch, one transaction for them all rather than one per event (issue #15).
    runtime.consume_batch(
        REFERRAL_EVENTS,
        EVENTS_CONSUMER,
        EVENT_MODELS,
        handle_referral_event,
        inbox=EVENTS_CONSUMER,
        wants=may_meet_a_rule,
        gather_ms=EVENTS_GATHER_MS,
    )
    runtime.produces(REFERRAL_EVENTS, *(agency_topic(a.id) for a in catalogue))

    # Pending needs: tried again every PENDING_RETRY_SECONDS, at start (the catalogue may have changed) and as soon
    # as an agency reports places; each round takes the ones last tried before its cut-off, so none loops.
    retry = PendingRetry(clock, timedelta(seconds=settings.pending_retry_seconds))

    async def retry_round() -> int:
        return await retry_pending(runtime.pool, catalogue, rules, clock, retry.cut_off())

    return service_app(
        "Routing",
        runtime,
        router,
        provides=[Routing(catalogue, rules, clock, on_capacity=retry.poke)],
        loops=[lambda: every(settings.pending_retry_seconds, retry_round, "pending needs", retry.wake)],
    )
