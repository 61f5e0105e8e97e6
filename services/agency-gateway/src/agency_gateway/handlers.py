"""Kafka handler per agency: deliver a referral once, then record the outcome and emit delivered or failed."""

import asyncpg
import httpx
from kit.inbox import already_processed, first_time
from kit.outbox import add_to_outbox
from schemas.catalogue import Agency
from schemas.events import EventRejected, ReferralDelivered, ReferralFailed, ReferralRequested
from schemas.topics import REFERRAL_EVENTS

from . import storage
from .settings import GatewaySettings
from .webhook import deliver_webhook


def consumer_name(agency: Agency) -> str:
    return f"agency-gateway.{agency.id}"


async def on_referral(
    pool: asyncpg.Pool,
    client: httpx.AsyncClient,
    settings: GatewaySettings,
    agency: Agency,
    referral: ReferralRequested,
) -> None:
    if referral.agency_id != agency.id:
        raise EventRejected("wrong_agency", f"a referral for {referral.agency_id} on {agency.id}'s topic")
    consumer = consumer_name(agency)
    if await already_processed(pool, consumer, referral.event_id):
        return
    # The delivery is outside the transaction; if we crash before recording it, the agency gets it again
    # with the same idempotency key and acts once.
    result = await deliver_webhook(
        client, agency.channel, referral, settings.delivery_attempts, settings.retry_base_seconds
    )
    common = {
        "case_id": referral.case_id,
        "producer": "agency-gateway",
        "referral_id": referral.referral_id,
        "agency_id": agency.id,
        "channel": agency.channel.type,
        "attempts": result.attempts,
    }
    outcome = (
        ReferralDelivered(**common, agency_status=result.agency_status)
        if result.delivered
        else ReferralFailed(**common, reason=result.reason)
    )
    async with pool.acquire() as conn, conn.transaction():
        if not await first_time(conn, consumer, referral.event_id):
            return
        await storage.record_delivery(conn, outcome, result.agency_status, None if result.delivered else result.reason)
        await add_to_outbox(conn, REFERRAL_EVENTS, outcome)
