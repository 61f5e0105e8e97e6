"""Sending queued notices through their channels: each claimed by one replica, retried with backoff, then given up.

A notice is queued in the transaction that decided it, so none is lost; it is sent at least once (a crash between
the channel accepting it and the commit sends it again). A victim notice is queued without an address: intake gives
it, with the victim's current rules, just before the send, and it lives only in memory for that send.
"""

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

import asyncpg
from kit.backoff import backoff
from kit.logs import log_context

from . import storage
from .channels import Channel, ChannelNotConfigured, Message
from .contacts import CaseGone, IntakeContacts, IntakeUnavailable
from .notices import Recipient, next_safe_moment, withheld_now

log = logging.getLogger(__name__)

# How long a claimed notice is held by the replica that claimed it: longer than any one send can take (a channel's
# own timeout), after which a notice whose sender died is due again.
CLAIM_LEASE_SECONDS = 300.0


# A failed notice is tried again after a delay doubling from `retry_base_seconds`, at most this long.
MAX_RETRY_SECONDS = 3600.0


async def send_due_notices(
    pool: asyncpg.Pool,
    channels: Mapping[str, Channel],
    contacts: IntakeContacts,
    *,
    max_attempts: int = 6,
    retry_base_seconds: float = 5.0,
    batch: int = 20,
    lease_seconds: float = CLAIM_LEASE_SECONDS,
) -> int:
    """Send the notices due now that no other replica holds; how many were handled.

    The batch is claimed (and committed) first; each notice is then sent and its outcome committed on its own, so
    a crash in the middle of a batch sends again at most the one notice that was in flight."""
    due = await storage.claim_due_notices(pool, batch, lease_seconds)
    for notice in due:
        with log_context(notice_id=notice["id"]):
            async with pool.acquire() as conn, conn.transaction():
                await _send(conn, channels, contacts, notice, max_attempts, retry_base_seconds)
    return len(due)


async def _send(
    conn: asyncpg.Connection,
    channels: Mapping[str, Channel],
    contacts: IntakeContacts,
    notice: asyncpg.Record,
    max_attempts: int,
    retry_base_seconds: float,
) -> None:
    channel_name, address = notice["channel"], notice["address"]
    if notice["recipient"] == Recipient.victim:
        try:
            contact = await contacts.victim_address(notice["case_id"])
        except CaseGone as gone:
            await storage.notice_withheld(conn, notice["id"], gone.reason)
            log.info("victim notice withheld: %s", gone.reason)
            return
        except IntakeUnavailable as unavailable:
            await _failed(conn, notice, str(unavailable), max_attempts, retry_base_seconds)
            return
        withheld = withheld_now(contact)
        if withheld is not None:
            await storage.notice_withheld(conn, notice["id"], withheld)
            log.info("victim notice withheld: %s", withheld)
            return
        # Safe hours at the moment of sending, not of queueing: retries or a backlog may have carried it past them.
        now = datetime.now(UTC)
        opens = next_safe_moment(now, contact.safe_hours)
        if opens > now:
            await storage.notice_postponed(conn, notice["id"], opens)
            log.info("victim notice held until the victim's safe hours open")
            return
        # The victim's safe channel now, which may differ from the one named when the notice was queued.
        channel_name, address = contact.channel, contact.address
    channel = channels.get(channel_name)
    if channel is None or address is None:
        await storage.notice_not_sent(conn, notice["id"], f"no channel {channel_name}", None, "undeliverable")
        return
    try:
        await channel.send(Message(notice["id"], address, notice["subject"], notice["body"]))
    except ChannelNotConfigured as missing:
        log.warning("notice not sent: %s", missing)
        await storage.notice_not_sent(conn, notice["id"], str(missing), None, "undeliverable")
        return
    except Exception as error:
        # The error's type only: an SMTP server's message may quote the address.
        await _failed(conn, notice, type(error).__name__, max_attempts, retry_base_seconds)
        return
    await storage.notice_sent(conn, notice["id"], channel_name)
    log.info("notice sent by %s", channel_name)


async def _failed(
    conn: asyncpg.Connection, notice: asyncpg.Record, reason: str, max_attempts: int, retry_base_seconds: float
) -> None:
    """A failed attempt: tried again after a growing delay, until `max_attempts`; then the notice has failed."""
    attempts = notice["attempts"] + 1
    retry = None if attempts >= max_attempts else backoff(attempts, retry_base_seconds, MAX_RETRY_SECONDS)
    log.warning("notice not sent (attempt %d, %s); %s", attempts, reason, "retrying" if retry else "giving up")
    await storage.notice_not_sent(conn, notice["id"], reason, retry)
