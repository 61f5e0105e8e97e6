"""The access log over HTTP, for auditors only: `GET /access-log` (filter by case, actor, time) and
`GET /access-log/verify`. `kit.app.service_app` gives every service these two routes."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from .access_log import Instant
from .deps import AccessLogDep, AuditorDep, PoolDep

router = APIRouter(tags=["access log"])


@router.get("/access-log")
async def read_access_log(
    who: AuditorDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    case_id: UUID | None = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    """Who read or changed whose data, when, from where, doing what — oldest first."""
    return await access_log.query(pool, case_id=case_id, actor=actor, since=since, until=until, limit=limit)


@router.get("/access-log/verify")
async def verify_access_log(who: AuditorDep, pool: PoolDep, access_log: AccessLogDep) -> dict[str, Any]:
    """Recompute the keyed hash chain and hold it against the newest signed checkpoint: `intact` false, the first
    broken row and the `reason` (`broken`, `rewritten`, `truncated`, `checkpoint_invalid`) if any row was changed
    or removed, or the newest rows were cut off."""
    return await access_log.verify(pool)
