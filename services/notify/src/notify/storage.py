"""SQL for referral states, the case timeline, cases' contact rules, deadline timers, notifications and erasure."""

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from kit.telemetry import current_trace_ids, sampled_flag
from schemas.events import Caseworker, Envelope, SafeHours, encode_event
from schemas.vocab import ReferralState, Urgency

from .deadlines import AckDeadline
from .domain import ReferralSummary, Standing, attention
from .flow import with_durations
from .notices import ERASED, Notice, ReferralNews, VictimReach


async def add_to_timeline(
    conn: asyncpg.Connection,
    event: Envelope,
    detail: dict[str, Any],
    referral_id: UUID | None = None,
    agency_id: str | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO timeline (case_id, event_id, event_type, occurred_at, producer, referral_id, agency_id, detail,"
        " trace_id, span_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (event_id) DO NOTHING",
        event.case_id,
        event.event_id,
        event.type,
        event.occurred_at,
        event.producer,
        referral_id,
        agency_id,
        detail,
        *current_trace_ids(),
    )


async def insert_referral(
    conn: asyncpg.Connection,
    referral_id: UUID,
    case_id: UUID,
    agency_id: str,
    needs: list[str],
    standing: Standing,
    requested_at: datetime | None,
) -> None:
    await conn.execute(
        "INSERT INTO referrals (referral_id, case_id, agency_id, needs, state, reason, outcome, state_changed_at,"
        " state_event_id, requested_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        referral_id,
        case_id,
        agency_id,
        needs,
        standing.state,
        standing.reason,
        standing.outcome,
        standing.changed_at,
        standing.event_id,
        requested_at,
    )


async def note_routing(conn: asyncpg.Connection, referral_id: UUID, needs: list[str], requested_at: datetime) -> None:
    """What only case.routed says about a referral that an earlier-arriving event made known: needs and start."""
    await conn.execute(
        "UPDATE referrals SET needs = CASE WHEN cardinality(needs) = 0 THEN $2 ELSE needs END,"
        " requested_at = COALESCE(requested_at, $3) WHERE referral_id = $1",
        referral_id,
        needs,
        requested_at,
    )


async def lock_referral(conn: asyncpg.Connection, referral_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM referrals WHERE referral_id = $1 FOR UPDATE", referral_id)


def standing_of(row: asyncpg.Record) -> Standing:
    return Standing(
        state=ReferralState(row["state"]),
        changed_at=row["state_changed_at"],
        event_id=row["state_event_id"],
        reason=row["reason"],
        outcome=row["outcome"],
    )


async def save_standing(conn: asyncpg.Connection, referral_id: UUID, standing: Standing) -> None:
    await conn.execute(
        "UPDATE referrals SET state = $2, reason = $3, outcome = $4, state_changed_at = $5, state_event_id = $6"
        " WHERE referral_id = $1",
        referral_id,
        standing.state,
        standing.reason,
        standing.outcome,
        standing.changed_at,
        standing.event_id,
    )


async def set_replaced_by(conn: asyncpg.Connection, referral_id: UUID, replacements: list[UUID]) -> None:
    await conn.execute(
        "UPDATE referrals SET replaced_by = ARRAY(SELECT DISTINCT unnest(replaced_by || $2::uuid[]))"
        " WHERE referral_id = $1",
        referral_id,
        replacements,
    )


async def unreplaced_of_case(conn: asyncpg.Connection, case_id: UUID, needs: list[str]) -> list[asyncpg.Record]:
    """The case's referrals for any of these needs that no later routing has replaced, locked."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM referrals WHERE case_id = $1 AND needs && $2::text[] AND cardinality(replaced_by) = 0"
        " ORDER BY referral_id FOR UPDATE",
        case_id,
        needs,
    )
    return rows


async def mark_reminded(conn: asyncpg.Connection, referral_id: UUID, at: datetime) -> None:
    await conn.execute(
        "UPDATE referrals SET reminded_at = COALESCE(reminded_at, $2) WHERE referral_id = $1", referral_id, at
    )


async def mark_overdue(conn: asyncpg.Connection, referral_id: UUID, at: datetime) -> None:
    await conn.execute(
        "UPDATE referrals SET overdue_at = COALESCE(overdue_at, $2) WHERE referral_id = $1", referral_id, at
    )


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _referral(row: asyncpg.Record) -> dict[str, Any]:
    summary = summary_of(row)
    return {
        "referral_id": str(row["referral_id"]),
        "case_id": str(row["case_id"]),
        "agency_id": row["agency_id"],
        "needs": row["needs"],
        "state": row["state"],
        "reason": row["reason"],
        "outcome": row["outcome"],
        "state_changed_at": row["state_changed_at"].isoformat(),
        "requested_at": _time(row["requested_at"]),
        "ack_deadline": _time(row["ack_due_at"]),
        "reminded_at": _time(row["reminded_at"]),
        "overdue_at": _time(row["overdue_at"]),
        "replaced_by": [str(r) for r in row["replaced_by"]],
        "attention": attention(summary),
    }


def summary_of(row: asyncpg.Record) -> ReferralSummary:
    return ReferralSummary(
        state=ReferralState(row["state"]), overdue=row["overdue_at"] is not None, replaced=bool(row["replaced_by"])
    )


async def load_referral(pool: asyncpg.Pool, referral_id: UUID) -> dict[str, Any] | None:
    """The referral, with the notes written on it (kept here only: the events on Kafka say that a note exists)."""
    row = await pool.fetchrow("SELECT * FROM referrals WHERE referral_id = $1", referral_id)
    if row is None:
        return None
    notes = await pool.fetch(
        "SELECT event_type, occurred_at, detail->>'note' AS note FROM timeline"
        " WHERE referral_id = $1 AND detail->>'note' IS NOT NULL ORDER BY occurred_at, id",
        referral_id,
    )
    shown = [{"event": n["event_type"], "at": n["occurred_at"].isoformat(), "note": n["note"]} for n in notes]
    return {**_referral(row), "notes": shown}


async def referrals_of_case(pool: asyncpg.Pool, case_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM referrals WHERE case_id = $1 ORDER BY agency_id, created_at", case_id)
    return [_referral(r) for r in rows]


async def case_is_known(pool: asyncpg.Pool, case_id: UUID) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM cases WHERE case_id = $1) OR EXISTS (SELECT 1 FROM referrals"
            " WHERE case_id = $1)",
            case_id,
        )
    )


async def open_referrals_of_agency(pool: asyncpg.Pool, agency_id: str, limit: int) -> list[dict[str, Any]]:
    """The agency's referrals it has not finished with (awaiting its answer, accepted, in progress), the nearest
    deadline first."""
    rows = await pool.fetch(
        "SELECT * FROM referrals WHERE agency_id = $1"
        " AND state IN ('requested', 'delivered', 'accepted', 'in_progress')"
        " ORDER BY ack_due_at NULLS LAST, created_at LIMIT $2",
        agency_id,
        limit,
    )
    return [_referral(r) for r in rows]


async def referrals_of_cases_needing_attention(pool: asyncpg.Pool, limit: int) -> list[dict[str, Any]]:
    """Every referral of the cases where some referral may need the staff (the domain decides which do)."""
    rows = await pool.fetch(
        "SELECT * FROM referrals WHERE case_id IN (SELECT DISTINCT case_id FROM referrals"
        " WHERE state IN ('declined', 'failed') OR overdue_at IS NOT NULL LIMIT $1)"
        " ORDER BY case_id, agency_id, created_at",
        limit,
    )
    return [_referral(r) for r in rows]


async def timeline_of_case(pool: asyncpg.Pool, case_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT event_id, event_type, occurred_at, recorded_at, producer, referral_id, agency_id, detail, trace_id,"
        " span_id FROM timeline WHERE case_id = $1 ORDER BY occurred_at, id",
        case_id,
    )
    events = [
        {
            "event_id": str(r["event_id"]),
            "type": r["event_type"],
            "occurred_at": r["occurred_at"].isoformat(),
            "recorded_at": r["recorded_at"].isoformat(),
            "producer": r["producer"],
            "referral_id": None if r["referral_id"] is None else str(r["referral_id"]),
            "agency_id": r["agency_id"],
            "detail": r["detail"],
            "trace_id": r["trace_id"],
            "span_id": r["span_id"],
        }
        for r in rows
    ]
    return with_durations(events)


async def trace_of_referral(pool: asyncpg.Pool, referral_id: UUID) -> dict[str, str]:
    """The W3C trace context of the referral's latest timeline entry (else its case's), to continue the case's trace.

    An agency may answer before notify has heard of the delivery: then the case's routing is the latest step. Asked on
    every answer: two index scans, the case's only when the referral has no traced entry (one `OR` over both would
    read all the case's entries and sort them).
    """
    row = await pool.fetchrow(
        "(SELECT trace_id, span_id FROM timeline WHERE referral_id = $1 AND trace_id IS NOT NULL"
        " ORDER BY id DESC LIMIT 1)"
        " UNION ALL (SELECT trace_id, span_id FROM timeline WHERE referral_id IS NULL AND trace_id IS NOT NULL"
        " AND case_id = (SELECT case_id FROM referrals WHERE referral_id = $1) ORDER BY id DESC LIMIT 1)"
        " LIMIT 1",
        referral_id,
    )
    return {} if row is None else {"traceparent": f"00-{row['trace_id']}-{row['span_id']}-{sampled_flag()}"}


# --- cases: urgency, caseworker, the victim's contact rules -------------------------------------------------


async def save_case(
    conn: asyncpg.Connection,
    case_id: UUID,
    urgency: Urgency,
    caseworker: Caseworker | None,
    victim: VictimReach,
    submitted_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO cases (case_id, urgency, caseworker_id, caseworker_email, victim_do_not_contact, victim_channel,"
        " victim_safe_hours, submitted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (case_id) DO NOTHING",
        case_id,
        urgency,
        None if caseworker is None else caseworker.id,
        None if caseworker is None else str(caseworker.email),
        victim.do_not_contact,
        victim.channel,
        None if victim.safe_hours is None else victim.safe_hours.model_dump(mode="json"),
        submitted_at,
    )


async def load_case(conn: asyncpg.Connection, case_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)


def victim_reach_of(case: asyncpg.Record | None) -> VictimReach:
    if case is None:
        return VictimReach.nobody()
    hours = case["victim_safe_hours"]
    return VictimReach(
        do_not_contact=case["victim_do_not_contact"],
        channel=case["victim_channel"],
        safe_hours=None if hours is None else SafeHours.model_validate(hours),
    )


# --- acknowledgement deadlines: durable timers ---------------------------------------------------------------


async def referrals_without_deadline(conn: asyncpg.Connection, case_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT referral_id, agency_id, requested_at FROM referrals"
        " WHERE case_id = $1 AND requested_at IS NOT NULL AND ack_due_at IS NULL ORDER BY referral_id FOR UPDATE",
        case_id,
    )
    return rows


async def schedule_deadline(conn: asyncpg.Connection, referral_id: UUID, deadline: AckDeadline) -> None:
    await conn.execute(
        "UPDATE referrals SET ack_due_at = $2 WHERE referral_id = $1 AND ack_due_at IS NULL",
        referral_id,
        deadline.due_at,
    )
    await conn.execute(
        "INSERT INTO timers (referral_id, kind, due_at) VALUES ($1, 'reminder', $2), ($1, 'deadline', $3)"
        " ON CONFLICT (referral_id, kind) DO NOTHING",
        referral_id,
        deadline.remind_at,
        deadline.due_at,
    )


async def claim_due_timers(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Due timers no other replica holds; each stays locked by this transaction until it is marked fired."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, referral_id, kind, due_at FROM timers WHERE fired_at IS NULL AND due_at <= now()"
        " ORDER BY due_at, id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return rows


async def finish_timer(conn: asyncpg.Connection, timer_id: int, outcome: str) -> None:
    await conn.execute("UPDATE timers SET fired_at = now(), outcome = $2 WHERE id = $1", timer_id, outcome)


# --- notifications -------------------------------------------------------------------------------------------


async def queue_notice(conn: asyncpg.Connection, dedupe_key: str, news: ReferralNews, notice: Notice) -> None:
    await conn.execute(
        "INSERT INTO notifications (dedupe_key, case_id, referral_id, news, recipient, channel, address, subject,"
        " body, status, withheld, not_before, next_attempt_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) ON CONFLICT (dedupe_key) DO NOTHING",
        dedupe_key,
        news.case_id,
        news.referral_id,
        news.what,
        notice.recipient,
        notice.channel,
        notice.address,
        notice.subject,
        notice.body,
        "withheld" if notice.withheld else "pending",
        notice.withheld,
        notice.not_before,
    )


async def claim_due_notices(
    db: asyncpg.Pool | asyncpg.Connection, limit: int, lease_seconds: float
) -> list[asyncpg.Record]:
    """Take up to `limit` due notices for `lease_seconds`, committed at once: no other replica takes them meanwhile,
    and those this process never got to (it died) are due again when the lease runs out. Each send then records its
    outcome in a transaction of its own, so a crash repeats at most the one notice in flight."""
    rows: list[asyncpg.Record] = await db.fetch(
        "UPDATE notifications SET next_attempt_at = now() + make_interval(secs => $2::float8) WHERE id IN ("
        " SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at <= now()"
        " ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, case_id, recipient, channel, address, subject, body, attempts, next_attempt_at",
        limit,
        lease_seconds,
    )
    return sorted(rows, key=lambda row: row["id"])


async def notice_sent(conn: asyncpg.Connection, notice_id: int, channel: str) -> None:
    """Sent, through `channel`: a victim's safe channel may have changed since the notice was queued."""
    await conn.execute(
        "UPDATE notifications SET status = 'sent', sent_at = now(), attempts = attempts + 1, last_error = NULL,"
        " channel = $2 WHERE id = $1",
        notice_id,
        channel,
    )


async def notice_withheld(conn: asyncpg.Connection, notice_id: int, reason: str) -> None:
    """Not sent, on purpose and for good (the victim's rules forbid it now, or the case is gone): no text kept."""
    await conn.execute(
        "UPDATE notifications SET status = 'withheld', withheld = $2, address = NULL, subject = '', body = ''"
        " WHERE id = $1",
        notice_id,
        reason,
    )


async def notice_postponed(conn: asyncpg.Connection, notice_id: int, until: datetime) -> None:
    """Not sent yet, on purpose (outside the victim's safe hours): tried again at `until`, no attempt counted."""
    await conn.execute("UPDATE notifications SET next_attempt_at = $2 WHERE id = $1", notice_id, until)


async def notice_not_sent(
    conn: asyncpg.Connection, notice_id: int, error: str, retry_in_seconds: float | None, status: str = "failed"
) -> None:
    """Record a failed attempt: try again in `retry_in_seconds`, or (None) give up with `status`."""
    await conn.execute(
        "UPDATE notifications SET attempts = attempts + 1, last_error = $2,"
        " status = CASE WHEN $3::float8 IS NULL THEN $4 ELSE status END,"
        " next_attempt_at = now() + make_interval(secs => COALESCE($3::float8, 0)) WHERE id = $1",
        notice_id,
        error,
        retry_in_seconds,
        status,
    )


async def notices_of_case(pool: asyncpg.Pool, case_id: UUID) -> list[dict[str, Any]]:
    """What was sent or withheld, to whom by role and channel: never the address or the text."""
    rows = await pool.fetch(
        "SELECT referral_id, news, recipient, channel, status, withheld, attempts, last_error, not_before, created_at,"
        " sent_at FROM notifications WHERE case_id = $1 ORDER BY id",
        case_id,
    )
    return [
        {
            "referral_id": None if r["referral_id"] is None else str(r["referral_id"]),
            "news": r["news"],
            "recipient": r["recipient"],
            "channel": r["channel"],
            "status": r["status"],
            "withheld": r["withheld"],
            "attempts": r["attempts"],
            "last_error": r["last_error"],
            "not_before": r["not_before"].isoformat(),
            "created_at": r["created_at"].isoformat(),
            "sent_at": _time(r["sent_at"]),
        }
        for r in rows
    ]


# --- acknowledgements that arrived before their referral ---------------------------------------------------


async def park_ack(conn: asyncpg.Connection, event: Envelope, referral_id: UUID, agency_id: str) -> None:
    await conn.execute(
        "INSERT INTO pending_acks (event_id, referral_id, agency_id, payload, occurred_at, case_id)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
        event.event_id,
        referral_id,
        agency_id,
        encode_event(event),
        event.occurred_at,
        event.case_id,
    )


async def take_parked_acks(conn: asyncpg.Connection, referral_id: UUID) -> list[asyncpg.Record]:
    rows = await conn.fetch(
        "DELETE FROM pending_acks WHERE referral_id = $1 RETURNING agency_id, payload, occurred_at, event_id",
        referral_id,
    )
    return sorted(rows, key=lambda r: (r["occurred_at"], str(r["event_id"])))


# --- erasure: what notify forgets of a case erased on request ------------------------------------------------


async def forget_contact_rules(conn: asyncpg.Connection, case_id: UUID) -> None:
    """The victim's rules go; do-not-contact stands in for them, so nothing can be sent to the victim any more."""
    await conn.execute(
        "UPDATE cases SET victim_do_not_contact = true, victim_channel = NULL, victim_safe_hours = NULL"
        " WHERE case_id = $1",
        case_id,
    )


async def forget_notices(conn: asyncpg.Connection, case_id: UUID) -> None:
    """Every notice of the case loses its address and text; those not sent yet never will be."""
    await conn.execute(
        "UPDATE notifications SET address = NULL, subject = '', body = '',"
        " withheld = CASE WHEN status = 'pending' THEN $2 ELSE withheld END,"
        " status = CASE WHEN status = 'pending' THEN 'withheld' ELSE status END"
        " WHERE case_id = $1",
        case_id,
        ERASED,
    )


async def timeline_details(conn: asyncpg.Connection, case_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, detail FROM timeline WHERE case_id = $1 ORDER BY id FOR UPDATE", case_id
    )
    return rows


async def set_timeline_detail(conn: asyncpg.Connection, entry_id: int, detail: dict[str, Any]) -> None:
    await conn.execute("UPDATE timeline SET detail = $2 WHERE id = $1", entry_id, detail)


async def parked_acks_of_case(conn: asyncpg.Connection, case_id: UUID) -> list[asyncpg.Record]:
    """The case's acknowledgements waiting for their referral: `event_id` and `payload`."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT event_id, payload FROM pending_acks WHERE case_id = $1 FOR UPDATE", case_id
    )
    return rows


async def set_parked_payload(conn: asyncpg.Connection, event_id: UUID, payload: bytes) -> None:
    await conn.execute("UPDATE pending_acks SET payload = $2 WHERE event_id = $1", event_id, payload)
