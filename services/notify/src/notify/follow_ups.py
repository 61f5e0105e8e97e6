"""Follow-up tasks as notify keeps them (the rules are in follow_up_rules.py): opened when an agency completes a
referral, in the transaction that records the completion; closed by a caseworker, or with the case; listed on the
case's status, the needing-attention list and the caseworker's home (`GET /follow-ups`).

Each opening and closing goes in the case's timeline, with who, and is returned as its event for the caller to
publish on `referral.events`."""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg
from kit.errors import NotFound
from schemas.events import FollowUpClosed, FollowUpOpened, ReferralCompleted, utc_now
from schemas.vocab import FollowUpOutcome, FollowUpProposal

from . import pending, storage
from .context import Context
from .follow_up_rules import TaskState, follow_up, proposal_state, task_id_of

OPENED_BY = "notify"  # on the agency's completion (the timeline entry names the agency)


async def open_after(
    conn: asyncpg.Connection, ctx: Context, event: ReferralCompleted, needs: list[str]
) -> FollowUpOpened | None:
    """Open the completion's follow-up for the case's caseworker, once (a redelivery finds it there), unless the case
    was closed; the event that says so, to publish, or None."""
    if await pending.closed(conn, event.case_id):
        return None
    case = await storage.load_case(conn, event.case_id)
    task = follow_up(event.outcome, storage.victim_reach_of(case), event.occurred_at, ctx.follow_up_after)
    task_id = task_id_of(event.referral_id)
    opened_at = utc_now()
    inserted = await conn.fetchval(
        "INSERT INTO follow_ups (task_id, case_id, referral_id, agency_id, needs, outcome, reason, caseworker_id,"
        " kind, no_contact, due_at, proposal, opened_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
        " $13) ON CONFLICT (referral_id) DO NOTHING RETURNING task_id",
        task_id,
        event.case_id,
        event.referral_id,
        event.agency_id,
        needs,
        event.outcome,
        None if event.reason is None else str(event.reason),
        None if case is None else case["caseworker_id"],
        task.kind,
        task.no_contact,
        task.due_at,
        task.proposal,
        opened_at,
    )
    if inserted is None:
        return None
    opened = FollowUpOpened(
        case_id=event.case_id,
        producer="notify",
        occurred_at=opened_at,
        task_id=task_id,
        referral_id=event.referral_id,
        agency_id=event.agency_id,
        needs=needs,
        outcome=event.outcome,
        kind=task.kind,
        no_contact=task.no_contact,
        proposal=task.proposal,
    )
    detail = {
        **opened.model_dump(mode="json", include={"task_id", "needs", "outcome", "kind", "no_contact", "proposal"}),
        "reason": None if event.reason is None else str(event.reason),
        "due_at": task.due_at.isoformat(),
        "opened_by": OPENED_BY,
    }
    await storage.add_to_timeline(conn, opened, detail, event.referral_id, event.agency_id)
    return opened


async def note_needs(conn: asyncpg.Connection, referral_id: UUID, needs: list[str]) -> None:
    """A completion that came before its routing opened a task without needs: they are known now."""
    await conn.execute(
        "UPDATE follow_ups SET needs = $2 WHERE referral_id = $1 AND cardinality(needs) = 0", referral_id, needs
    )


async def lock(conn: asyncpg.Connection, case_id: UUID, task_id: UUID) -> asyncpg.Record:
    """The case's task, locked; NotFound for a task that is not there or is another case's."""
    row = await conn.fetchrow(
        "SELECT * FROM follow_ups WHERE task_id = $1 AND case_id = $2 FOR UPDATE", task_id, case_id
    )
    if row is None:
        raise NotFound(f"no follow-up {task_id} for case {case_id}", reason="unknown_follow_up")
    return row


def state_of(row: asyncpg.Record) -> TaskState:
    return TaskState(row["state"])


def proposal_of(row: asyncpg.Record) -> FollowUpProposal | None:
    return None if row["proposal"] is None else FollowUpProposal(row["proposal"])


async def close(conn: asyncpg.Connection, row: asyncpg.Record, outcome: FollowUpOutcome, who: str) -> FollowUpClosed:
    """Close a locked open task with `outcome`, by `who`; in the timeline, and the event to publish."""
    closed = FollowUpClosed(
        case_id=row["case_id"],
        producer="notify",
        task_id=row["task_id"],
        referral_id=row["referral_id"],
        agency_id=row["agency_id"],
        outcome=outcome,
        closed_by=who,
    )
    await conn.execute(
        "UPDATE follow_ups SET state = 'done', closed_at = $2, closed_by = $3, closing = $4 WHERE task_id = $1",
        row["task_id"],
        closed.occurred_at,
        who,
        outcome,
    )
    proposed = proposal_state(proposal_of(row), outcome)
    detail = {
        "task_id": str(row["task_id"]),
        "outcome": outcome.value,
        "closed_by": who,
        "proposal": None if proposed is None else proposed.value,
    }
    await storage.add_to_timeline(conn, closed, detail, row["referral_id"], row["agency_id"])
    return closed


async def open_of_case(conn: asyncpg.Connection, case_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM follow_ups WHERE case_id = $1 AND state = 'open' ORDER BY task_id FOR UPDATE", case_id
    )
    return rows


# --- what staff see ---------------------------------------------------------------------------------------------


def shown(row: asyncpg.Record) -> dict[str, Any]:
    """A task as staff see it: ids, codes and times, nothing about the victim beyond what the case's status shows."""
    closing = None if row["closing"] is None else FollowUpOutcome(row["closing"])
    proposal = proposal_of(row)
    proposed = proposal_state(proposal, closing)
    return {
        "task_id": str(row["task_id"]),
        "case_id": str(row["case_id"]),
        "referral_id": str(row["referral_id"]),
        "agency_id": row["agency_id"],
        "needs": row["needs"],
        "completion": {"outcome": row["outcome"], "reason": row["reason"]},
        "kind": row["kind"],
        "no_contact": row["no_contact"],
        "due_at": row["due_at"].isoformat(),
        "caseworker_id": row["caseworker_id"],
        "proposal": None if proposal is None else {"action": proposal.value, "needs": row["needs"], "state": proposed},
        "state": row["state"],
        "opened_at": row["opened_at"].isoformat(),
        "closed_at": None if row["closed_at"] is None else row["closed_at"].isoformat(),
        "closed_by": row["closed_by"],
        "outcome": row["closing"],
    }


async def of_cases(db: asyncpg.Pool | asyncpg.Connection, case_ids: Sequence[UUID]) -> dict[str, list[dict[str, Any]]]:
    rows = await db.fetch(
        "SELECT * FROM follow_ups WHERE case_id = ANY($1::uuid[]) ORDER BY opened_at, task_id", list(case_ids)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(str(row["case_id"]), []).append(shown(row))
    return found


async def task(db: asyncpg.Pool | asyncpg.Connection, task_id: UUID) -> dict[str, Any]:
    row = await db.fetchrow("SELECT * FROM follow_ups WHERE task_id = $1", task_id)
    assert row is not None  # asked for a task just closed
    return shown(row)


async def listed(
    pool: asyncpg.Pool, state: TaskState | None, caseworker: str | None, limit: int
) -> list[dict[str, Any]]:
    """Tasks in `state` (None: any), of one caseworker's cases if given, the soonest due first."""
    rows = await pool.fetch(
        "SELECT * FROM follow_ups WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR caseworker_id = $2)"
        " ORDER BY due_at, task_id LIMIT $3",
        None if state is None else state.value,
        caseworker,
        limit,
    )
    return [shown(r) for r in rows]


async def cases_with_open_tasks(pool: asyncpg.Pool, limit: int) -> list[UUID]:
    rows = await pool.fetch(
        "SELECT DISTINCT case_id FROM follow_ups WHERE state = 'open' ORDER BY case_id LIMIT $1", limit
    )
    return [row["case_id"] for row in rows]
