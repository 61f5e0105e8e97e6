"""Prometheus metrics every service exposes on /metrics: the plumbing's (outbox, consumers, DLQ, HTTP) and the
domain's, read off the events the service publishes and consumes through the kit.

Which event means what comes from the contracts in `schemas` (a `referral.<state>` event is a referral entering
that state, `referral.overdue` is a missed acknowledgement deadline); no rule is decided here.
Labels are ids and codes only (agency ids, event types, topics, reasons): never a case id, never personal data.
"""

import json
import time
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from schemas.events import Envelope, ReferralOverdue, ReferralRequested
from schemas.vocab import ReferralState

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

EVENTS_PUBLISHED = Counter(
    "onestop_events_published_total", "Events published to Kafka by this service's outbox relay", ["event_type"]
)
EVENTS_CONSUMED = Counter(
    "onestop_events_consumed_total",
    "Events handled by a consumer group: processed, dead_lettered, or retried after a failure",
    ["consumer", "event_type", "outcome"],
)
EVENT_AGE = Histogram(
    "onestop_event_age_seconds",
    "From an event's occurred_at to the end of its handling by a consumer group",
    ["consumer", "event_type"],
    buckets=_LATENCY_BUCKETS,
)
REFERRALS = Counter(
    "onestop_referrals_total",
    "Referrals entering a state (the referral.<state> events this service published), by agency",
    ["agency_id", "state"],
)
DELIVERIES = Counter(
    "onestop_deliveries_total",
    "Referral deliveries to agencies, by outcome (delivered or failed)",
    ["agency_id", "outcome"],
)
DELIVERY_SECONDS = Histogram(
    "onestop_delivery_seconds",
    "From routing's referral.requested to the end of its delivery to the agency (retries included)",
    ["agency_id"],
    buckets=_LATENCY_BUCKETS,
)
SLA_BREACHES = Counter(
    "onestop_sla_breaches_total", "Referrals not acknowledged by their deadline (referral.overdue)", ["agency_id"]
)
CIRCUIT_OPEN = Gauge(
    "onestop_circuit_open",
    "1 while the gateway's circuit breaker for an agency is not closed (calls paused, or a probe awaited), else 0",
    ["agency_id"],
)
DLQ_RECORDS = Counter(
    "onestop_dlq_records_total", "Records sent to a dead-letter topic, by source topic and reason", ["topic", "reason"]
)
DEPENDENCY_OUTAGES = Counter(
    "onestop_dependency_outages_total",
    "Records held back because a dependency of the system's own could not serve them (alert on refused: a "
    "credential or clock problem between services)",
    ["dependency", "cause"],
)
OUTBOX_BACKLOG = Gauge("onestop_outbox_backlog", "Outbox rows committed but not yet published")
OUTBOX_OLDEST_SECONDS = Gauge(
    "onestop_outbox_oldest_unsent_seconds", "Age of the oldest outbox row not yet published (0 when none)"
)
OUTBOX_DELAY = Histogram(
    "onestop_outbox_publish_delay_seconds",
    "From an outbox row's insert to its publication to Kafka (the relay's lag)",
    buckets=_LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "onestop_consumer_lag",
    "Records on the topic's assigned partitions not yet consumed by the group",
    ["group", "topic"],
)
DEPENDENCY_UP = Gauge(
    "onestop_dependency_up",
    "Whether each dependency of the health report answered at the last sample (1) or not (0); a required one down "
    "is the service degraded (503 on /health), an optional one down is it impaired",
    ["dependency", "kind", "required"],
)
ACCESS_LOG_CHAIN_BROKEN = Gauge(
    "onestop_access_log_chain_broken",
    "1 once the access log's periodic checkpoint or a verify found its hash chain broken or its checkpoint invalid; "
    "back to 0 only when a verify (the whole chain) finds it intact",
)
HTTP_SECONDS = Histogram(
    "onestop_http_request_seconds",
    "HTTP requests served, by route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_STATES = {f"referral.{state.value}": state.value for state in ReferralState}
_DELIVERY_OUTCOMES = {"referral.delivered": "delivered", "referral.failed": "failed"}

__all__ = [
    "REGISTRY",
    "dead_lettered",
    "event_handled",
    "event_published",
]


def event_published(event_type: str, payload: bytes | dict[str, Any], delay_seconds: float | None = None) -> None:
    """An outbox row reached Kafka: count it, and the domain metrics its type stands for."""
    EVENTS_PUBLISHED.labels(event_type).inc()
    if delay_seconds is not None:
        OUTBOX_DELAY.observe(max(delay_seconds, 0.0))
    if not event_type.startswith("referral."):
        return
    body = json.loads(payload) if isinstance(payload, bytes | bytearray) else payload
    agency = str(body.get("agency_id") or "unknown")
    if event_type in _STATES:
        REFERRALS.labels(agency, _STATES[event_type]).inc()
    if event_type in _DELIVERY_OUTCOMES:
        DELIVERIES.labels(agency, _DELIVERY_OUTCOMES[event_type]).inc()
    if event_type == ReferralOverdue.type:
        SLA_BREACHES.labels(agency).inc()


def event_handled(consumer: str, event: Envelope, outcome: str) -> None:
    """A consumer finished with an event (outcome: processed, dead_lettered or retried)."""
    EVENTS_CONSUMED.labels(consumer, event.type, outcome).inc()
    if outcome != "processed":
        return
    age = max(time.time() - event.occurred_at.timestamp(), 0.0)
    EVENT_AGE.labels(consumer, event.type).observe(age)
    if isinstance(event, ReferralRequested):
        DELIVERY_SECONDS.labels(event.agency_id).observe(age)


def dead_lettered(topic: str, reason: str) -> None:
    DLQ_RECORDS.labels(topic, reason).inc()
