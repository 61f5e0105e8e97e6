"""Sending acknowledgements to notify: after the agency's delay, retried with capped backoff until a final answer."""

import asyncio
import logging
import time

import httpx

from .behaviour import AckPlan
from .records import AckAttempt, AckStatus, AttemptOutcome, Records

log = logging.getLogger(__name__)

_FINAL: dict[AttemptOutcome, AckStatus] = {"ok": "sent", "conflict": "already_done", "rejected": "rejected"}


class AckSender:
    """One background task per acknowledgement; `close` cancels those still running."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        records: Records,
        *,
        notify_url: str,
        retry_seconds: float,
        first_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self._client = client
        self._records = records
        self._notify_url = notify_url.rstrip("/")
        self._retry_seconds = retry_seconds
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, agency_id: str, referral_id: str, plan: AckPlan) -> None:
        task = asyncio.create_task(self._send(agency_id, referral_id, plan), name=f"ack {referral_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
            attempt = await self._attempt(url, body)
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

    async def _attempt(self, url: str, body: dict[str, str]) -> AckAttempt:
        try:
            response = await self._client.post(url, json=body)
        except httpx.TransportError as error:
            return AckAttempt(outcome="retry", error=type(error).__name__)
        status = response.status_code
        if 200 <= status < 300:
            return AckAttempt(outcome="ok", status_code=status)
        if status == 409:
            return AckAttempt(outcome="conflict", status_code=status)
        # 404: notify has not yet read the referral's case.routed (it may lag under load), so try again later.
        if status >= 500 or status == 404:
            return AckAttempt(outcome="retry", status_code=status)
        return AckAttempt(outcome="rejected", status_code=status)
