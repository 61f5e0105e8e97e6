"""Pending needs as notify shows them: needs routing could not give to any agency yet (`case.routed`'s uncovered
needs), until an agency takes them (a later `case.routed`) or a caseworker closes them (`need.closed`). Routing keeps
why and retries them; notify keeps them on the case's status and its needing-attention list."""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg
from schemas.events import CaseRouted, NeedClosed

from . import storage


async def note_routing(conn: asyncpg.Connection, event: CaseRouted) -> None:
    """Needs this routing gave to an agency are pending no more; those it could not give are, from now."""
    routed = sorted({str(need) for referral in event.referrals for need in referral.needs})
    if routed:
        await conn.execute(
            "DELETE FROM pending_needs WHERE case_id = $1 AND need = ANY($2::text[])", event.case_id, routed
        )
    await conn.executemany(
        "INSERT INTO pending_needs (case_id, need, since) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [(event.case_id, str(need), event.occurred_at) for need in event.uncovered_needs],
    )


async def on_need_closed(conn: asyncpg.Connection, event: NeedClosed) -> None:
    await conn.execute("DELETE FROM pending_needs WHERE case_id = $1 AND need = $2", event.case_id, event.need)
    detail = {"need": event.need, "reason": event.reason, "closed_by": event.closed_by}
    await storage.add_to_timeline(conn, event, detail)


async def pending_of_cases(
    conn: asyncpg.Connection | asyncpg.Pool, case_ids: Sequence[UUID]
) -> dict[str, list[dict[str, Any]]]:
    rows = await conn.fetch(
        "SELECT case_id, need, since FROM pending_needs WHERE case_id = ANY($1::uuid[]) ORDER BY since, need",
        list(case_ids),
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(str(row["case_id"]), []).append({"need": row["need"], "since": row["since"].isoformat()})
    return found


async def cases_with_pending_needs(pool: asyncpg.Pool, limit: int) -> list[UUID]:
    rows = await pool.fetch("SELECT DISTINCT case_id FROM pending_needs ORDER BY case_id LIMIT $1", limit)
    return [row["case_id"] for row in rows]
