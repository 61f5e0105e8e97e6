"""A case's timeline as a readable flow, referrals' deadlines as countdowns, an agency's inbox in the order to
answer it. Pure: times in, words and numbers out."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

OPEN_STATES = frozenset({"requested", "delivered"})  # awaiting the agency's answer
ACTIVE_STATES = frozenset({"requested", "delivered", "accepted", "in_progress"})


def duration(ms: float | None) -> str:
    """A step's length as people read it: `850 ms`, `4.2 s`, `3 min`, `2 h 5 min`."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


@dataclass(frozen=True)
class Step:
    """One event of the case: what happened, to which agency, when, and how long after the step before."""

    event: str
    agency_id: str | None
    at: str
    took: str
    after: str | None
    trace_id: str | None


def steps(events: Iterable[Mapping[str, Any]]) -> list[Step]:
    """The timeline in order, without any event's detail (notes are free text; the flow needs none)."""
    return [
        Step(
            event=str(e["type"]),
            agency_id=e.get("agency_id"),
            at=str(e["occurred_at"]),
            took=duration(e.get("step_ms")),
            after=e.get("step_after"),
            trace_id=e.get("trace_id"),
        )
        for e in events
    ]


@dataclass(frozen=True)
class Countdown:
    """Time left to a deadline: `overdue` once it has passed."""

    seconds: float
    overdue: bool

    def words(self) -> str:
        left = abs(self.seconds)
        text = duration(left * 1000) if left >= 60 else f"{left:.0f} s"
        return text


def countdown(deadline: str | None, now: datetime) -> Countdown | None:
    if not deadline:
        return None
    left = (datetime.fromisoformat(deadline) - now).total_seconds()
    return Countdown(left, left < 0)


def inbox_order(referrals: Iterable[Mapping[str, Any]], now: datetime) -> list[Mapping[str, Any]]:
    """Referrals awaiting an answer, overdue first, then by the nearest deadline (none last)."""
    waiting = [r for r in referrals if r.get("state") in OPEN_STATES]

    def key(r: Mapping[str, Any]) -> tuple[int, float]:
        left = countdown(r.get("ack_deadline"), now)
        overdue = r.get("overdue_at") is not None or (left is not None and left.overdue)
        return (0 if overdue else 1, left.seconds if left is not None else float("inf"))

    return sorted(waiting, key=key)
