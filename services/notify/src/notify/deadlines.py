"""Acknowledgement deadlines, pure: from the case's urgency and the agency's SLA, when to remind and to escalate.

An agency's SLA is counted in its opening hours (public holidays excepted): a referral made on Saturday evening to
a weekday agency with a 2-hour SLA is due at 11:00 on Monday, not at 18:45 on Saturday. Around-the-clock agencies
count clock hours.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.calendar import NO_HOLIDAYS, Holidays, after_working_time
from schemas.catalogue import OpeningHours
from schemas.vocab import DEFAULT_ACK_HOURS, Urgency

REAL_HOUR = 3600.0


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
    opening: OpeningHours | None = None,
    holidays: Holidays = NO_HOLIDAYS,
    hour_seconds: float = REAL_HOUR,
    remind_at_fraction: float = 0.75,
) -> AckDeadline:
    """The clock starts when routing requested the referral and runs while the agency is open (`opening`; around the
    clock when not given). `hour_seconds` below 3600 shortens an hour for demos and tests; a shortened clock runs
    around the clock, so a demo's deadline does not wait for Monday."""
    window = timedelta(seconds=ack_hours(urgency, agency_hours) * hour_seconds)
    if opening is None or hour_seconds != REAL_HOUR:
        return AckDeadline(remind_at=requested_at + window * remind_at_fraction, due_at=requested_at + window)
    return AckDeadline(
        remind_at=after_working_time(opening, requested_at, window * remind_at_fraction, holidays),
        due_at=after_working_time(opening, requested_at, window, holidays),
    )


def reminder_still_useful(now: datetime, due_at: datetime) -> bool:
    """A reminder found due only after the deadline (notify was down) would arrive too late to help: skip it."""
    return now < due_at
