"""The access log (PIPA safety measures, Art. 8): who read or changed whose personal data, when, from where, doing
what — never the data itself.

Each service keeps its own `access_log` table (the kit's migrations create it in every service's schema). A row is
appended in the transaction of the change it records, under a transaction-scoped advisory lock keyed by the schema's
name, so the chain stays a line and the four services never wait on one another's lock.

Tamper-evident, within stated limits:

- **A keyed chain.** Each row's hash is an HMAC-SHA256 of its fields and the previous row's hash, under a key that
  is not in the database: a changed, removed or reordered row breaks the chain from there on, and whoever can write
  to the table but lacks the key cannot compute hashes that fit. The key is derived from `ACCESS_LOG_KEY`, or, when
  that is not set, from `AUTH_SECRET` (an HMAC of a fixed label under the secret), so a stack runs without a new
  setting; but the key must never change (rows hashed under an old key no longer verify), so a deployment that may
  rotate `AUTH_SECRET` sets `ACCESS_LOG_KEY`. Each row names its scheme: rows written before the key (`sha256`, a
  plain SHA-256 that anyone could recompute) still verify as written, and a `sha256` row after a keyed one is a
  break.
- **Signed checkpoints.** About every minute (`keep_checkpoints`, which the service's runtime runs) the head of the
  chain — the schema, its newest seq and hash — is signed with the key and kept outside the table: a file per schema
  in `ACCESS_LOG_CHECKPOINT_DIR` (written to a temporary file, synced, renamed over the last), or, without that
  setting, only in the process's memory and in a log line. A checkpoint is written only once the rows added since
  the one before are found intact, so a broken chain is never signed. `verify` then finds the newest rows cut off
  (`truncated`) or the chain recomputed (`rewritten`) up to the checkpoint.

Not detected: the removal of rows written since the last checkpoint (up to a checkpoint interval's worth); anything
done by whoever holds the key; and, with checkpoints in memory only, whatever happened while no process of the
service was running (a restarted process starts with no checkpoint; the log lines remain to compare by hand).

Rows older than the retention are purged from time to time; the last purged row's hash (and scheme) stays behind as
the anchor the chain is verified from.
"""

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from pydantic import AfterValidator, AwareDatetime, BeforeValidator
from schemas.events import utc_now

from . import metrics
from .auth import Principal
from .settings import ServiceSettings

log = logging.getLogger(__name__)

GENESIS = "0" * 64
PURGE_EVERY_SECONDS = 3600.0

SHA256 = "sha256"  # rows written before the chain was keyed: a plain SHA-256, which anyone could recompute
HMAC_SHA256 = "hmac-sha256"  # an HMAC-SHA256 under the access log's key

# The reasons `verify` gives when the log is not intact.
BROKEN = "broken"  # a row does not chain to the one before, or its hash is not that of its fields
REWRITTEN = "rewritten"  # the chain holds together but no longer passes through the checkpoint's hash
TRUNCATED = "truncated"  # the chain ends before the checkpoint's seq: its newest rows were removed
CHECKPOINT_INVALID = "checkpoint_invalid"  # the checkpoint is unreadable, of another schema, or not signed by the key

# Transaction-scoped, one per schema: a 64-bit hash of the schema's name (`current_schema()`, the service's own).
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('access_log:' || current_schema(), 0))"
_KEY_LABEL = b"onestop access-log chain key v1"
_CHECKPOINT_LABEL = b"onestop access-log checkpoint v1\n"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class Access:
    """One read or change of personal data: whose (case, referral) and what (`case.read`, `referral.accept`...)."""

    action: str
    case_id: UUID | None = None
    referral_id: UUID | None = None


def derive_key(secret: str) -> bytes:
    """The chain's key from a secret: an HMAC-SHA256 of a fixed label under it (one HKDF-Expand step)."""
    return hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def chain_key(settings: ServiceSettings) -> bytes | None:
    """The key from `ACCESS_LOG_KEY`, else from `AUTH_SECRET` (so a stack needs no new setting), else none."""
    secret = settings.access_log_key or settings.auth_secret
    return None if secret is None else derive_key(secret.get_secret_value())


def row_hash(
    previous: str,
    seq: int,
    at: datetime,
    actor: str,
    role: str,
    client: str,
    access: Access,
    key: bytes | None = None,
) -> str:
    """The row's hash: an HMAC-SHA256 under `key` (scheme `hmac-sha256`), or without a key the plain SHA-256 of the
    rows written before the chain was keyed (scheme `sha256`)."""
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
    message = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """The head of one schema's chain at a moment — its newest seq and that row's hash — signed with the key."""

    schema: str
    seq: int
    hash: str
    at: str  # ISO 8601, when it was taken
    signature: str = ""

    def _message(self) -> bytes:
        fields = {"schema": self.schema, "seq": self.seq, "hash": self.hash, "at": self.at}
        return _CHECKPOINT_LABEL + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def signed(cls, key: bytes, schema: str, seq: int, hash: str, at: datetime) -> "Checkpoint":
        unsigned = cls(schema, seq, hash, at.isoformat())
        return cls(schema, seq, hash, unsigned.at, hmac.new(key, unsigned._message(), hashlib.sha256).hexdigest())

    def valid(self, key: bytes) -> bool:
        expected = hmac.new(key, self._message(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.signature.encode(), expected.encode())

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Checkpoint":
        """Raises ValueError when `text` is not a checkpoint (its signature is checked by `valid`)."""
        try:
            fields = json.loads(text)
            checkpoint = cls(**{name: fields[name] for name in ("schema", "seq", "hash", "at", "signature")})
        except (TypeError, KeyError, json.JSONDecodeError) as error:
            raise ValueError("not an access-log checkpoint") from error
        types = (checkpoint.schema, checkpoint.hash, checkpoint.at, checkpoint.signature)
        if not isinstance(checkpoint.seq, int) or not all(isinstance(value, str) for value in types):
            raise ValueError("not an access-log checkpoint")
        return checkpoint


class CheckpointStore:
    """Where the newest checkpoint of each schema is kept, outside the database.

    With a directory: a file per schema (`<schema>.json`), replaced atomically (a temporary file in the same folder,
    synced, then renamed over the old one), so it outlives the process and every replica reads the newest. Without
    one: this process's memory only (a restart starts afresh; each checkpoint is also logged, to compare by hand).
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._memory: dict[str, Checkpoint] = {}

    @classmethod
    def shared(cls, directory: Path | None) -> "CheckpointStore":
        """The process's store for `directory`: every AccessLog of a service sees the checkpoints the runtime takes."""
        return _SHARED_STORES.setdefault(directory, cls(directory))

    def latest(self, schema: str) -> Checkpoint | None:
        """The newest checkpoint of `schema`, None when there is none; ValueError when its file is not one."""
        if self.directory is None:
            return self._memory.get(schema)
        try:
            text = self._path(schema).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return Checkpoint.from_json(text)

    def save(self, checkpoint: Checkpoint) -> None:
        if self.directory is None:
            self._memory[checkpoint.schema] = checkpoint
            return
        path = self._path(checkpoint.schema)
        self.directory.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=f".{checkpoint.schema}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(checkpoint.to_json() + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        folder = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a crash
        finally:
            os.close(folder)

    def _path(self, schema: str) -> Path:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError("a checkpoint's schema is a lower-case SQL identifier")
        assert self.directory is not None
        return self.directory / f"{schema}.json"


_SHARED_STORES: dict[Path | None, CheckpointStore] = {}  # one per folder (or memory) per process


@dataclass
class ChainCheck:
    """Walks a chain's rows in order from a starting link (the anchor, the start, or a checkpointed row), checking
    each row's seq, previous hash, scheme and hash, and whether the chain passes through (and reaches) a checkpoint.

    `seq` and `previous` are the last link checked; `reason` and `first_broken_seq` say where it stopped, if it did.
    """

    key: bytes
    seq: int = 0
    previous: str = GENESIS
    keyed: bool = False  # whether a keyed row came already: a `sha256` row after one is a break
    checkpoint: Checkpoint | None = None
    checked: int = 0
    reason: str | None = None
    first_broken_seq: int | None = None

    def begin(self) -> bool:
        """Whether the starting link agrees with the checkpoint, when that is where the checkpoint is."""
        if self.checkpoint is not None and self.checkpoint.seq == self.seq and self.checkpoint.hash != self.previous:
            return self._break(self.seq, REWRITTEN)
        return self.reason is None

    def step(self, row: Mapping[str, Any]) -> bool:
        """Check the next row; False once the chain is broken (at this row or before)."""
        if self.reason is not None:
            return False
        seq = self.seq + 1
        if row["scheme"] == HMAC_SHA256:
            key: bytes | None = self.key
        elif row["scheme"] == SHA256 and not self.keyed:
            key = None
        else:  # an unknown scheme, or unkeyed after keyed: whoever lacks the key would write such rows
            return self._break(row["seq"], BROKEN)
        access = Access(row["action"], row["case_id"], row["referral_id"])
        expected = row_hash(self.previous, seq, row["at"], row["actor"], row["role"], row["client"], access, key)
        if (
            row["seq"] != seq
            or row["previous_hash"] != self.previous
            or not hmac.compare_digest(str(row["hash"]).encode(), expected.encode())
        ):
            return self._break(row["seq"], BROKEN)
        if self.checkpoint is not None and seq == self.checkpoint.seq and row["hash"] != self.checkpoint.hash:
            return self._break(seq, REWRITTEN)
        self.seq, self.previous = seq, row["hash"]
        self.keyed = self.keyed or key is not None
        self.checked += 1
        return True

    def finish(self) -> "ChainCheck":
        """After the last row: the chain must reach the checkpoint."""
        if self.reason is None and self.checkpoint is not None and self.checkpoint.seq > self.seq:
            self._break(self.seq + 1, TRUNCATED)  # the first row missing
        return self

    @property
    def intact(self) -> bool:
        return self.reason is None

    def answer(self) -> dict[str, Any]:
        """`GET /access-log/verify`'s body: `intact`, `rows_checked`, `first_broken_seq` as ever; `reason` and the
        checkpoint checked against (`seq`, `at`), if any."""
        checkpoint = None if self.checkpoint is None else {"seq": self.checkpoint.seq, "at": self.checkpoint.at}
        return {
            "intact": self.intact,
            "rows_checked": self.checked,
            "first_broken_seq": self.first_broken_seq,
            "reason": self.reason,
            "checkpoint": checkpoint,
        }

    def _break(self, seq: int | None, reason: str) -> bool:
        self.first_broken_seq, self.reason = seq, reason
        return False


_COLUMNS = "seq, at, actor, role, client, action, case_id, referral_id, previous_hash, hash, scheme"


async def _walk(
    conn: asyncpg.Connection, key: bytes, checkpoint: Checkpoint | None, *, since: Checkpoint | None = None
) -> ChainCheck:
    """Check the chain (call in a repeatable-read transaction): from the anchor (or the start), or — `since` a
    checkpoint whose row is still there with the checkpoint's hash — from that row on only."""
    anchor = await conn.fetchrow("SELECT seq, hash, scheme FROM access_log_anchor")
    check = ChainCheck(key, checkpoint=checkpoint)
    if anchor is not None:
        check.seq, check.previous, check.keyed = anchor["seq"], anchor["hash"], anchor["scheme"] == HMAC_SHA256
    rows = f"SELECT {_COLUMNS} FROM access_log ORDER BY seq"
    arguments: tuple[Any, ...] = ()
    if since is not None and since.seq > check.seq:
        start = await conn.fetchrow("SELECT seq, hash, scheme FROM access_log WHERE seq = $1", since.seq)
        if start is not None and hmac.compare_digest(str(start["hash"]).encode(), since.hash.encode()):
            check.seq, check.previous, check.keyed = start["seq"], start["hash"], start["scheme"] == HMAC_SHA256
            rows, arguments = f"SELECT {_COLUMNS} FROM access_log WHERE seq > $1 ORDER BY seq", (since.seq,)
    if not check.begin():
        return check
    async for row in conn.cursor(rows, *arguments):
        if not check.step(row):
            return check
    return check.finish()


async def _head_schema(conn: asyncpg.Connection) -> str:
    return str(await conn.fetchval("SELECT current_schema()"))


class AccessLog:
    """Appends to, reads, verifies, checkpoints and purges one service's `access_log` table.

    `AccessLog.for_service(settings)` in a service; the key (see the module's docstring) is needed to append, verify
    and checkpoint, not to purge or read."""

    def __init__(
        self, retention_days: float, *, key: bytes | None = None, checkpoints: CheckpointStore | None = None
    ) -> None:
        self.retention = timedelta(days=retention_days)
        self._key = key
        self.checkpoints = checkpoints if checkpoints is not None else CheckpointStore()
        self._purged_at = float("-inf")

    @classmethod
    def for_service(cls, settings: ServiceSettings) -> "AccessLog":
        """The service's access log: its key from the settings, checkpoints in `ACCESS_LOG_CHECKPOINT_DIR` (else in
        the process's memory, shared by every AccessLog of the process)."""
        return cls(
            settings.access_log_retention_days,
            key=chain_key(settings),
            checkpoints=CheckpointStore.shared(settings.access_log_checkpoint_dir),
        )

    @property
    def keyed(self) -> bool:
        return self._key is not None

    @property
    def key(self) -> bytes:
        if self._key is None:
            raise RuntimeError("the access log has no key: set ACCESS_LOG_KEY (or AUTH_SECRET)")
        return self._key

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
        """The rows, chained to the last one; the schema's advisory lock (held to the transaction's end) keeps it a
        line."""
        key = self.key
        await conn.execute(_LOCK)
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
        seqs, previous_hashes, hashes = [], [], []
        for access in accesses:
            seq += 1
            digest = row_hash(previous, seq, at, who.credential, who.role.value, who.client, access, key)
            seqs.append(seq)
            previous_hashes.append(previous)
            hashes.append(digest)
            previous = digest
        # One statement for all the rows (a disclosure logs an access per item): the columns that vary as arrays.
        await conn.execute(
            "INSERT INTO access_log (seq, at, actor, role, client, action, case_id, referral_id, previous_hash,"
            " hash, scheme) SELECT s, $2, $3, $4, $5, a, c, r, p, h, $6"
            " FROM unnest($1::bigint[], $7::text[], $8::uuid[], $9::uuid[], $10::text[], $11::text[])"
            " AS t (s, a, c, r, p, h)",
            seqs,
            at,
            who.credential,
            who.role.value,
            who.client,
            HMAC_SHA256,
            [access.action for access in accesses],
            [access.case_id for access in accesses],
            [access.referral_id for access in accesses],
            previous_hashes,
            hashes,
        )

    async def record_now(self, pool: asyncpg.Pool, who: Principal, *accesses: Access) -> None:
        """A read: its own short transaction, once the data is read."""
        async with pool.acquire() as conn:
            await self.record(conn, who, *accesses)

    async def purge(self, pool: asyncpg.Pool, before: datetime) -> int:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_LOCK)
            return await self._purge(conn, before)

    @staticmethod
    async def _purge(conn: asyncpg.Connection, before: datetime) -> int:
        """Remove rows older than `before`, keeping the last removed row's seq, hash and scheme as the anchor."""
        last = await conn.fetchrow(
            "SELECT seq, hash, scheme FROM access_log WHERE at < $1 ORDER BY seq DESC LIMIT 1", before
        )
        if last is None:
            return 0
        await conn.execute(
            "INSERT INTO access_log_anchor (id, seq, hash, scheme, purged_at) VALUES (true, $1, $2, $3, now())"
            " ON CONFLICT (id) DO UPDATE"
            " SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, scheme = EXCLUDED.scheme, purged_at = now()",
            last["seq"],
            last["hash"],
            last["scheme"],
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

    async def verify(self, pool: asyncpg.Pool) -> dict[str, Any]:
        """Recompute the chain from the anchor (or the start) and hold it against the newest checkpoint: `intact`,
        the rows checked, the first broken seq (the first missing one when `truncated`) and the `reason`."""
        key = self.key
        async with pool.acquire() as conn:
            schema = await _head_schema(conn)
            # The checkpoint first, the snapshot after: every row the checkpoint covers is then in the snapshot.
            checkpoint, readable = self._checkpoint_of(schema, key)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                check = await _walk(conn, key, checkpoint)
        if check.intact and not readable:
            check.reason = CHECKPOINT_INVALID
        # The whole chain walked: what it found stands (a checkpoint walks only the newest rows: it never clears it).
        metrics.ACCESS_LOG_CHAIN_BROKEN.set(0 if check.intact and readable else 1)
        return check.answer()

    async def checkpoint(self, pool: asyncpg.Pool) -> Checkpoint | None:
        """Sign the head of the chain and keep it outside the table, once the rows added since the last checkpoint
        are found intact; the newest checkpoint, or None when the chain is broken or the last checkpoint is not
        valid (the error is logged, and what was kept stays for `verify` to report)."""
        key = self.key
        async with pool.acquire() as conn:
            schema = await _head_schema(conn)
            previous, readable = self._checkpoint_of(schema, key)
            if not readable:
                log.error("access log of %s: the last checkpoint is not valid; no checkpoint written", schema)
                metrics.ACCESS_LOG_CHAIN_BROKEN.set(1)
                return None
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                check = await _walk(conn, key, previous, since=previous)
        if not check.intact:
            log.error(
                "access log of %s: %s at seq %s; no checkpoint written", schema, check.reason, check.first_broken_seq
            )
            metrics.ACCESS_LOG_CHAIN_BROKEN.set(1)  # alerted on (deploy/prometheus/rules.yml)
            return None
        if previous is not None and (previous.seq, previous.hash) == (check.seq, check.previous):
            return previous  # nothing new
        newest = Checkpoint.signed(key, schema, check.seq, check.previous, datetime.now(UTC))
        await asyncio.to_thread(self.checkpoints.save, newest)
        log.info("access log checkpoint %s", newest.to_json())  # outside the database too, in memory-only mode
        return newest

    async def keep_checkpoints(self, pool: asyncpg.Pool, every_seconds: float) -> None:
        """Take a checkpoint now and every `every_seconds` after; a failure is logged, not fatal."""
        while True:
            try:
                await self.checkpoint(pool)
            except Exception as error:
                log.warning(
                    "access log checkpoint failed (%s); trying again in %.0fs", type(error).__name__, every_seconds
                )
            await asyncio.sleep(every_seconds)

    def _checkpoint_of(self, schema: str, key: bytes) -> tuple[Checkpoint | None, bool]:
        """The newest checkpoint of `schema` if valid, and whether what is kept (if anything) is valid."""
        try:
            checkpoint = self.checkpoints.latest(schema)
        except ValueError:
            return None, False
        if checkpoint is None:
            return None, True
        if checkpoint.schema != schema or not checkpoint.valid(key):
            return None, False
        return checkpoint, True


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
