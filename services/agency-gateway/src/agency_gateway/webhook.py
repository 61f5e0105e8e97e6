"""The webhook channel: POST the referral as JSON, the referral id as idempotency key, with retries."""

import asyncio
import logging
import random
from dataclasses import dataclass

import httpx
from schemas.catalogue import WebhookChannel
from schemas.events import ReferralRequested, encode_event

log = logging.getLogger(__name__)

# Answers worth trying again: the agency may be restarting or busy.
_TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    attempts: int
    agency_status: int | None
    reason: str


async def deliver_webhook(
    client: httpx.AsyncClient,
    channel: WebhookChannel,
    referral: ReferralRequested,
    attempts: int,
    retry_base_seconds: float,
) -> DeliveryResult:
    body = encode_event(referral)
    headers = {
        "content-type": "application/json",
        "idempotency-key": str(referral.referral_id),
        "x-onestop-event-id": str(referral.event_id),
    }
    status: int | None = None
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            answer = await client.post(str(channel.url), content=body, headers=headers, timeout=channel.timeout_seconds)
            status = answer.status_code
            if answer.is_success:
                return DeliveryResult(True, attempt, status, "accepted by the agency's endpoint")
            reason = f"the agency's endpoint answered {status}"
            if status not in _TRANSIENT_STATUSES:
                return DeliveryResult(False, attempt, status, reason)
        except httpx.HTTPError as error:
            status, reason = None, f"the agency's endpoint could not be reached ({type(error).__name__})"
        if attempt < attempts:
            delay = retry_base_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            log.warning("delivery attempt %d failed: %s; retrying in %.2fs", attempt, reason, delay)
            await asyncio.sleep(delay)
    return DeliveryResult(False, attempts, status, reason + f"; gave up after {attempts} attempts")
