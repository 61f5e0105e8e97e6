"""The agency gateway: per agency, a channel from its plugin and a lane of the one consumer; its HTTP API in api.py."""

import json
import time
from collections.abc import Callable, Sequence
from uuid import UUID

import asyncpg
from fastapi import FastAPI
from kit import metrics
from kit.app import service_app
from kit.lanes import Record
from kit.messaging import source_topic
from kit.runtime import ServiceRuntime
from schemas.catalogue import load_catalogue
from schemas.events import (
    EVENT_MODELS,
    CaseErased,
    CaseRouted,
    Envelope,
    ReferralCancelled,
    ReferralCompleted,
    ReferralDeclined,
    ReferralRequested,
)
from schemas.topics import CASE_ERASED, REFERRAL_EVENTS

from . import storage
from .api import DeadLetterQueues, Deliveries, router
from .domain import CircuitBreaker, RetryPolicy
from .erasure import ERASURE_CONSUMER, on_case_erased
from .handlers import AGENCY_TOPIC_EVENTS, DELIVERIES_CONSUMER, AgencyDeliveries, consumer_name
from .personal import IntakeDisclosures
from .registry import ChannelRegistry
from .settings import GatewaySettings

REROUTINGS_CONSUMER = "agency-gateway.reroutings"
# The events that end a referral for its agency. Not `referral.failed`: the agency never had that referral, and an
# operator's replay from the DLQ may still deliver it (unless routing gave its needs to another agency meanwhile).
ENDING = (ReferralDeclined, ReferralCompleted, ReferralCancelled)


def circuit_state(breaker: CircuitBreaker) -> Callable[[], float]:
    """onestop_circuit_open's value for one agency: 1 while its circuit is not closed."""
    return lambda: float(breaker.tripped)


def expected_disclosures(
    deliveries: list[AgencyDeliveries], disclosures: IntakeDisclosures
) -> Callable[[Sequence[Record]], None]:
    """What a fetch of records tells intake's disclosures to expect: the new referrals (not retries, which wait their
    time) that carry personal items to an agency whose channel sends them and whose circuit is closed — the ones
    their lane will ask the items of next (personal.py fetches a case's together)."""
    sending = {d.topic: d for d in deliveries if d.channel.sends_personal_items}

    def expect(records: Sequence[Record]) -> None:
        now = time.time()
        for record in records:
            delivery = sending.get(record.topic)
            if delivery is None or delivery.breaker.is_open(now) or record.value is None:
                continue
            try:
                body = json.loads(record.value)
                if body.get("type") != ReferralRequested.type or body.get("agency_id") != delivery.agency.id:
                    continue
                case_id, referral_id = UUID(body["case_id"]), UUID(body["referral_id"])
                items = [str(item) for item in body.get("personal_items") or ()]
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # its lane rejects it
            disclosures.expect(case_id, referral_id, delivery.agency.id, items)

    return expect


def create_app(settings: GatewaySettings, registry: ChannelRegistry | None = None) -> FastAPI:
    catalogue = load_catalogue(settings.catalogue_dir)
    registry = registry or ChannelRegistry.discover()
    # Every agency's channel is opened now: a missing plugin or secret stops the start, naming the agency.
    channels = {agency.id: registry.open(agency) for agency in catalogue}
    runtime = ServiceRuntime(settings)
    secret = None if settings.auth_secret is None else settings.auth_secret.get_secret_value()
    disclosures = IntakeDisclosures(settings.intake_url, secret, window_seconds=settings.disclosure_window_seconds)
    runtime.on_stop(disclosures.close)
    policy = RetryPolicy(settings.delivery_attempts, settings.retry_base_seconds, settings.retry_max_seconds)
    deliveries = [
        AgencyDeliveries(
            runtime,
            agency,
            channels[agency.id],
            policy,
            CircuitBreaker(settings.breaker_threshold, settings.breaker_open_seconds),
            disclosures,
        )
        for agency in catalogue
    ]
    for delivery in deliveries:  # read at each scrape of /metrics
        metrics.CIRCUIT_OPEN.labels(delivery.agency.id).set_function(circuit_state(delivery.breaker))
    # One consumer for every agency's topic and retry topic, each topic in a lane of its own: an agency that is slow
    # or down holds up only its own referrals (kit/lanes.py).
    by_topic = {topic: handler for delivery in deliveries for topic, handler in delivery.handlers().items()}

    async def deliver(event: Envelope) -> None:
        await by_topic[source_topic()](event)

    # It replaces the two consumer groups each agency had: it starts where they were, not from the beginning.
    replaces = {d.topic: consumer_name(d.agency) for d in deliveries}
    replaces |= {d.retry_topic: f"{consumer_name(d.agency)}.retry" for d in deliveries}
    runtime.consume_lanes(
        sorted(by_topic),
        DELIVERIES_CONSUMER,
        AGENCY_TOPIC_EVENTS,
        deliver,
        replaces=replaces,
        on_fetched=expected_disclosures(deliveries, disclosures),
    )
    runtime.produces(REFERRAL_EVENTS)

    async def handle_erasure(event: CaseErased) -> None:
        await on_case_erased(runtime.pool, event)

    runtime.consume(CASE_ERASED, ERASURE_CONSUMER, (CaseErased,), handle_erasure)

    def ends_a_referral(event: Envelope) -> bool:
        return isinstance(event, ENDING) or (
            isinstance(event, CaseRouted) and event.rerouted_from is not None and bool(event.referrals)
        )

    async def record_ending(conn: asyncpg.Connection, event: Envelope) -> None:
        # A referral whose needs went to another agency is never delivered again (a replay from the DLQ included);
        # one that has ended gives its agency no more personal items. Recording it twice changes nothing.
        if isinstance(event, CaseRouted) and event.rerouted_from is not None:
            await storage.record_ended(conn, event.rerouted_from, event.case_id, "replaced")
        elif isinstance(event, ENDING):
            await storage.record_ended(conn, event.referral_id, event.case_id, event.type.split(".")[1])

    # Most of referral.events is of no concern here (the gateway's own deliveries coming back): passed over in batches
    # without a transaction.
    runtime.consume_batch(REFERRAL_EVENTS, REROUTINGS_CONSUMER, EVENT_MODELS, record_ending, wants=ends_a_referral)

    queues = DeadLetterQueues(settings.kafka_bootstrap_servers, settings.kafka_client_config())
    provided = [Deliveries(deliveries, disclosures, time.time), queues]
    return service_app("Agency gateway", runtime, router, provides=provided)
