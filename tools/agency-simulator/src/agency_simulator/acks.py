"""Sending acknowledgements to notify: after the agency's delay, retried with capped backoff until a final answer."""

import asyncio
import logging
import time
from collections.abc import Mapping

import aiohttp
import jwt

from .behaviour import AckPlan
from .records import AckAttempt, AckStatus, AttemptOutcome, Records

log = logging.getLogger(__name__)

_FINAL: dict[AttemptOutcome, AckStatus] = {"ok": "sent", "conflict": "already_done", "rejected": "rejected"}

# Acknowledgements in flight to notify at once: a queue of thousands makes every request's turn slower, until the
# simulator stops answering the gateway.
MAX_IN_FLIGHT = 16
# One acknowledgement's call to notify, from connecting to the whole answer.
TIMEOUT_SECONDS = 5.0


class AckSender:
    """One background task per acknowledgement; `close` cancels those still running and closes the connections.

    The calls go out through aiohttp, kept alive: a quarter of httpx's CPU per call, which was nearly half of the
    simulator's under `./dev bench` (py-spy, issue #15), on the cores the pipeline measured shares."""

    def __init__(
        self,
        records: Records,
        *,
        notify_url: str,
        retry_seconds: float,
        tokens: Mapping[str, str] | None = None,
        signing_secret: str | None = None,
        first_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self._session: aiohttp.ClientSession | None = None  # made at the first call, inside the event loop
        self._records = records
        self._notify_url = notify_url.rstrip("/")
        self._retry_seconds = retry_seconds
        self._tokens = dict(tokens or {})  # each agency answers with its own credential
        self._signing_secret = signing_secret
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    def schedule(self, agency_id: str, referral_id: str, plan: AckPlan) -> None:
        task = asyncio.create_task(self._send(agency_id, referral_id, plan), name=f"ack {referral_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.cancel_all()
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
            )
        return self._session

    async def _send(self, agency_id: str, referral_id: str, plan: AckPlan) -> None:
        try:
            await asyncio.sleep(plan.delay_seconds)
            await self._send_until_answered(agency_id, referral_id, plan)
        except asyncio.CancelledError:
            await self._records.ack_ended(agency_id, referral_id, "cancelled")
            raise

    async def _send_until_answered(self, agency_id: str, referral_id: str, plan: AckPlan) -> None:
        url = f"{self._notify_url}/referrals/{referral_id}/{plan.action}"
        body: dict[str, str] = {"agency_id": agency_id, "note": plan.note}
        if plan.reason is not None:
            body["reason"] = plan.reason.value
        deadline = time.monotonic() + self._retry_seconds
        backoff = self._first_backoff
        while True:
            attempt = await self._attempt(url, body, self._token(agency_id))
            if attempt.outcome != "retry":
                await self._records.ack_attempted(agency_id, referral_id, attempt, _FINAL[attempt.outcome])
                if attempt.outcome == "rejected":
                    log.warning(
                        "ack %s for referral %s refused by notify (%s)", plan.action, referral_id, attempt.status_code
                    )
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await self._records.ack_attempted(agency_id, referral_id, attempt, "gave_up")
                log.warning("ack %s for referral %s: notify unavailable, gave up", plan.action, referral_id)
                return
            await self._records.ack_attempted(agency_id, referral_id, attempt, "pending")
            await asyncio.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, self._max_backoff)

    def _token(self, agency_id: str) -> str | None:
        if agency_id not in self._tokens and self._signing_secret is not None:
            self._tokens[agency_id] = agency_token(self._signing_secret, agency_id)
        return self._tokens.get(agency_id)

    async def _attempt(self, url: str, body: dict[str, str], token: str | None) -> AckAttempt:
        headers = {"authorization": f"Bearer {token}"} if token is not None else {}
        try:
            async with self._in_flight, self._client().post(url, json=body, headers=headers) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            return AckAttempt(outcome="retry", error=type(error).__name__)
        if 200 <= status < 300:
            return AckAttempt(outcome="ok", status_code=status)
        if status == 409:
            return AckAttempt(outcome="conflict", status_code=status)
        # 404: notify has not yet read the referral's case.routed (it may lag under load), so try again later.
        # 429: this agency sent too much too fast.
        if status >= 500 or status in (404, 429):
            return AckAttempt(outcome="retry", status_code=status)
        return AckAttempt(outcome="rejected", status_code=status)


def agency_token(secret: str, agency_id: str, hours: float = 24.0) -> str:
    """An agency's bearer token with the claims the services check (kit.auth): as its own system would hold."""
    now = int(time.time())
    claims = {"iss": "onestop", "aud": "onestop", "sub": f"agency-{agency_id}", "role": "agency", "agency": agency_id}
    return jwt.encode({**claims, "iat": now, "exp": now + int(hours * 3600)}, secret, algorithm="HS256")
