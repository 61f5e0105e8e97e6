"""Transactional outbox: events written with the business rows, published by one relay per service."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import asyncpg
from faststream.kafka import KafkaBroker
from opentelemetry import context as otel_context
from schemas.events import Envelope, decode_event, encode_event

from . import metrics
from .db import connect
from .telemetry import annotate_span, context_from_headers, current_trace_headers, tracer, untraced

log = logging.getLogger(__name__)


async def add_to_outbox(conn: asyncpg.Connection, topic: str, event: Envelope) -> None:
    """Queue `event` for `topic` inside the caller's transaction; it is published once that commits.

    The row keeps the current trace context: the relay publishes the event as part of the same trace.
    """
    annotate_span(case_id=event.case_id)
    # One round trip: the row and the relay's wake-up (delivered at commit, duplicates merged by PostgreSQL).
    await conn.execute(
        "WITH queued AS (INSERT INTO outbox (event_id, topic, key, event_type, payload, headers)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id)"
        " SELECT pg_notify(current_schema() || '_outbox', '') FROM queued",
        event.event_id,
        topic,
        str(event.case_id),
        event.type,
        encode_event(event),
        current_trace_headers(),
    )


# A case's events in the outbox (the key is the case id), found by the index `outbox_by_case` (kit migration 003).
CASE_EVENTS = "SELECT id, payload FROM outbox WHERE key = $1 ORDER BY id FOR UPDATE"


async def rewrite_case_events(conn: asyncpg.Connection, case_id: UUID, rewrite: Callable[[Envelope], Envelope]) -> int:
    """Rewrite the case's events in the outbox, sent or not — an erasure strips what they may no longer hold — and
    return how many changed. Call inside the caller's transaction. Sent rows older than the retention are gone
    already (kit/retention.py), which is as good."""
    rows = await conn.fetch(CASE_EVENTS, str(case_id))
    changed = 0
    for row in rows:
        payload = bytes(row["payload"])
        kept = encode_event(rewrite(decode_event(payload)))
        if kept != payload:
            await conn.execute("UPDATE outbox SET payload = $2 WHERE id = $1", row["id"], kept)
            changed += 1
    return changed


class OutboxRelay:
    """Publishes unsent outbox rows in id order, then marks them sent.

    One relay per schema is active at a time (an advisory lock), so rows of one case keep their order.
    It wakes on LISTEN/NOTIFY and polls as a fallback; a failed batch is retried whole, and consumers
    drop the duplicates by event_id. Each event is published in the trace of the transaction that wrote it
    (a `<type> relay` span under the writer's span); the polling itself is not traced.
    """

    def __init__(
        self,
        dsn: str,
        schema: str,
        broker: KafkaBroker,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.broker = broker
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self.published = 0

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._run_connected()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay interrupted; reconnecting in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            else:
                backoff = 0.2

    async def _run_connected(self) -> None:
        conn = await connect(self.dsn, self.schema)
        try:
            while not await self._try_lock(conn):
                await asyncio.sleep(self.poll_seconds)
            await conn.add_listener(f"{self.schema}_outbox", self._on_notify)
            while True:
                self._wake.clear()
                await self._publish_all(conn)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            await asyncio.shield(conn.close(timeout=2))

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _try_lock(self, conn: asyncpg.Connection) -> bool:
        with untraced():
            return bool(await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"outbox:{self.schema}"))

    async def _publish_all(self, conn: asyncpg.Connection) -> None:
        """Publish unsent rows, a batch at a time, until none is left.

        Marking a batch sent and fetching the next one is one statement: one round trip per batch under load.
        """
        rows = await self._next_batch(conn, [])
        while rows:
            fetched = time.monotonic()
            await self._publish(rows)
            self._published(rows, time.monotonic() - fetched)
            rows = await self._next_batch(conn, [r["id"] for r in rows])

    async def _next_batch(self, conn: asyncpg.Connection, sent: list[int]) -> list[asyncpg.Record]:
        """Mark the rows just published as sent, and fetch the next unsent ones in id order."""
        columns = "id, topic, key, event_type, payload, headers, created_at, now() AS now"
        with untraced():
            if not sent:
                rows: list[asyncpg.Record] = await conn.fetch(
                    f"SELECT {columns} FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1", self.batch_size
                )
                return rows
            # The statement's snapshot still shows the marked rows unsent: the next batch leaves them out by id.
            rows = await conn.fetch(
                "WITH marked AS (UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[]))"
                f" SELECT {columns} FROM outbox WHERE sent_at IS NULL AND NOT id = ANY($1::bigint[])"
                " ORDER BY id LIMIT $2",
                sent,
                self.batch_size,
            )
            return rows

    def _published(self, rows: Sequence[asyncpg.Record], publishing_seconds: float) -> None:
        for row in rows:
            # On the database's clock up to the fetch (as created_at), then on this process's: no skew between them.
            delay = (row["now"] - row["created_at"]).total_seconds() + publishing_seconds
            metrics.event_published(row["event_type"], row["payload"], delay)
        self.published += len(rows)

    async def _publish(self, rows: Sequence[asyncpg.Record]) -> None:
        pending = []
        for row in rows:
            headers: dict[str, str] = row["headers"]
            # Continue the trace of the request that wrote the row, not the relay's own.
            token = otel_context.attach(context_from_headers(headers))
            try:
                with tracer.start_as_current_span(f"{row['event_type']} relay") as span:
                    span.set_attributes({"onestop.case_id": row["key"], "onestop.event_type": row["event_type"]})
                    pending.append(
                        await self.broker.publish(
                            bytes(row["payload"]),
                            row["topic"],
                            key=row["key"].encode(),
                            headers={**headers, "content-type": "application/json"},
                            no_confirm=True,
                        )
                    )
            finally:
                otel_context.detach(token)
        await asyncio.gather(*(p for p in pending if p is not None))  # the in-memory test broker confirms at once


async def outbox_backlog(pool: asyncpg.Pool) -> int:
    """How many events wait to be published (for health and metrics)."""
    return (await outbox_state(pool))[0]


async def outbox_state(pool: asyncpg.Pool) -> tuple[int, float]:
    """How many events wait to be published, and how long the oldest of them has waited (seconds)."""
    with untraced():
        row = await pool.fetchrow(
            "SELECT count(*) AS backlog, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest"
            " FROM outbox WHERE sent_at IS NULL"
        )
    assert row is not None
    return int(row["backlog"]), float(row["oldest"])
