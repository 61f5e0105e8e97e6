"""Submitting a case: store it and queue case.submitted in one transaction, at most once per idempotency key."""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg
from kit.http import Problem
from kit.outbox import add_to_outbox
from schemas.events import CaseDetails, CaseSubmitted
from schemas.topics import CASE_SUBMITTED

from . import storage


@dataclass(frozen=True)
class Submission:
    case_id: UUID
    submitted_at: datetime | None
    replayed: bool


def request_hash(details: CaseDetails) -> str:
    return hashlib.sha256(details.model_dump_json().encode()).hexdigest()


async def submit_case(pool: asyncpg.Pool, details: CaseDetails, idempotency_key: str | None) -> Submission:
    digest = request_hash(details)
    if idempotency_key is not None and (earlier := await storage.find_by_idempotency_key(pool, idempotency_key)):
        return _replay(earlier, digest)
    event = CaseSubmitted(case_id=uuid4(), producer="intake", case=details)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await storage.insert_case(conn, event, idempotency_key, digest)
            await add_to_outbox(conn, CASE_SUBMITTED, event)
    except asyncpg.UniqueViolationError:
        # The same key arrived twice at once; the other request stored the case.
        earlier = await storage.find_by_idempotency_key(pool, idempotency_key or "")
        if earlier is None:
            raise
        return _replay(earlier, digest)
    return Submission(event.case_id, event.occurred_at, replayed=False)


def _replay(earlier: asyncpg.Record, digest: str) -> Submission:
    if earlier["request_hash"] != digest:
        raise Problem(422, "this Idempotency-Key was already used for a different case", title="Idempotency-Key reused")
    return Submission(earlier["case_id"], None, replayed=True)
