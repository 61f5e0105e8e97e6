"""Submitting a case: store it (personal fields encrypted) and queue case.submitted in one transaction, at most once
per idempotency key; erasing it; re-wrapping the cases' data keys under a new key-encryption key."""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg
from kit.errors import Invalid
from kit.outbox import add_to_outbox
from schemas.events import CaseDetails, CaseErased, CaseSubmitted
from schemas.topics import CASE_ERASED, CASE_SUBMITTED

from . import storage
from .crypto import Keyring, WrappedKey


@dataclass(frozen=True)
class Submission:
    case_id: UUID
    submitted_at: datetime | None
    replayed: bool


def request_hash(details: CaseDetails) -> str:
    return hashlib.sha256(details.model_dump_json().encode()).hexdigest()


async def submit_case(
    pool: asyncpg.Pool,
    details: CaseDetails,
    idempotency_key: str | None,
    also: Callable[[asyncpg.Connection, UUID], Awaitable[None]] | None = None,
    *,
    keyring: Keyring,
) -> Submission:
    """`also` runs in the case's transaction (the access log's row for the submission); `keyring` encrypts."""
    digest = request_hash(details)
    if idempotency_key is not None and (earlier := await storage.find_by_idempotency_key(pool, idempotency_key)):
        return _replay(earlier, digest)
    # The event carries the case's facts; the victim's personal data is stored encrypted and never published.
    event = CaseSubmitted(case_id=uuid4(), producer="intake", case=details.facts())
    try:
        async with pool.acquire() as conn, conn.transaction():
            await storage.insert_case(conn, event, details, idempotency_key, digest, keyring)
            await add_to_outbox(conn, CASE_SUBMITTED, event)
            if also is not None:
                await also(conn, event.case_id)
    except asyncpg.UniqueViolationError:
        # The same key arrived twice at once; the other request stored the case.
        earlier = await storage.find_by_idempotency_key(pool, idempotency_key or "")
        if earlier is None:
            raise
        return _replay(earlier, digest)
    return Submission(event.case_id, event.occurred_at, replayed=False)


def _replay(earlier: asyncpg.Record, digest: str) -> Submission:
    if earlier["request_hash"] != digest:
        raise Invalid("this Idempotency-Key was already used for a different case", title="Idempotency-Key reused")
    return Submission(earlier["case_id"], None, replayed=True)


async def erase_case(
    pool: asyncpg.Pool, case_id: UUID, also: Callable[[asyncpg.Connection, UUID], Awaitable[None]] | None = None
) -> CaseErased | None:
    """Crypto-shred the case and tell every service to purge it (`case.erased`), in one transaction.

    None when there is no such case or it was erased already. `also` runs in the same transaction (the access log).
    """
    async with pool.acquire() as conn, conn.transaction():
        erased_at = await storage.erase_case(conn, case_id)
        if erased_at is None:
            return None
        event = CaseErased(case_id=case_id, producer="intake", erased_at=erased_at)
        await add_to_outbox(conn, CASE_ERASED, event)
        if also is not None:
            await also(conn, case_id)
    return event


async def rotate_case_keys(pool: asyncpg.Pool, keyring: Keyring, batch: int = 500) -> int:
    """Re-wrap every case's data key under the keyring's current KEK; returns how many were re-wrapped.

    The data itself is not touched. Afterwards the old KEK can be dropped from CASE_KEYS.
    """
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await storage.wrapped_keys_not_under(conn, keyring.current, batch)
            for row in rows:
                key = keyring.rewrap(WrappedKey(row["kek_id"], bytes(row["wrapped_key"])), row["case_id"])
                await storage.rewrap_key(conn, row["case_id"], key)
        total += len(rows)
        if len(rows) < batch:
            return total
