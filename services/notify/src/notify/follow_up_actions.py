"""What staff do with a follow-up task, each in one transaction with its timeline entry, its event on
`referral.events` and the access log's row — or refused with nothing changed: close it with an outcome, or accept
its proposal to re-route the completed referral's needs (notify asks routing on `referral.rerouting`, as for a
decline). The case's closing ends its open tasks."""

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
from kit.unit_of_work import transaction
from schemas.vocab import FollowUpOutcome, ReroutingCause

from . import follow_ups, pending
from .commands import publish
from .follow_up_rules import check_closing, check_reroute
from .rerouting import request_rerouting

Also = Callable[[asyncpg.Connection, asyncpg.Record], Awaitable[None]]


async def close_task(
    pool: asyncpg.Pool, case_id: UUID, task_id: UUID, outcome: FollowUpOutcome, who: str, also: Also
) -> dict[str, Any]:
    """A caseworker closes an open task with an outcome of theirs; an open re-routing proposal is thereby declined."""
    async with transaction(pool) as conn:
        row = await follow_ups.lock(conn, case_id, task_id)
        check_closing(follow_ups.state_of(row), outcome)
        await publish(conn, await follow_ups.close(conn, row, outcome, who))
        await also(conn, row)
        return await follow_ups.task(conn, task_id)


async def reroute(pool: asyncpg.Pool, case_id: UUID, task_id: UUID, who: str, also: Also) -> dict[str, Any]:
    """A caseworker accepts the task's proposal: routing is asked for another agency for the completed referral's
    needs (never the one that completed it), and the task is done (`rerouted`)."""
    async with transaction(pool) as conn:
        row = await follow_ups.lock(conn, case_id, task_id)
        needs = list(row["needs"])
        check_reroute(follow_ups.state_of(row), follow_ups.proposal_of(row), needs, await pending.closed(conn, case_id))
        await request_rerouting(
            conn, case_id, row["referral_id"], row["agency_id"], needs, ReroutingCause.not_successful, requested_by=who
        )
        await publish(conn, await follow_ups.close(conn, row, FollowUpOutcome.rerouted, who))
        await also(conn, row)
        return await follow_ups.task(conn, task_id)


async def close_with_case(conn: asyncpg.Connection, case_id: UUID, who: str) -> None:
    """The case was closed: its open tasks end with it (`case_closed`, by whoever closed the case)."""
    for row in await follow_ups.open_of_case(conn, case_id):
        await publish(conn, await follow_ups.close(conn, row, FollowUpOutcome.case_closed, who))
