"""SQL for the consent ledger: rows are appended, never changed (the table's trigger refuses it)."""

from datetime import datetime
from uuid import UUID

import asyncpg
from schemas.vocab import LegalBasis, WithdrawalScope

from .consent_ledger import Action, Entry, Notice


async def case_standing(conn: asyncpg.Connection, case_id: UUID, *, lock: bool) -> tuple[bool, datetime | None]:
    """(whether the case exists, when it was erased if it was). `lock` holds the case until the transaction ends, so
    two changes to its consents are applied one after the other and an erasure waits for them."""
    row = await conn.fetchrow(
        "SELECT erased_at FROM cases WHERE case_id = $1" + (" FOR NO KEY UPDATE" if lock else ""), case_id
    )
    return (row is not None, None if row is None else row["erased_at"])


async def append(conn: asyncpg.Connection, case_id: UUID, *entries: Entry) -> None:
    await conn.executemany(
        "INSERT INTO consent_ledger (case_id, agency_id, action, recorded_by, recorded_at, granted,"
        " sensitive_granted, notice, scope, legal_basis, decided_by, reason)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        [
            (
                case_id,
                e.agency_id,
                e.action.value,
                e.recorded_by,
                e.recorded_at,
                e.granted,
                e.sensitive_granted,
                None if e.notice is None else e.notice.model_dump(mode="json"),
                None if e.scope is None else e.scope.value,
                None if e.legal_basis is None else e.legal_basis.value,
                e.decided_by,
                e.reason,
            )
            for e in entries
        ],
    )


async def entries(conn: asyncpg.Connection | asyncpg.Pool, case_id: UUID, agency_id: str | None = None) -> list[Entry]:
    """The case's rows in the order recorded (only the agency's, if given)."""
    rows = await conn.fetch(
        "SELECT * FROM consent_ledger WHERE case_id = $1 AND ($2::text IS NULL OR agency_id = $2) ORDER BY id",
        case_id,
        agency_id,
    )
    return [_entry(row) for row in rows]


def _entry(row: asyncpg.Record) -> Entry:
    return Entry(
        agency_id=row["agency_id"],
        action=Action(row["action"]),
        recorded_by=row["recorded_by"],
        recorded_at=row["recorded_at"],
        granted=row["granted"],
        sensitive_granted=row["sensitive_granted"],
        notice=None if row["notice"] is None else Notice.model_validate(row["notice"]),
        scope=None if row["scope"] is None else WithdrawalScope(row["scope"]),
        legal_basis=None if row["legal_basis"] is None else LegalBasis(row["legal_basis"]),
        decided_by=row["decided_by"],
        reason=row["reason"],
    )
