"""A staged case's plan as notify shows it: routing's latest `case.plan`, with each stage's referrals (those for its
needs) and the time spent in it."""

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from schemas.events import CasePlanned

from . import storage


async def on_planned(conn: asyncpg.Connection, event: CasePlanned) -> None:
    """Keep the newest plan (an older one that comes late changes nothing) and put the change in the timeline."""
    stages = [s.model_dump(mode="json") for s in event.stages]
    await conn.execute(
        "INSERT INTO case_plans (case_id, stages, changed_at) VALUES ($1, $2, $3) ON CONFLICT (case_id) DO UPDATE"
        " SET stages = EXCLUDED.stages, changed_at = EXCLUDED.changed_at"
        " WHERE case_plans.changed_at <= EXCLUDED.changed_at",
        event.case_id,
        stages,
        event.occurred_at,
    )
    await storage.add_to_timeline(conn, event, {"stages": stages, "changed_by": event.changed_by})


async def plan_of(pool: asyncpg.Pool, case_id: UUID) -> list[dict[str, Any]] | None:
    stages: list[dict[str, Any]] | None = await pool.fetchval(
        "SELECT stages FROM case_plans WHERE case_id = $1", case_id
    )
    return stages


def shown(stages: list[dict[str, Any]], referrals: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Each stage with the referrals made for its needs (id, agency, state) and the seconds spent in it so far."""

    def seconds(stage: dict[str, Any]) -> float | None:
        if stage.get("started_at") is None:
            return None
        ended = now if stage.get("ended_at") is None else datetime.fromisoformat(stage["ended_at"])
        return round((ended - datetime.fromisoformat(stage["started_at"])).total_seconds(), 3)

    return [
        {
            **stage,
            "seconds": seconds(stage),
            "referrals": [
                {"referral_id": r["referral_id"], "agency_id": r["agency_id"], "state": r["state"]}
                for r in referrals
                if set(r["needs"]) & set(stage["needs"])
            ],
        }
        for stage in stages
    ]
