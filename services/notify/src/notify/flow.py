"""A case's flow, pure: how long each step of the timeline took, measured from the step it followed."""

from datetime import datetime, timedelta
from typing import Any


def with_durations(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `since_start_ms`, `step_ms` and `step_after` to timeline entries in order of `occurred_at`.

    A referral's step follows that referral's previous event, or the case-level event before it (the
    routing that created it); a case-level step follows the previous case-level one, or, for a re-routing,
    the last event of the referral it replaces. `lag_ms` is how long after the fact notify recorded it.
    """
    start: datetime | None = None
    last_of_case: dict[str, Any] | None = None
    last_of_referral: dict[str, dict[str, Any]] = {}
    result = []
    for event in events:
        at = _time(event["occurred_at"])
        start = start or at
        referral = event.get("referral_id")
        rerouted_from = (event.get("detail") or {}).get("rerouted_from")
        if referral is not None:
            previous = last_of_referral.get(referral, last_of_case)
        else:
            previous = last_of_referral.get(rerouted_from, last_of_case) if rerouted_from else last_of_case
        entry = {
            **event,
            "since_start_ms": _ms(at - start),
            "step_ms": None if previous is None else _ms(at - _time(previous["occurred_at"])),
            "step_after": None if previous is None else previous["type"],
            "lag_ms": _ms(_time(event["recorded_at"]) - at) if event.get("recorded_at") else None,
        }
        if referral is not None:
            last_of_referral[referral] = entry
        else:
            last_of_case = entry
        result.append(entry)
    return result


def _time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _ms(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)
