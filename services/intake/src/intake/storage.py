"""SQL for cases and their data keys (consents: `consent_storage`). Personal fields are written and read only
encrypted."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from schemas.events import CaseDetails, CaseSubmitted

from . import consent_storage
from .consent_ledger import as_consent, current
from .crypto import Keyring, SealedCase, WrappedKey, open_case, seal_case


async def insert_case(
    conn: asyncpg.Connection,
    event: CaseSubmitted,
    case: CaseDetails,
    idempotency_key: str | None,
    request_hash: str,
    keyring: Keyring,
) -> None:
    sealed = seal_case(keyring, event.case_id, case.victim.model_dump(mode="json", exclude_none=True), case.summary)
    await conn.execute(
        "INSERT INTO cases (case_id, submitted_at, idempotency_key, request_hash, crime_type, urgency, needs,"
        " region, language, intake_channel, victim_sealed, summary_sealed, caseworker)"
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
        sealed.victim,
        sealed.summary,
        None if case.caseworker is None else case.caseworker.model_dump(mode="json"),
    )
    await conn.execute(
        "INSERT INTO case_keys (case_id, kek_id, wrapped_key) VALUES ($1, $2, $3)",
        event.case_id,
        sealed.key.kek_id,
        sealed.key.blob,
    )


async def find_by_idempotency_key(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT case_id, request_hash FROM cases WHERE idempotency_key = $1", key)


@dataclass(frozen=True)
class ErasedCase:
    case_id: UUID
    erased_at: datetime


async def load_case(
    conn: asyncpg.Connection | asyncpg.Pool, case_id: UUID, keyring: Keyring
) -> dict[str, Any] | ErasedCase | None:
    row = await conn.fetchrow(
        "SELECT c.*, k.kek_id, k.wrapped_key FROM cases c LEFT JOIN case_keys k USING (case_id) WHERE case_id = $1",
        case_id,
    )
    if row is None:
        return None
    if row["erased_at"] is not None:
        return ErasedCase(row["case_id"], row["erased_at"])
    victim, summary = row["victim"], row["summary"]  # stored before encryption at rest, if at all
    if row["victim_sealed"] is not None:
        sealed = SealedCase(row["victim_sealed"], row["summary_sealed"], WrappedKey(row["kek_id"], row["wrapped_key"]))
        victim, summary = open_case(keyring, case_id, sealed)
    consents = [as_consent(state) for state in current(await consent_storage.entries(conn, case_id)).values()]
    details = CaseDetails(
        crime_type=row["crime_type"],
        needs=row["needs"],
        urgency=row["urgency"],
        region=row["region"],
        language=row["language"],
        intake_channel=row["intake_channel"],
        victim=victim,
        consents=consents,
        summary=summary,
        caseworker=row["caseworker"],
    )
    return {"case_id": row["case_id"], "submitted_at": row["submitted_at"], "case": details}


async def erase_case(conn: asyncpg.Connection, case_id: UUID) -> datetime | None:
    """Destroy the case's data key and every copy of its personal data here; None if unknown or erased already.

    Call inside the transaction that queues `case.erased`. The idempotency key stays, so a late retry of the
    submission cannot bring the case back. The `case.submitted` in the outbox is the one other copy intake holds:
    unsent, it is dropped; sent, its payload is cut down to a marker.
    """
    erased_at: datetime | None = await conn.fetchval(
        "UPDATE cases SET erased_at = now(), victim = NULL, victim_sealed = NULL, summary = NULL,"
        " summary_sealed = NULL, request_hash = ''"
        " WHERE case_id = $1 AND erased_at IS NULL RETURNING erased_at",
        case_id,
    )
    if erased_at is None:
        return None
    await conn.execute("DELETE FROM case_keys WHERE case_id = $1", case_id)
    await conn.execute(
        "DELETE FROM outbox WHERE key = $1 AND event_type = 'case.submitted' AND sent_at IS NULL", str(case_id)
    )
    await conn.execute(
        "UPDATE outbox SET payload = convert_to(jsonb_build_object("
        " 'type', event_type, 'case_id', key, 'erased', true)::text, 'UTF8')"
        " WHERE key = $1 AND event_type = 'case.submitted'",
        str(case_id),
    )
    return erased_at


async def wrapped_keys_not_under(conn: asyncpg.Connection, kek_id: str, limit: int) -> list[asyncpg.Record]:
    """Data keys wrapped by another KEK than `kek_id`, locked for re-wrapping (a rotation batch)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT case_id, kek_id, wrapped_key FROM case_keys WHERE kek_id <> $1 ORDER BY case_id LIMIT $2"
        " FOR UPDATE SKIP LOCKED",
        kek_id,
        limit,
    )
    return rows


async def rewrap_key(conn: asyncpg.Connection, case_id: UUID, key: WrappedKey) -> None:
    await conn.execute(
        "UPDATE case_keys SET kek_id = $2, wrapped_key = $3, wrapped_at = now() WHERE case_id = $1",
        case_id,
        key.kek_id,
        key.blob,
    )


async def erased_at(conn: asyncpg.Connection | asyncpg.Pool, case_id: UUID) -> tuple[bool, datetime | None]:
    """(whether the case exists, when it was erased if it was)."""
    row = await conn.fetchrow("SELECT erased_at FROM cases WHERE case_id = $1", case_id)
    return (row is not None, None if row is None else row["erased_at"])
