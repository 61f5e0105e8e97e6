"""Delivery times read from referral.events: from the routing decision naming a referral (`case.routed`) to the
gateway's `referral.delivered`, by the events' own `occurred_at` (every service runs on this machine's clock)."""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Window = Literal["before", "during", "after"]


@dataclass
class Referral:
    referral_id: str
    case_id: str
    agency_id: str
    routed_at: float  # Unix seconds
    delivered_at: float | None = None
    failed: list[dict[str, Any]] | None = None  # the referral.failed events: attempts, reason

    @property
    def latency(self) -> float | None:
        return None if self.delivered_at is None else self.delivered_at - self.routed_at


def _seconds(value: Any) -> float:
    return datetime.fromisoformat(str(value)).timestamp()


def referrals(events: Iterable[dict[str, Any]], case_ids: set[str]) -> dict[str, Referral]:
    """Every referral of these cases that a routing decision named, with its first delivery and any failures."""
    found: dict[str, Referral] = {}
    delivered: dict[str, float] = {}
    failed: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if str(event.get("case_id")) not in case_ids:
            continue
        kind = event.get("type")
        if kind == "case.routed":
            for routed in event.get("referrals", []):
                found.setdefault(
                    str(routed["referral_id"]),
                    Referral(
                        str(routed["referral_id"]),
                        str(event["case_id"]),
                        str(routed["agency_id"]),
                        _seconds(event["occurred_at"]),
                    ),
                )
        elif kind == "referral.delivered":
            at = _seconds(event["occurred_at"])
            referral = str(event["referral_id"])
            delivered[referral] = min(at, delivered.get(referral, at))
        elif kind == "referral.failed":
            failed.setdefault(str(event["referral_id"]), []).append(
                {
                    "agency_id": event.get("agency_id"),
                    "attempts": event.get("attempts"),
                    "reason": event.get("reason"),
                    "event_id": event.get("event_id"),
                }
            )
    for referral_id, one in found.items():
        one.delivered_at = delivered.get(referral_id)
        one.failed = failed.get(referral_id)
    return found


def window(at: float, start: float, end: float) -> Window:
    return "before" if at < start else "during" if at <= end else "after"


def summary(values: list[float]) -> dict[str, float | int | None]:
    """n, median, 95th percentile (nearest rank) and max, in seconds."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 3)

    return {"n": len(ordered), "p50": rank(0.5), "p95": rank(0.95), "max": round(ordered[-1], 3)}


def latency_by_window(
    found: Iterable[Referral],
    start: float,
    end: float,
    agencies: set[str] | None = None,
    exclude: frozenset[str] | set[str] = frozenset(),
) -> dict[Window, dict[str, float | int | None]]:
    """Delivery latency of the referrals routed before, during and after [start, end] (Unix seconds), for the
    agencies named (all when None) except those excluded; referrals never delivered are left out."""
    values: dict[Window, list[float]] = {"before": [], "during": [], "after": []}
    for referral in found:
        if referral.agency_id in exclude or (agencies is not None and referral.agency_id not in agencies):
            continue
        if referral.latency is not None:
            values[window(referral.routed_at, start, end)].append(referral.latency)
    return {name: summary(v) for name, v in values.items()}


# "Comparable": the median within twice the one before plus half a second, the 95th percentile within three times
# plus a second. Loose enough for a 2-core machine's noise, tight enough to see an agency's outage hold the others up
# (its retries wait tens of seconds).
MIN_SAMPLES = 5


def comparable(before: dict[str, float | int | None], during: dict[str, float | int | None]) -> bool | None:
    """Whether latency during the outage is comparable to before; None when either has too few referrals to say."""
    if int(before["n"] or 0) < MIN_SAMPLES or int(during["n"] or 0) < MIN_SAMPLES:
        return None
    b50, b95, d50, d95 = (float(x or 0.0) for x in (before["p50"], before["p95"], during["p50"], during["p95"]))
    return d50 <= 2 * b50 + 0.5 and d95 <= 3 * b95 + 1.0
