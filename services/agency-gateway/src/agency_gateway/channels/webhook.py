"""The webhook channel: an HTTP POST of the referral, signed, with the referral id as idempotency key; notices about
it (reminders, cancellations) the same way, each with its own event id as idempotency key."""

import os
import time

import aiohttp
from schemas.catalogue import WebhookChannel
from schemas.events import ReferralRequested

from ..signing import signature_headers
from . import ChannelSetupError, Delivered, DeliveryChannel, Failed, Notice, Outcome

# Answers worth trying again: the agency may be restarting or busy. Any other 4xx is permanent.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_ANSWER_CHARS = 2000
# What is read of an agency's answer (its start is kept with the delivery): enough bytes for MAX_ANSWER_CHARS.
MAX_ANSWER_BYTES = 4 * MAX_ANSWER_CHARS
# Connections kept open to one agency's endpoint: the gateway posts to it one referral at a time per partition.
MAX_CONNECTIONS = 16


class WebhookDelivery(DeliveryChannel[WebhookChannel]):
    settings_model = WebhookChannel

    def __init__(self, agency_id: str, settings: WebhookChannel) -> None:
        super().__init__(agency_id, settings)
        secret = os.environ.get(settings.secret_env, "")
        if not secret:
            raise ChannelSetupError(f"the webhook secret variable {settings.secret_env} is not set")
        self._secret = secret.encode()
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """One session per agency, its connections kept alive: a slow agency holds its own connections, not
        everyone's. aiohttp rather than httpx: a quarter of the CPU per call (py-spy under ./dev bench, issue #15).
        Made at the first call, inside the running event loop."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=False)
        return self._session

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
            async with self._client().post(
                str(self.settings.url), data=body, headers=headers, allow_redirects=False
            ) as answer:
                status = answer.status
                text = await _start_of(answer)
        except TimeoutError:
            return Failed(f"the agency's endpoint did not answer within {self.settings.timeout_seconds:g}s", True)
        except aiohttp.ClientError as error:
            return Failed(f"the agency's endpoint could not be reached ({type(error).__name__})", True)
        if 200 <= status < 300:
            return Delivered(f"accepted by the agency's endpoint ({status})", status, text)
        return Failed(f"the agency's endpoint answered {status}", status in TRANSIENT_STATUSES, status)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _start_of(answer: aiohttp.ClientResponse) -> str:
    """The first MAX_ANSWER_CHARS of the answer's body, read no further than that: an agency's endpoint answering
    without end costs the gateway nothing more."""
    read = bytearray()
    while len(read) < MAX_ANSWER_BYTES:
        chunk = await answer.content.read(MAX_ANSWER_BYTES - len(read))
        if not chunk:
            break
        read += chunk
    try:
        text = read.decode(answer.charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        text = read.decode("utf-8", "replace")
    return text[:MAX_ANSWER_CHARS]
