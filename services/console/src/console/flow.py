"""A case's timeline as a readable flow, a staged case's plan stage by stage, referrals' deadlines as countdowns, an
agency's inbox in the order to answer it. Pure: times in, words and numbers out."""

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


@dataclass(frozen=True)
class Stage:
    """One stage of a staged case's plan as the case page shows it: its names (`name_ko`, `name_en`), state, needs,
    the referrals made for its needs, and how long it has taken (under way: so far; waiting: '')."""

    stage: str
    names: Mapping[str, str]
    state: str
    needs: list[str]
    referrals: list[Mapping[str, Any]]
    spent: str


def plan_stages(
    plan: Mapping[str, Any] | None, shown: Iterable[Mapping[str, Any]] | None, now: datetime
) -> list[Stage]:
    """Routing's plan (`plan`: the stages in order, their names and states as of now) with each stage's referrals
    from notify's (`shown`, the status's `plan`, which follows routing's a moment later); notify's alone when routing's
    could not be read. None of either: not a staged case."""
    referrals = {str(s["stage"]): list(s.get("referrals") or []) for s in shown or ()}
    stages = list(plan["stages"]) if plan else list(shown or ())

    def spent(stage: Mapping[str, Any]) -> str:
        if not stage.get("started_at"):
            return ""
        ended = datetime.fromisoformat(stage["ended_at"]) if stage.get("ended_at") else now
        return duration((ended - datetime.fromisoformat(stage["started_at"])).total_seconds() * 1000)

    return [
        Stage(
            stage=str(s["stage"]),
            names={k: s[k] for k in ("name_ko", "name_en") if s.get(k)},
            state=str(s["state"]),
            needs=list(s["needs"]),
            referrals=referrals.get(str(s["stage"]), []),
            spent=spent(s),
        )
        for s in stages
    ]


def can_advance(stages: Iterable[Stage]) -> bool:
    """Whether a stage is left to start: a waiting one with needs (routing refuses the advance otherwise)."""
    return any(s.state == "waiting" and s.needs for s in stages)
