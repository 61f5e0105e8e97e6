"""What a scenario did to the cases, counted from the outside: intake's answers, the topics, the agencies' record."""

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from faults.load import SUMMARY_PREFIX, Load
from faults.observe import GroupLag, Record, TopicTail
from faults.scenarios import Context

CASE_SUBMITTED = "case.submitted"
REFERRAL_EVENTS = "referral.events"
SAMPLE = 10  # ids listed per problem in the JSON


@dataclass
class Outcome:
    scenario: str
    title: str
    faults: int = 0
    submitted: int = 0
    acknowledged: int = 0
    not_acknowledged: int = 0  # intake never said yes before the suite gave up: not a loss, nobody was told "stored"
    intake_answers: dict[str, int] = field(default_factory=dict)
    acknowledged_while_postgres_down: int = 0  # 2xx for a request made and answered while PostgreSQL was down
    second_case_for_one_key: int = 0  # intake stored or answered two cases for one Idempotency-Key
    cases_not_routed: int = 0  # acknowledged, yet no case.routed on referral.events: a lost case
    cases_routed_twice: int = 0  # two different routing decisions for one case (re-routing aside)
    referrals_expected: int = 0  # (case, agency) pairs in the routing decisions of acknowledged cases
    delivered_exactly_once: int = 0  # the agency took it once, under one referral id
    lost: int = 0  # expected, never taken by its agency
    duplicated_side_effects: int = 0  # an agency took one case's referral more than once (under other ids)
    unexpected_at_agencies: int = 0  # an agency got a referral no routing decision named
    redeliveries_absorbed: int = 0  # same Idempotency-Key delivered again, answered, not acted on: harmless
    accepted_at_notify: int = 0  # referrals whose acceptance notify published
    acceptances_duplicated: int = 0  # more than one referral.accepted event for one referral
    acks_refused_by_notify: int = 0  # the agency's acknowledgement was refused (404: notify did not know it yet)
    timelines_checked: int = 0
    timelines_incomplete: int = 0  # notify's timeline lacks the case, its routing or a delivery
    dead_lettered_events: int = 0  # real events (not our poison) that went to a DLQ: each one is a lost event
    poison_sent: int = 0
    poison_expected_in_dlq: int = 0  # one copy per consumer group reading the poisoned topic
    poison_in_dlq: int = 0
    poison_missing: list[str] = field(default_factory=list)
    poison_wrong_reason: list[str] = field(default_factory=list)  # in the DLQ, with another dlq.reason than expected
    failures_allowed: int = 0  # referrals the scenario lets fail (an agency down until its attempts ran out)
    checks: dict[str, int] = field(default_factory=dict)  # the scenario's own: each must be 0
    stalled_partitions: list[str] = field(default_factory=list)  # group@topic/partition with lag at the end
    outbox_backlog: dict[str, int | None] = field(default_factory=dict)
    drained: bool = False
    drain_seconds: float | None = None  # from the end of the last fault until everything was delivered
    load_seconds: float | None = None
    fault_log: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # what the scenario saw of the system (replication, ...)
    samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def dlq_shown(self) -> str:
        if self.poison_sent:
            return f"{self.poison_in_dlq}/{self.poison_expected_in_dlq}"
        return str(self.dead_lettered_events)

    @property
    def problems(self) -> list[str]:
        checks = {
            "lost referrals" if self.drained else "referrals not delivered by the drain deadline": self.lost,
            "duplicated side effects": self.duplicated_side_effects,
            "acknowledged cases never routed": self.cases_not_routed,
            "cases routed twice": self.cases_routed_twice,
            "two cases for one Idempotency-Key": self.second_case_for_one_key,
            "2xx from intake while PostgreSQL was down": self.acknowledged_while_postgres_down,
            "unexpected referrals at agencies": self.unexpected_at_agencies,
            "duplicated acceptances at notify": self.acceptances_duplicated,
            "real events dead-lettered": self.dead_lettered_events,
            "poison records missing from the DLQ": self.poison_expected_in_dlq - self.poison_in_dlq,
            "poison records dead-lettered with another reason": len(self.poison_wrong_reason),
            "stalled partitions": len(self.stalled_partitions),
            **self.checks,
        }
        found = [f"{what}: {count}" for what, count in checks.items() if count]
        if not self.drained:
            found.append("did not drain in time")
        return found

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "problems": self.problems}


def case_key(record: Record) -> str | None:
    """The submission key a case.submitted event carries in its (synthetic) summary."""
    summary = ((record.event or {}).get("case") or {}).get("summary") or ""
    return summary.removeprefix(SUMMARY_PREFIX) if summary.startswith(SUMMARY_PREFIX) else None


def count(
    ctx: Context,
    outcome: Outcome,
    tail: TopicTail,
    agencies_record: list[dict[str, Any]],
    lags: list[GroupLag],
    earlier_dlq: set[tuple[str, int, int]],
) -> None:
    """Fill `outcome` from what the load got from intake, the topics and the agencies' record."""
    load: Load = ctx.load
    outcome.faults = len(ctx.faults)
    outcome.fault_log = [
        {
            "kind": f.kind,
            "target": f.target,
            "at_s": round(f.started - (load.started_at or f.started), 1),
            "took_s": round(f.ended - f.started, 1),
            **f.detail,
        }
        for f in ctx.faults
    ]
    outcome.notes = dict(ctx.notes)
    outcome.checks = dict(ctx.checks)
    outcome.submitted = len(load.submissions)
    acknowledged = load.acknowledged
    outcome.acknowledged = len(acknowledged)
    outcome.not_acknowledged = outcome.submitted - outcome.acknowledged
    outcome.intake_answers = load.answer_counts()
    outcome.acknowledged_while_postgres_down = sum(
        1
        for s in load.submissions
        for a in s.answers
        if a.status in (200, 201) and any(start <= a.started and a.ended <= end for start, end in ctx.down_windows)
    )

    # Intake: one case per key, in its answers and on the case.submitted topic.
    keys = {s.key for s in load.submissions}
    stored: dict[str, set[str]] = defaultdict(set)
    for record in tail.events(CASE_SUBMITTED):
        key = case_key(record)
        if key in keys:
            stored[key].add(str(record.event["case_id"]))  # type: ignore[index]
    doubled = [s.key for s in load.submissions if len(set(s.case_ids) | stored.get(s.key, set())) > 1]
    outcome.second_case_for_one_key = len(doubled)
    outcome.samples["second_case_for_one_key"] = doubled[:SAMPLE]

    # Routing: every acknowledged case decided once; its decisions name the referrals expected.
    case_ids = {str(s.case_id) for s in acknowledged}
    decisions: dict[str, set[str]] = defaultdict(set)
    expected: set[tuple[str, str]] = set()
    # The topic may hold one event twice (a relay retry): two acceptances means two event ids for one referral.
    accepted: dict[str, set[str]] = defaultdict(set)
    for record in tail.events(REFERRAL_EVENTS):
        event = record.event or {}
        case_id = str(event.get("case_id"))
        if case_id not in case_ids:
            continue
        if event.get("type") == "case.routed":
            if not event.get("rerouted_from"):
                decisions[case_id].add(str(event.get("event_id")))
            for referral in event.get("referrals", []):
                expected.add((case_id, str(referral["agency_id"])))
        elif event.get("type") == "referral.accepted":
            accepted[str(event.get("referral_id"))].add(str(event.get("event_id")))
    not_routed = sorted(case_ids - set(decisions))
    outcome.cases_not_routed = len(not_routed)
    outcome.samples["cases_not_routed"] = not_routed[:SAMPLE]
    outcome.cases_routed_twice = sum(1 for ids in decisions.values() if len(ids) > 1)
    outcome.referrals_expected = len(expected)
    outcome.accepted_at_notify = len(accepted)
    outcome.acceptances_duplicated = sum(1 for ids in accepted.values() if len(ids) > 1)

    # The agencies: what each took, and how many times.
    taken: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for entry in agencies_record:
        if str(entry["case_id"]) not in case_ids:
            continue
        outcome.redeliveries_absorbed += int(entry.get("duplicates", 0))
        if entry.get("decision") is not None:
            taken[(str(entry["case_id"]), str(entry["agency_id"]))].append(entry)
        if (entry.get("ack") or {}).get("status") == "rejected":
            outcome.acks_refused_by_notify += 1
    # A failure the scenario allows (its agency's attempts ran out) is not a loss; it is counted apart.
    outcome.failures_allowed = sum(1 for pair in expected if pair in ctx.excused and not taken.get(pair))
    lost = sorted(f"{c}/{a}" for c, a in expected if not taken.get((c, a)) and (c, a) not in ctx.excused)
    doubled_at_agency = sorted(f"{c}/{a}" for (c, a), entries in taken.items() if len(entries) > 1)
    unexpected = sorted(f"{c}/{a}" for c, a in taken if (c, a) not in expected)
    outcome.lost = len(lost)
    outcome.samples["lost"] = lost[:SAMPLE]
    outcome.duplicated_side_effects = sum(len(entries) - 1 for entries in taken.values())
    outcome.samples["duplicated_side_effects"] = doubled_at_agency[:SAMPLE]
    outcome.unexpected_at_agencies = len(unexpected)
    outcome.samples["unexpected_at_agencies"] = unexpected[:SAMPLE]
    outcome.delivered_exactly_once = sum(1 for pair in expected if len(taken.get(pair, ())) == 1)

    # Dead letters: our poison, each once per group reading its topic (found by its key, or by where it was written
    # when the scenario wrote it under a real key); records the scenario wrote itself are judged by it; anything
    # else is a real event lost.
    by_key = {p.key: p for p in ctx.poison if p.offset is None}
    by_position = {(p.topic, p.partition, p.offset): p for p in ctx.poison if p.offset is not None}
    found: dict[str, set[str]] = defaultdict(set)
    reasons: dict[str, set[str]] = defaultdict(set)
    real = []
    for record in tail.dead_letters():
        if (record.topic, record.partition, record.offset) in earlier_dlq:
            continue
        key = (record.key or b"").decode(errors="replace")
        source = record.dlq_source
        poison = by_key.get(key) or (by_position.get(source) if source is not None else None)
        if poison is not None:
            found[poison.key].add(record.header("dlq.consumer.group") or "?")
            reasons[poison.key].add(record.header("dlq.reason") or "?")
        elif not key.startswith("faults-poison:") and source not in ctx.own_records:
            real.append(f"{record.topic}@{record.partition}/{record.offset}: {record.header('dlq.reason')}")
    outcome.dead_lettered_events = len(real)
    outcome.samples["dead_lettered_events"] = real[:SAMPLE]
    outcome.poison_sent = len(ctx.poison)
    outcome.poison_expected_in_dlq = sum(len(p.groups) for p in ctx.poison)
    outcome.poison_in_dlq = sum(len(found.get(p.key, set()) & set(p.groups)) for p in ctx.poison)
    outcome.poison_missing = [
        f"{p.topic}/{p.partition} {p.kind} by {group}"
        for p in ctx.poison
        for group in p.groups
        if group not in found.get(p.key, set())
    ][:50]
    outcome.poison_wrong_reason = [
        f"{p.topic}/{p.partition}@{p.offset} {p.kind}: {', '.join(sorted(reasons[p.key]))} (not {'/'.join(p.reasons)})"
        for p in ctx.poison
        if p.reasons and p.key in reasons and not reasons[p.key] & set(p.reasons)
    ]

    outcome.stalled_partitions = sorted(f"{g.group_id}@{tp} lag {n}" for g in lags for tp, n in g.lag.items())
    outcome.samples["stalled_partitions"] = outcome.stalled_partitions[:SAMPLE]


def dead_letter_positions(tail: TopicTail) -> set[tuple[str, int, int]]:
    """Where the DLQ records read so far are: a later scenario counts only its own."""
    return {(r.topic, r.partition, r.offset) for r in tail.dead_letters()}


COLUMNS = (
    ("scenario", lambda o: o.scenario),
    ("faults", lambda o: o.faults),
    ("submitted", lambda o: o.submitted),
    ("acked", lambda o: o.acknowledged),
    ("referrals expected", lambda o: o.referrals_expected),
    ("exactly once", lambda o: o.delivered_exactly_once),
    ("lost", lambda o: o.lost + o.cases_not_routed),
    ("duplicated", lambda o: o.duplicated_side_effects),
    ("in DLQ", lambda o: o.dlq_shown),
    ("drain s", lambda o: "-" if o.drain_seconds is None else f"{o.drain_seconds:.1f}"),
    ("result", lambda o: "pass" if o.passed else "FAIL"),
)


def table(outcomes: list[Outcome]) -> str:
    """The figures as a plain-text table, one row per scenario, then what went wrong and what else was seen."""
    rows = [[str(get(o)) for _, get in COLUMNS] for o in outcomes]
    header = [name for name, _ in COLUMNS]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    for o in outcomes:
        seen = (
            f"intake answers {o.intake_answers}; redeliveries absorbed by idempotency keys {o.redeliveries_absorbed}; "
            f"accepted at notify {o.accepted_at_notify}; acknowledgements refused by notify {o.acks_refused_by_notify}"
            f"; timelines checked {o.timelines_checked} (incomplete {o.timelines_incomplete})"
        )
        out.append(f"{o.scenario}: {seen}")
        if o.failures_allowed:
            out.append(f"{o.scenario}: failures allowed (the agency's attempts ran out) {o.failures_allowed}")
        for name, value in o.notes.items():
            shown = json.dumps(value, default=str, ensure_ascii=False)
            out.append(f"{o.scenario}: {name} {shown if len(shown) <= 400 else '(long: see the JSON)'}")
        for problem in o.problems:
            out.append(f"{o.scenario}: PROBLEM {problem}")
    return "\n".join(out)
