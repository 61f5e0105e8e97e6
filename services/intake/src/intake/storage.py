"""SQL for cases and consents."""

from typing import Any
from uuid import UUID

import asyncpg
from schemas.events import CaseDetails, CaseSubmitted


async def insert_case(
    conn: asyncpg.Connection, event: CaseSubmitted, idempotency_key: str | None, request_hash: str
) -> None:
    case = event.case
    await conn.execute(
        "INSERT INTO cases (case_id, submitted_at, idempotency_key, request_hash, crime_type, urgency, needs,"
        " region, language, intake_channel, victim, summary, caseworker)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        event.case_id,
        event.occurred_at,
        idempotency_key,
        request_hash,
        case.crime_type,
        case.urgency,
        list(case.needs),
        case.region,
        case.language,
        case.intake_channel,
        case.victim.model_dump(mode="json"),
        case.summary,
        None if case.caseworker is None else case.caseworker.model_dump(mode="json"),
    )
    await conn.executemany(
        "INSERT INTO consents (case_id, agency_id, granted, sensitive_granted, recorded_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        [(event.case_id, c.agency_id, c.granted, c.sensitive_granted, event.occurred_at) for c in case.consents],
    )


async def find_by_idempotency_key(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT case_id, request_hash FROM cases WHERE idempotency_key = $1", key)


async def load_case(conn: asyncpg.Connection | asyncpg.Pool, case_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    if row is None:
        return None
    consents = await conn.fetch(
        "SELECT agency_id, granted, sensitive_granted FROM consents WHERE case_id = $1 ORDER BY agency_id",
        case_id,
    )
    details = CaseDetails(
        crime_type=row["crime_type"],
        needs=row["needs"],
        urgency=row["urgency"],
        region=row["region"],
        language=row["language"],
        intake_channel=row["intake_channel"],
        victim=row["victim"],
        consents=[dict(c) for c in consents],
        summary=row["summary"],
        caseworker=row["caseworker"],
    )
    return {"case_id": row["case_id"], "submitted_at": row["submitted_at"], "case": details}
