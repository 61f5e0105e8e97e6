"""Monitoring the centre can act on, pure: from the events notify keeps in its timeline (ids, codes and times —
never personal data), the figures of a period, per agency, per crime type and per unmet need.

A figure counts what happened in the period `[start, end)`: a referral is *received* by its agency when routing
made it (`case.routed`), *accepted* when the agency's acceptance was applied, and so on; time to acknowledge runs
from the routing to the agency's first answer (accepted or declined), for the referrals received in the period.
Only state changes notify applied count: a duplicate or refused answer is in the timeline but changes nothing.
A staged case's stage is *entered* when it started in the period and *completed* when it ended in it; the time
through a stage is timed for the stages completed in the period, from each case's latest plan (`case.plan`).
"""

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

UNKNOWN = "unknown"  # a case submitted before notify kept its region and language


@dataclass(frozen=True)
class Event:
    """One row of the timeline, as the report reads it."""

    type: str
    occurred_at: datetime
    case_id: str
    referral_id: str | None
    agency_id: str | None
    detail: dict[str, Any]


def _applied(event: Event) -> bool:
    return bool(event.detail.get("state_change", "applied") == "applied")


def _seconds(values: list[float]) -> dict[str, float | None]:
    """Median and 90th percentile, in seconds (None without values)."""
    if not values:
        return {"median": None, "p90": None}
    ordered = sorted(values)
    p90 = ordered[0] if len(ordered) == 1 else statistics.quantiles(ordered, n=10, method="inclusive")[-1]
    return {"median": round(statistics.median(ordered), 3), "p90": round(p90, 3)}


@dataclass
class _Agency:
    received: int = 0
    accepted: int = 0
    declined: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    overdue: int = 0
    cancelled: int = 0
    successful: int = 0
    not_successful: Counter[str] = field(default_factory=Counter)
    rerouted: Counter[str] = field(default_factory=Counter)


def build_report(
    events: list[Event], start: datetime, end: datetime, *, pending: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The period's report. `events`: every timeline event of the cases concerned (events before the period are
    needed too: a referral answered in the period may have been routed before it). `pending`: the needs pending
    now, each with `need`, `region`, `language`."""
    cases: dict[str, dict[str, Any]] = {}  # case id → its case.submitted detail and time
    routed_at: dict[str, datetime] = {}  # referral id → when routing made it
    agency_of: dict[str, str] = {}
    first_answer: dict[str, datetime] = {}
    first_acceptance: dict[str, datetime] = {}  # case id → its first acceptance
    agencies: dict[str, _Agency] = defaultdict(_Agency)
    uncovered: Counter[tuple[str, str, str]] = Counter()
    closed: Counter[str] = Counter()
    plans: dict[str, list[dict[str, Any]]] = {}  # case id → its latest plan's stages

    def within(event: Event) -> bool:
        return start <= event.occurred_at < end

    for event in sorted(events, key=lambda e: e.occurred_at):
        if event.type == "case.submitted":
            cases[event.case_id] = {**event.detail, "submitted_at": event.occurred_at}
        elif event.type == "case.routed":
            for referral in event.detail.get("referrals", []):
                routed_at[referral["referral_id"]] = event.occurred_at
                agency_of[referral["referral_id"]] = referral["agency_id"]
                if within(event):
                    agencies[referral["agency_id"]].received += 1
            if within(event):
                facts = cases.get(event.case_id, {})
                for need in event.detail.get("uncovered_needs", []):
                    uncovered[(need, facts.get("region", UNKNOWN), facts.get("language", UNKNOWN))] += 1
        elif event.type in ("referral.accepted", "referral.declined") and _applied(event):
            if event.referral_id is not None:
                first_answer.setdefault(event.referral_id, event.occurred_at)
            if event.type == "referral.accepted":
                first_acceptance.setdefault(event.case_id, event.occurred_at)
        elif event.type == "case.plan":
            plans[event.case_id] = list(event.detail.get("stages", []))
        if event.type == "case.closed" and within(event):
            closed[str(event.detail.get("reason"))] += 1
        if not within(event) or event.agency_id is None:
            continue
        figures = agencies[event.agency_id]
        if event.type == "referral.accepted" and _applied(event):
            figures.accepted += 1
        elif event.type == "referral.declined" and _applied(event):
            figures.declined[str(event.detail.get("reason"))] += 1
        elif event.type == "referral.failed" and _applied(event):
            figures.failed += 1
        elif event.type == "referral.cancelled" and _applied(event):
            figures.cancelled += 1
        elif event.type == "referral.overdue":
            figures.overdue += 1
        elif event.type == "referral.completed" and _applied(event):
            if event.detail.get("outcome") == "successful":
                figures.successful += 1
            else:
                figures.not_successful[str(event.detail.get("reason"))] += 1
        elif event.type == "referral.rerouting":
            figures.rerouted[str(event.detail.get("cause"))] += 1

    ack_times: dict[str, list[float]] = defaultdict(list)
    for referral_id, answered in first_answer.items():
        made = routed_at.get(referral_id)
        if made is not None and start <= made < end:
            ack_times[agency_of[referral_id]].append((answered - made).total_seconds())

    by_crime: dict[str, dict[str, Any]] = {}
    to_acceptance: dict[str, list[float]] = defaultdict(list)
    for case_id, case in cases.items():
        if not start <= case["submitted_at"] < end:
            continue
        crime = str(case.get("crime_type", UNKNOWN))
        by_crime.setdefault(crime, {"cases": 0})
        by_crime[crime]["cases"] += 1
        if case_id in first_acceptance:
            to_acceptance[crime].append((first_acceptance[case_id] - case["submitted_at"]).total_seconds())
    for crime, counted in by_crime.items():
        counted["to_first_acceptance_seconds"] = _seconds(to_acceptance[crime])

    stages = _stage_figures(plans, cases, start, end)

    def agency_figures(agency_id: str, f: _Agency) -> dict[str, Any]:
        return {
            "agency_id": agency_id,
            "received": f.received,
            "accepted": f.accepted,
            "declined": sum(f.declined.values()),
            "declined_by_reason": dict(sorted(f.declined.items())),
            "failed": f.failed,
            "overdue": f.overdue,
            "cancelled": f.cancelled,
            "completed_successful": f.successful,
            "completed_not_successful": sum(f.not_successful.values()),
            "not_successful_by_reason": dict(sorted(f.not_successful.items())),
            "rerouted": sum(f.rerouted.values()),
            "rerouted_by_cause": dict(sorted(f.rerouted.items())),
            "ack_seconds": _seconds(ack_times[agency_id]),
        }

    pending_now = Counter((p["need"], p.get("region") or UNKNOWN, p.get("language") or UNKNOWN) for p in pending or [])
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "agencies": [agency_figures(a, f) for a, f in sorted(agencies.items())],
        "crime_types": [{"crime_type": c, **f} for c, f in sorted(by_crime.items())],
        "stages": stages,
        "uncovered_needs": [
            {"need": n, "region": r, "language": lang, "times": count}
            for (n, r, lang), count in sorted(uncovered.items())
        ],
        "pending_needs_now": [
            {"need": n, "region": r, "language": lang, "cases": count}
            for (n, r, lang), count in sorted(pending_now.items())
        ],
        "cases_closed": dict(sorted(closed.items())),
    }


def _stage_figures(
    plans: dict[str, list[dict[str, Any]]], cases: dict[str, dict[str, Any]], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Per crime type and stage (in the plan's order): stages entered and completed in the period, and the time
    through the completed ones."""
    entered: Counter[tuple[str, str]] = Counter()
    completed: Counter[tuple[str, str]] = Counter()
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    order: dict[str, int] = {}
    for case_id, stages in plans.items():
        crime = str(cases.get(case_id, {}).get("crime_type", UNKNOWN))
        for index, stage in enumerate(stages):
            order.setdefault(stage["stage"], index)
            began, ended = _instant(stage.get("started_at")), _instant(stage.get("ended_at"))
            if began is None:
                continue  # passed over: no needs in it
            key = (crime, stage["stage"])
            if start <= began < end:
                entered[key] += 1
            if ended is not None and start <= ended < end:
                completed[key] += 1
                durations[key].append((ended - began).total_seconds())
    return [
        {
            "crime_type": crime,
            "stage": stage,
            "entered": entered[(crime, stage)],
            "completed": completed[(crime, stage)],
            "seconds": _seconds(durations[(crime, stage)]),
        }
        for crime, stage in sorted(set(entered) | set(completed), key=lambda k: (k[0], order[k[1]]))
    ]


def _instant(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def as_csv_rows(report: dict[str, Any]) -> list[list[str]]:
    """The report flattened to rows of `section, key, figure, value`, for a spreadsheet."""
    rows = [["section", "key", "figure", "value"]]
    for agency in report["agencies"]:
        for figure, value in agency.items():
            if figure == "agency_id":
                continue
            for name, number in _flat(figure, value):
                rows.append(["agency", agency["agency_id"], name, number])
    for crime in report["crime_types"]:
        for figure, value in crime.items():
            if figure != "crime_type":
                rows += [["crime_type", crime["crime_type"], name, number] for name, number in _flat(figure, value)]
    for row in report["stages"]:
        key = f"{row['crime_type']}/{row['stage']}"
        rows += [["stage", key, name, number] for figure in ("entered", "completed", "seconds")
                 for name, number in _flat(figure, row[figure])]  # fmt: skip
    for row in report["uncovered_needs"]:
        rows.append(["uncovered_need", f"{row['need']}/{row['region']}/{row['language']}", "times", str(row["times"])])
    for row in report["pending_needs_now"]:
        rows.append(["pending_need", f"{row['need']}/{row['region']}/{row['language']}", "cases", str(row["cases"])])
    rows += [["cases_closed", reason, "cases", str(count)] for reason, count in report["cases_closed"].items()]
    return rows


def _flat(name: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [(f"{name}.{key}", "" if v is None else str(v)) for key, v in value.items()]
    return [(name, str(value))]
