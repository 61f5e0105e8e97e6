"""The webhook channel: an HTTP POST of the referral, signed, with the referral id as idempotency key; notices about
it (reminders, cancellations) the same way, each with its own event id as idempotency key."""

import os
import time

import httpx
from schemas.catalogue import WebhookChannel
from schemas.events import ReferralRequested

from ..signing import signature_headers
from . import ChannelSetupError, Delivered, DeliveryChannel, Failed, Notice, Outcome

# Answers worth trying again: the agency may be restarting or busy. Any other 4xx is permanent.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_ANSWER_CHARS = 2000


class WebhookDelivery(DeliveryChannel[WebhookChannel]):
    settings_model = WebhookChannel

    def __init__(self, agency_id: str, settings: WebhookChannel) -> None:
        super().__init__(agency_id, settings)
        secret = os.environ.get(settings.secret_env, "")
        if not secret:
            raise ChannelSetupError(f"the webhook secret variable {settings.secret_env} is not set")
        self._secret = secret.encode()
        # One client per agency: a slow agency holds its own connections, not everyone's.
        self._client = httpx.AsyncClient(follow_redirects=False, timeout=settings.timeout_seconds)

    async def deliver(self, referral: ReferralRequested, body: bytes) -> Outcome:
        return await self._post(body, str(referral.referral_id), referral)

    async def deliver_notice(self, notice: Notice, body: bytes) -> Outcome:
        """To the same endpoint as referrals: `X-Onestop-Event-Type` (and the body's `type`) tell them apart."""
        return await self._post(body, str(notice.event_id), notice)

    async def _post(self, body: bytes, idempotency_key: str, event: ReferralRequested | Notice) -> Outcome:
        headers = {
            "content-type": "application/json",
            "idempotency-key": idempotency_key,
            "x-onestop-event-id": str(event.event_id),
            "x-onestop-event-type": event.type,
            **signature_headers(self._secret, int(time.time()), body),
        }
        try:
            answer = await self._client.post(str(self.settings.url), content=body, headers=headers)
        except httpx.TimeoutException:
            return Failed(f"the agency's endpoint did not answer within {self.settings.timeout_seconds:g}s", True)
        except httpx.HTTPError as error:
            return Failed(f"the agency's endpoint could not be reached ({type(error).__name__})", True)
        status = answer.status_code
        if answer.is_success:
            return Delivered(f"accepted by the agency's endpoint ({status})", status, answer.text[:MAX_ANSWER_CHARS])
        return Failed(f"the agency's endpoint answered {status}", status in TRANSIENT_STATUSES, status)

    async def close(self) -> None:
        await self._client.aclose()
