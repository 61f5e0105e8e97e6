"""What notify's handlers share: its consumers' names, its `Context` (the catalogue's agencies and the deadline
settings) and the referral events it applies, grouped by what they do to a referral."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from schemas.catalogue import Agency, OpeningHours
from schemas.events import (
    REFERRAL_STATE_OF,
    CasePlanned,
    CaseRouted,
    Envelope,
    FollowUpClosed,
    FollowUpOpened,
    NeedClosed,
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralDeclined,
    ReferralOverdue,
    ReferralReminded,
    ReferralStarted,
    ReferralStateEvent,
)
from schemas.vocab import Urgency

from .domain import Fact

EVENTS_CONSUMER = "notify.referral-events"
CASES_CONSUMER = "notify.case-submitted"
ACKS_CONSUMER = "notify.acks"
CONSENTS_CONSUMER = "notify.consent-withdrawn"
CLOSED_CONSUMER = "notify.case-closed"

StateEvent = ReferralStateEvent
AgencyAnswer = ReferralAccepted | ReferralDeclined | ReferralStarted | ReferralCompleted
Command = AgencyAnswer | ReferralCancelled
TARGET_STATE = REFERRAL_STATE_OF
STATE_EVENTS: tuple[type[Envelope], ...] = tuple(TARGET_STATE)
AGENCY_ANSWERS: tuple[type[Envelope], ...] = (ReferralAccepted, ReferralDeclined, ReferralStarted, ReferralCompleted)
# What notify reads on referral.events: routing's decisions, the gateway's deliveries, every state change.
REFERRAL_EVENT_TYPES: tuple[type[Envelope], ...] = (
    CaseRouted,
    *STATE_EVENTS,
    ReferralReminded,
    ReferralOverdue,
    NeedClosed,
    CasePlanned,
    FollowUpOpened,  # notify's own: already applied when they come back
    FollowUpClosed,
)


@dataclass(frozen=True)
class Context:
    """What applying events needs beyond the database: the catalogue's agencies and the deadline settings."""

    agencies: Mapping[str, Agency] = field(default_factory=dict)
    public_holidays: frozenset[date] = frozenset()  # agencies' deadlines do not count them (catalogue/holidays.toml)
    hour_seconds: float = 3600.0
    remind_at_fraction: float = 0.75
    staff_link_base: str = "http://127.0.0.1:8004"
    follow_up_after: timedelta = timedelta(days=2)  # a completed referral's follow-up is due this long after

    def agency_name(self, agency_id: str) -> str:
        agency = self.agencies.get(agency_id)
        return agency_id if agency is None else f"{agency.name_en} ({agency.name_ko})"

    def agency_hours(self, agency_id: str) -> Mapping[Urgency, int]:
        agency = self.agencies.get(agency_id)
        return {} if agency is None else agency.ack_hours

    def opening_hours(self, agency_id: str) -> OpeningHours | None:
        agency = self.agencies.get(agency_id)
        return None if agency is None else agency.hours

    def status_url(self, case_id: UUID) -> str:
        return f"{self.staff_link_base.rstrip('/')}/cases/{case_id}/status"


def fact_of(event: StateEvent) -> Fact:
    reason = getattr(event, "reason", None)
    outcome = event.outcome if isinstance(event, ReferralCompleted) else None
    return Fact(
        state=TARGET_STATE[type(event)],
        occurred_at=event.occurred_at,
        event_id=event.event_id,
        reason=None if reason is None else str(reason),
        outcome=None if outcome is None else str(outcome),
    )


def event_detail(event: Envelope) -> dict[str, Any]:
    return event.model_dump(
        mode="json", exclude={"event_id", "occurred_at", "case_id", "producer", "referral_id", "agency_id"}
    )
