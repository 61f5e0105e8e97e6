"""Pending needs and closed cases as notify shows them.

Pending needs: needs routing could not give to any agency yet (`case.routed`'s uncovered needs), until an agency
takes them (a later `case.routed`) or a caseworker closes them (`need.closed`). Routing keeps why and retries them;
notify keeps them on the case's status and its needing-attention list. A closed case (`case.closed`) has none."""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg
from schemas.events import CaseClosed, CaseRouted, NeedClosed

from . import storage


async def note_routing(conn: asyncpg.Connection, event: CaseRouted) -> None:
    """Needs this routing gave to an agency are pending no more; those it could not give are, from now (unless the
    case was closed meanwhile: its needs ended with it)."""
    routed = sorted({str(need) for referral in event.referrals for need in referral.needs})
    if routed:
        await conn.execute(
            "DELETE FROM pending_needs WHERE case_id = $1 AND need = ANY($2::text[])", event.case_id, routed
        )
    if await closed(conn, event.case_id):
        return
    await conn.executemany(
        "INSERT INTO pending_needs (case_id, need, since) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [(event.case_id, str(need), event.occurred_at) for need in event.uncovered_needs],
    )


# --- closed cases (intake's case.closed) ---------------------------------------------------------------------


async def close(conn: asyncpg.Connection, event: CaseClosed) -> None:
    """Record the closing and end the case's pending needs."""
    await conn.execute(
        "INSERT INTO closed_cases (case_id, closed_at, reason) VALUES ($1, $2, $3) ON CONFLICT (case_id) DO NOTHING",
        event.case_id,
        event.closed_at,
        event.reason.value,
    )
    await conn.execute("DELETE FROM pending_needs WHERE case_id = $1", event.case_id)


async def closed(conn: asyncpg.Connection, case_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM closed_cases WHERE case_id = $1", case_id))


async def closing_of(conn: asyncpg.Connection | asyncpg.Pool, case_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT closed_at, reason FROM closed_cases WHERE case_id = $1", case_id)
    return None if row is None else {"closed_at": row["closed_at"].isoformat(), "reason": row["reason"]}


async def referrals_of(conn: asyncpg.Connection, case_id: UUID) -> list[UUID]:
    rows = await conn.fetch("SELECT referral_id FROM referrals WHERE case_id = $1 ORDER BY referral_id", case_id)
    return [r["referral_id"] for r in rows]


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
