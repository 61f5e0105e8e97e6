"""Retention: rows that no guarantee needs any more are deleted in the background, a small batch at a time.

`ServiceRuntime` purges, in every service, the outbox's *sent* rows after `OUTBOX_RETENTION_HOURS` (an unsent row is
never touched: it is still to be published) and the inbox's event ids after `INBOX_RETENTION_DAYS` (longer than a
duplicate can still come: see `ServiceSettings`); a service adds its own (`ServiceRuntime.purge`, notify's fired
timers, say). Each batch is one short statement: it locks the rows it deletes, skipping any another transaction holds
(an erasure rewriting the case's events, another replica's purge), and checks the condition again on each row as it
deletes it.
"""

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from .db import UNAVAILABLE_ERRORS
from .telemetry import untraced

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
PAUSE_BETWEEN_BATCHES_SECONDS = 0.05


@dataclass(frozen=True)
class Purge:
    """Rows of `table` that nothing needs any more once `done` holds: an SQL condition on the table's own columns,
    with `$1` the cutoff (now, on the database's clock, minus `keep`). It must be false for every row a guarantee
    still needs, whatever its age: `sent_at < $1` is false for an unsent row (NULL)."""

    table: str
    done: str
    keep: timedelta

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", self.table):
            raise ValueError(f"not a plain table name: {self.table!r}")

    def statement(self) -> str:
        # ctid = ANY(ARRAY(...)): a TID scan of just the rows found, never a join over the table.
        return (
            f"DELETE FROM {self.table} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {self.table} WHERE {self.done} LIMIT $2 FOR UPDATE SKIP LOCKED"
            f")) AND {self.done}"
        )


def standard_purges(outbox_retention: timedelta, inbox_retention: timedelta) -> list[Purge]:
    """What every service's schema grows without end: the kit's outbox and inbox."""
    return [
        Purge("outbox", "sent_at IS NOT NULL AND sent_at < $1", outbox_retention),
        Purge("inbox", "processed_at < $1", inbox_retention),
    ]


async def purge(pool: asyncpg.Pool, what: Purge, batch_size: int = BATCH_SIZE) -> int:
    """Delete the rows `what` names, a batch at a time (each its own transaction) until none is left; how many.

    The cutoff is taken once, so the rows that come of age meanwhile wait for the next run."""
    statement = what.statement()
    deleted = 0
    with untraced():
        cutoff = await pool.fetchval("SELECT now() - $1::interval", what.keep)
        while True:
            status = await pool.execute(statement, cutoff, batch_size)
            count = int(status.split()[-1])  # "DELETE <n>"
            deleted += count
            if count < batch_size:
                return deleted
            await asyncio.sleep(PAUSE_BETWEEN_BATCHES_SECONDS)  # let the service's own statements in between


async def purge_all(pool: asyncpg.Pool, purges: list[Purge], batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """One round over `purges`; how many rows left each table. When the database cannot be reached the round stops
    quietly (the next one tries again); another failure is logged, and the other tables are still purged."""
    deleted: dict[str, int] = {}
    for what in purges:
        try:
            deleted[what.table] = await purge(pool, what, batch_size)
        except UNAVAILABLE_ERRORS as error:
            log.debug("retention purge skipped: the database is unavailable (%s)", type(error).__name__)
            break
        except Exception:
            log.exception("retention purge of %s failed", what.table)
            continue
        if deleted[what.table]:
            log.info("retention purge: %d row(s) of %s older than %s", deleted[what.table], what.table, what.keep)
    return deleted
