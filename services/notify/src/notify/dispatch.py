"""Sending queued notices through their channels: each claimed by one replica, retried with backoff, then given up.

A notice is queued in the transaction that decided it, so none is lost; it is sent at least once (a crash between
the channel accepting it and the commit sends it again).
"""

import logging
from collections.abc import Mapping

import asyncpg
from kit.logs import log_context

from . import storage
from .channels import Channel, ChannelNotConfigured, Message

log = logging.getLogger(__name__)


def retry_delay(attempts: int, base_seconds: float) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling, capped at an hour."""
    return float(min(3600.0, base_seconds * 2 ** max(0, attempts - 1)))


async def send_due_notices(
    pool: asyncpg.Pool,
    channels: Mapping[str, Channel],
    *,
    max_attempts: int = 6,
    retry_base_seconds: float = 5.0,
    batch: int = 20,
) -> int:
    """Send the notices due now that no other replica holds; how many were handled."""
    async with pool.acquire() as conn, conn.transaction():
        due = await storage.claim_due_notices(conn, batch)
        for notice in due:
            with log_context(notice_id=notice["id"]):
                await _send(conn, channels, notice, max_attempts, retry_base_seconds)
        return len(due)


async def _send(
    conn: asyncpg.Connection,
    channels: Mapping[str, Channel],
    notice: asyncpg.Record,
    max_attempts: int,
    retry_base_seconds: float,
) -> None:
    channel = channels.get(notice["channel"])
    if channel is None:
        await storage.notice_not_sent(conn, notice["id"], f"no channel {notice['channel']}", None, "undeliverable")
        return
    message = Message(notice["id"], notice["address"], notice["subject"], notice["body"])
    try:
        await channel.send(message)
    except ChannelNotConfigured as missing:
        log.warning("notice not sent: %s", missing)
        await storage.notice_not_sent(conn, notice["id"], str(missing), None, "undeliverable")
        return
    except Exception as error:
        attempts = notice["attempts"] + 1
        # The error's type only: an SMTP server's message may quote the address.
        reason = type(error).__name__
        retry = None if attempts >= max_attempts else retry_delay(attempts, retry_base_seconds)
        log.warning("notice not sent (attempt %d, %s); %s", attempts, reason, "retrying" if retry else "giving up")
        await storage.notice_not_sent(conn, notice["id"], reason, retry)
        return
    await storage.notice_sent(conn, notice["id"])
    log.info("notice sent by %s", notice["channel"])
