"""Transactional outbox: events written with the business rows, published by one relay per service."""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from faststream.kafka import KafkaBroker
from opentelemetry import context as otel_context
from schemas.events import Envelope, encode_event

from .db import connect
from .telemetry import context_from_headers, current_trace_headers

log = logging.getLogger(__name__)


async def add_to_outbox(conn: asyncpg.Connection, topic: str, event: Envelope) -> None:
    """Queue `event` for `topic` inside the caller's transaction; it is published once that commits."""
    await conn.execute(
        "INSERT INTO outbox (event_id, topic, key, event_type, payload, headers) VALUES ($1, $2, $3, $4, $5, $6)",
        event.event_id,
        topic,
        str(event.case_id),
        event.type,
        encode_event(event),
        current_trace_headers(),
    )
    await conn.execute("SELECT pg_notify(current_schema() || '_outbox', '')")


class OutboxRelay:
    """Publishes unsent outbox rows in id order, then marks them sent.

    One relay per schema is active at a time (an advisory lock), so rows of one case keep their order.
    It wakes on LISTEN/NOTIFY and polls as a fallback; a failed batch is retried whole, and consumers
    drop the duplicates by event_id.
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
            while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"outbox:{self.schema}"):
                await asyncio.sleep(self.poll_seconds)
            await conn.add_listener(f"{self.schema}_outbox", self._on_notify)
            while True:
                self._wake.clear()
                if await self._publish_batch(conn) == self.batch_size:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            await asyncio.shield(conn.close(timeout=2))

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _publish_batch(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(
            "SELECT id, topic, key, payload, headers FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1",
            self.batch_size,
        )
        if not rows:
            return 0
        await self._publish(rows)
        await conn.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        self.published += len(rows)
        return len(rows)

    async def _publish(self, rows: Sequence[asyncpg.Record]) -> None:
        pending = []
        for row in rows:
            headers: dict[str, str] = row["headers"]
            # Continue the trace of the request that wrote the row, not the relay's own.
            token = otel_context.attach(context_from_headers(headers))
            try:
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
        await asyncio.gather(*pending)


async def outbox_backlog(pool: asyncpg.Pool) -> int:
    """How many events wait to be published (for health and metrics)."""
    return int(await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
