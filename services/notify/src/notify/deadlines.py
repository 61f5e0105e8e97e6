"""Acknowledgement deadlines, pure: from the case's urgency and the agency's SLA, when to remind and to escalate."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.vocab import DEFAULT_ACK_HOURS, Urgency


@dataclass(frozen=True)
class AckDeadline:
    remind_at: datetime  # the agency is reminded, if it has not answered yet
    due_at: datetime  # past it the referral is overdue: the caseworker is alerted and the needs re-routed


def ack_hours(urgency: Urgency, agency_hours: Mapping[Urgency, int]) -> int:
    """The agency's own SLA for this urgency if its catalogue entry sets one, else the centre's default."""
    return agency_hours.get(urgency, DEFAULT_ACK_HOURS[urgency])


def ack_deadline(
    requested_at: datetime,
    urgency: Urgency,
    agency_hours: Mapping[Urgency, int],
    *,
    hour_seconds: float = 3600.0,
    remind_at_fraction: float = 0.75,
) -> AckDeadline:
    """The clock starts when routing requested the referral. `hour_seconds` below 3600 shortens it (demos, tests)."""
    window = timedelta(seconds=ack_hours(urgency, agency_hours) * hour_seconds)
    return AckDeadline(remind_at=requested_at + window * remind_at_fraction, due_at=requested_at + window)


def reminder_still_useful(now: datetime, due_at: datetime) -> bool:
    """A reminder found due only after the deadline (notify was down) would arrive too late to help: skip it."""
    return now < due_at
