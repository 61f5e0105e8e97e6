"""The access log (PIPA safety measures, Art. 8): who read or changed whose personal data, when, from where, doing
what — never the data itself. Tamper-evident: each row's hash covers its fields and the previous row's hash, so a
changed, removed or reordered row breaks the chain from there on.

Each service keeps its own `access_log` table (the kit's migration `sql/001_access_log.sql` creates it in every
service's schema); writing a row takes a transaction-scoped advisory lock so the chain stays a line, and belongs in
the same transaction as the change it records. Rows older than the retention are purged from time to time; the
last purged row's hash stays behind as the anchor the chain is verified from.
"""

import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator, AwareDatetime, BeforeValidator
from schemas.events import utc_now

from .auth import Principal, Role, require

GENESIS = "0" * 64
PURGE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True)
class Access:
    """One read or change of personal data: whose (case, referral) and what (`case.read`, `referral.accept`...)."""

    action: str
    case_id: UUID | None = None
    referral_id: UUID | None = None


def row_hash(previous: str, seq: int, at: datetime, actor: str, role: str, client: str, access: Access) -> str:
    fields = {
        "previous": previous,
        "seq": seq,
        "at": at.isoformat(),
        "actor": actor,
        "role": role,
        "client": client,
        "action": access.action,
        "case_id": None if access.case_id is None else str(access.case_id),
        "referral_id": None if access.referral_id is None else str(access.referral_id),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class AccessLog:
    """Appends to, reads, verifies and purges one service's `access_log` table."""

    def __init__(self, retention_days: float) -> None:
        self.retention = timedelta(days=retention_days)
        self._purged_at = float("-inf")

    async def record(self, conn: asyncpg.Connection, who: Principal, *accesses: Access) -> None:
        """Append a row per access; call inside the transaction of the change it records (else it opens one)."""
        if not accesses:
            return
        if conn.is_in_transaction():  # the change's own transaction: no savepoint, two round trips fewer
            await self._append(conn, who, accesses)
            return
        async with conn.transaction():
            await self._append(conn, who, accesses)

    async def _append(self, conn: asyncpg.Connection, who: Principal, accesses: tuple[Access, ...]) -> None:
        """The rows, chained to the last one; the advisory lock (held to the transaction's end) keeps it a line."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('access_log'))")
        if time.monotonic() - self._purged_at > PURGE_EVERY_SECONDS:
            await self._purge(conn, utc_now() - self.retention)
            self._purged_at = time.monotonic()
        # The newest row, else (all purged) the anchor, else the chain starts here.
        last = await conn.fetchrow(
            "SELECT seq, hash FROM access_log UNION ALL SELECT seq, hash FROM access_log_anchor"
            " ORDER BY seq DESC LIMIT 1"
        )
        seq, previous = (last["seq"], last["hash"]) if last is not None else (0, GENESIS)
        at = utc_now()
        rows = []
        for access in accesses:
            seq += 1
            digest = row_hash(previous, seq, at, who.credential, who.role.value, who.client, access)
            rows.append(
                (seq, at, who.credential, who.role.value, who.client, access.action, access.case_id,
                 access.referral_id, previous, digest)
            )  # fmt: skip
            previous = digest
        await conn.executemany(
            "INSERT INTO access_log (seq, at, actor, role, client, action, case_id, referral_id, previous_hash,"
            " hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            rows,
        )

    async def record_now(self, pool: asyncpg.Pool, who: Principal, *accesses: Access) -> None:
        """A read: its own short transaction, once the data is read."""
        async with pool.acquire() as conn:
            await self.record(conn, who, *accesses)

    async def purge(self, pool: asyncpg.Pool, before: datetime) -> int:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('access_log'))")
            return await self._purge(conn, before)

    @staticmethod
    async def _purge(conn: asyncpg.Connection, before: datetime) -> int:
        """Remove rows older than `before`, keeping the last removed row's seq and hash as the chain's anchor."""
        last = await conn.fetchrow("SELECT seq, hash FROM access_log WHERE at < $1 ORDER BY seq DESC LIMIT 1", before)
        if last is None:
            return 0
        await conn.execute(
            "INSERT INTO access_log_anchor (id, seq, hash, purged_at) VALUES (true, $1, $2, now())"
            " ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, purged_at = now()",
            last["seq"],
            last["hash"],
        )
        removed = await conn.execute("DELETE FROM access_log WHERE seq <= $1", last["seq"])
        return int(removed.split()[-1])

    @staticmethod
    async def query(
        pool: asyncpg.Pool,
        *,
        case_id: UUID | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        rows = await pool.fetch(
            "SELECT seq, at, actor, role, client, action, case_id, referral_id FROM access_log"
            " WHERE ($1::uuid IS NULL OR case_id = $1) AND ($2::text IS NULL OR actor = $2)"
            " AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4)"
            " ORDER BY seq LIMIT $5",
            case_id,
            actor,
            since,
            until,
            limit,
        )
        return [
            {
                **dict(r),
                "at": r["at"].isoformat(),
                "case_id": None if r["case_id"] is None else str(r["case_id"]),
                "referral_id": None if r["referral_id"] is None else str(r["referral_id"]),
            }
            for r in rows
        ]

    @staticmethod
    async def verify(pool: asyncpg.Pool) -> dict[str, Any]:
        """Recompute the chain from the anchor (or the start): `intact`, the rows checked, the first broken seq."""
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            anchor = await conn.fetchrow("SELECT seq, hash FROM access_log_anchor")
            seq, previous = (anchor["seq"], anchor["hash"]) if anchor is not None else (0, GENESIS)
            checked = 0
            async for row in conn.cursor("SELECT * FROM access_log ORDER BY seq"):
                seq += 1
                access = Access(row["action"], row["case_id"], row["referral_id"])
                expected = row_hash(previous, seq, row["at"], row["actor"], row["role"], row["client"], access)
                if row["seq"] != seq or row["previous_hash"] != previous or row["hash"] != expected:
                    return {"intact": False, "rows_checked": checked, "first_broken_seq": row["seq"]}
                previous = row["hash"]
                checked += 1
        return {"intact": True, "rows_checked": checked, "first_broken_seq": None}


def _iso_text(value: Any) -> Any:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ].+", value):
        raise ValueError("an ISO 8601 date and time with its offset, like 2026-01-31T09:00:00+09:00")
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


# A point in time as a query parameter: ISO 8601 with an offset, no Unix seconds, within the representable range.
Instant = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_in_utc)]


def access_log_routes(access_log: AccessLog) -> APIRouter:
    """`GET /access-log` (filter by case, actor, time) and `GET /access-log/verify`: for auditors only."""
    router = APIRouter(tags=["access log"])
    auditor = Depends(require(Role.auditor))

    @router.get("/access-log")
    async def read_access_log(
        request: Request,
        case_id: UUID | None = None,
        actor: Annotated[str | None, Query(max_length=200)] = None,
        since: Instant | None = None,
        until: Instant | None = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
        who: Principal = auditor,
    ) -> list[dict[str, Any]]:
        """Who read or changed whose data, when, from where, doing what — oldest first."""
        return await access_log.query(
            request.app.state.runtime.pool, case_id=case_id, actor=actor, since=since, until=until, limit=limit
        )

    @router.get("/access-log/verify")
    async def verify_access_log(request: Request, who: Principal = auditor) -> dict[str, Any]:
        """Recompute the hash chain: `intact` false, and the first broken row, if any row was changed or removed."""
        return await access_log.verify(request.app.state.runtime.pool)

    return router
