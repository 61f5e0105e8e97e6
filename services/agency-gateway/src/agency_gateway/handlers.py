"""Kafka handlers per agency: deliver a referral, or retry it later from the agency's retry topic, or dead-letter it.

One consumer reads every agency's topic and retry topic, each topic in a lane of its own (kit/lanes.py), so a
slow, failing or dead agency holds up only its own referrals. A transient failure goes to the retry topic with
the time it may be tried again (exponential backoff with jitter); a permanent failure, or the last allowed attempt,
goes to the agency's DLQ with the reason in headers and emits `referral.failed`.

notify's notices about a referral (`referral.reminded`, `referral.cancelled`) come on the same topic, behind it, and
go through the agency's channel with the same retries and DLQ; a notice that cannot be delivered emits nothing and
never fails its referral. A referral whose cancellation has come through is not delivered any more.
"""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
from kit import metrics
from kit.erasure import erased_already, is_erased
from kit.inbox import first_time
from kit.lanes import current_record, record_headers
from kit.outbox import add_to_outbox
from kit.runtime import ServiceRuntime
from kit.unit_of_work import once
from schemas.catalogue import Agency
from schemas.events import (
    Envelope,
    EventRejected,
    ReferralCancelled,
    ReferralDelivered,
    ReferralFailed,
    ReferralReminded,
    ReferralRequested,
    encode_event,
)
from schemas.topics import REFERRAL_EVENTS, agency_topic, dlq_topic, retry_topic

from . import storage
from .channels import DeliveryChannel, Notice
from .domain import (
    CircuitBreaker,
    Delivered,
    Done,
    Failed,
    GiveUp,
    Outcome,
    Retry,
    RetryPolicy,
    after_attempt,
    minimise,
)
from .personal import IntakeDisclosures, NotFetched

log = logging.getLogger(__name__)

# Headers of a record on a retry topic.
RETRY_ATTEMPTS = "retry.attempts"  # delivery attempts made so far
RETRY_NOT_BEFORE = "retry.not_before"  # Unix time before which it is not tried again
RETRY_REASON = "retry.reason"

# A plugin that neither answers nor times out by itself is given up on after this long (counted as transient).
PLUGIN_GUARD_SECONDS = 120.0

# What an agency's topic carries: its referrals, and notify's notices about them.
AGENCY_TOPIC_EVENTS: tuple[type[Envelope], ...] = (ReferralRequested, ReferralReminded, ReferralCancelled)
OnAgencyTopic = ReferralRequested | Notice


def on_agency_topic(event: Envelope) -> OnAgencyTopic:
    assert isinstance(event, ReferralRequested | ReferralReminded | ReferralCancelled)  # the consumers accept no other
    return event


# The one consumer group of every agency's topics and retry topics.
DELIVERIES_CONSUMER = "agency-gateway.deliveries"


def consumer_name(agency: Agency) -> str:
    """The name the agency's deliveries are recorded under in the inbox (its own consumer group's, once)."""
    return f"agency-gateway.{agency.id}"


class AgencyDeliveries:
    """Delivering one agency's referrals through its channel, with its own retry topic and circuit breaker."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        agency: Agency,
        channel: DeliveryChannel,  # type: ignore[type-arg]
        policy: RetryPolicy,
        breaker: CircuitBreaker,
        disclosures: IntakeDisclosures,
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.runtime = runtime
        self.agency = agency
        self.channel = channel
        self.policy = policy
        self.breaker = breaker
        self.disclosures = disclosures
        self.clock = clock
        self.jitter = jitter
        self.topic = agency_topic(agency.id)
        self.retry_topic = retry_topic(self.topic)
        self.inbox = consumer_name(agency)
        self.failed_consumer = f"{self.inbox}.failed"  # inbox name under which a failure is emitted once

    def handlers(self) -> dict[str, Callable[[Envelope], Awaitable[None]]]:
        """What to do with a record of each of the agency's topics; its channel's topics and DLQ are declared."""
        self.runtime.produces(dlq_topic(self.topic), *self.channel.topics())
        self.runtime.on_stop(self.channel.close)
        return {self.topic: self.on_referral, self.retry_topic: self.on_retry}

    async def on_referral(self, event: Envelope) -> None:
        await self.handle(on_agency_topic(event), attempts_before=0, not_before=None)

    async def on_retry(self, event: Envelope) -> None:
        headers = record_headers(current_record())
        try:
            attempts_before = int(headers.get(RETRY_ATTEMPTS, "0"))
            not_before = float(headers.get(RETRY_NOT_BEFORE, "0"))
        except ValueError:
            detail = f"{RETRY_ATTEMPTS} or {RETRY_NOT_BEFORE} is not a number"
            raise EventRejected("invalid_retry_headers", detail) from None
        await self.handle(on_agency_topic(event), attempts_before, not_before)

    async def handle(self, event: OnAgencyTopic, attempts_before: int, not_before: float | None) -> None:
        if event.agency_id != self.agency.id:
            raise EventRejected("wrong_agency", f"a {event.type} for {event.agency_id} on {self.agency.id}'s topic")
        pool = self.runtime.pool
        referral_id = event.referral_id if isinstance(event, ReferralRequested) else None
        # Delivered already, erased, cancelled: one round trip for the three.
        known = await storage.standing(pool, self.inbox, event.event_id, event.case_id, referral_id)
        if known.processed:
            return
        if known.erased:
            # Erased on request: nothing more of it goes to the agency (a facts-only referral included).
            log.info("the case was erased: its %s is not delivered to %s", event.type, self.agency.id)
            return
        cancelled = known.cancelled
        if not_before is not None:
            # Only this agency's retries wait here; its main topic and every other agency go on.
            wait = min(not_before - self.clock(), self.policy.max_seconds + self.breaker.open_seconds)
            if wait > 0:
                await asyncio.sleep(wait)
                # Asked again after the wait, just before the agency is called.
                cancelled = referral_id is not None and await storage.was_cancelled(pool, referral_id)
        # Any try may have been overtaken by the referral's cancellation (a deadline breached, consent withdrawn, the
        # case closed), the first included: one deferred by an open circuit comes back with no attempt made yet.
        if cancelled:
            log.info("referral to %s cancelled before it could be delivered: not delivered", self.agency.id)
            return
        now = self.clock()
        if self.breaker.is_open(now):
            # Do not call an agency that is down: wait on the retry topic until the circuit lets a probe through.
            delay = self.breaker.open_until - now + self.policy.base_seconds * self.jitter()
            await self._retry_later(event, attempts_before, delay, "circuit open after repeated failures")
            return
        if not isinstance(event, ReferralRequested):
            await self._handle_notice(event, attempts_before)
            return
        referral = event
        outcome = await self._attempt(referral)
        if not isinstance(outcome, NotFetched):  # intake's trouble says nothing about the agency's health
            self.breaker.record(outcome, self.clock())
        attempts = attempts_before + 1
        step = after_attempt(outcome, attempts, self.policy, self.jitter())
        if isinstance(step, Done):
            assert isinstance(outcome, Delivered)
            await self._delivered(referral, outcome, attempts)
            return
        erased = await erased_already(self.runtime.pool, referral.case_id)
        await storage.record_attempt(
            self.runtime.pool, referral, self.agency.channel.type, attempts, outcome, erased=erased
        )
        if isinstance(step, Retry):
            await self._retry_later(referral, attempts, step.delay_seconds, step.reason)
        else:
            await self._give_up(referral, step, outcome.agency_status)

    async def _handle_notice(self, notice: Notice, attempts_before: int) -> None:
        """A reminder or cancellation: delivered, retried later, or dead-lettered; the referral is not touched."""
        outcome = await self._guarded(self.channel.deliver_notice(notice, encode_event(notice)))
        # A plugin that does not carry notices never called the agency: that says nothing about the agency's health.
        if not (isinstance(outcome, Failed) and not outcome.transient and outcome.agency_status is None):
            self.breaker.record(outcome, self.clock())
        attempts = attempts_before + 1
        step = after_attempt(outcome, attempts, self.policy, self.jitter())
        if isinstance(step, Retry):
            await self._retry_later(notice, attempts, step.delay_seconds, step.reason)
            return
        if isinstance(step, GiveUp):
            await self._dead_letter(notice, step, outcome.agency_status)
        # As for referrals, a failure is recorded under another inbox name: a replay from the DLQ is delivered again.
        inbox = self.inbox if isinstance(step, Done) else self.failed_consumer
        channel = self.agency.channel.type

        async def record(conn: asyncpg.Connection, notice: Notice) -> None:
            await storage.record_notice(conn, notice, channel, attempts, outcome)

        if not await once(self.runtime.pool, inbox, notice, record):
            return
        log.info("%s for %s: %s after %d attempt(s)", notice.type, self.agency.id, outcome.detail, attempts)

    async def _guarded(self, delivery: Awaitable[Outcome]) -> Outcome:
        """A plugin's answer, or a transient failure when it raises or neither answers nor times out by itself."""
        try:
            async with asyncio.timeout(PLUGIN_GUARD_SECONDS):
                return await delivery
        except TimeoutError:
            channel = self.agency.channel.type
            return Failed(f"the {channel} channel gave no answer within {PLUGIN_GUARD_SECONDS:g}s", True)
        except Exception as error:
            log.exception("the %s channel failed", self.agency.channel.type)
            return Failed(f"the {self.agency.channel.type} channel failed ({type(error).__name__})", True)

    async def _attempt(self, referral: ReferralRequested) -> Outcome:
        if self.channel.sends_personal_items:
            filled = await self.disclosures.with_items(referral)
            if isinstance(filled, NotFetched):
                return filled
            referral = filled
        sent, dropped = minimise(referral, self.agency.allowed_fields)
        if dropped:
            log.warning("fields %s are not allowed for %s and were not sent", dropped, self.agency.id)
        return await self._guarded(self.channel.deliver(sent, encode_event(sent)))

    async def _delivered(self, referral: ReferralRequested, outcome: Delivered, attempts: int) -> None:
        event = ReferralDelivered(**self._event_fields(referral, attempts), agency_status=outcome.agency_status)
        # The attempt, the outcome and the event in one transaction: the agency may answer notify at once.
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            erased = await is_erased(conn, referral.case_id)  # once: its lock holds to the commit
            await storage.record_attempt(conn, referral, event.channel, attempts, outcome, erased=erased)
            if not await first_time(conn, self.inbox, referral.event_id):
                return
            await storage.record_delivery(
                conn, event, outcome.agency_status, None, outcome.agency_answer, referral.personal_items, erased=erased
            )
            await add_to_outbox(conn, REFERRAL_EVENTS, event)
        log.info("referral delivered to %s by %s after %d attempt(s)", self.agency.id, event.channel, attempts)

    async def _retry_later(self, referral: OnAgencyTopic, attempts: int, delay: float, reason: str) -> None:
        headers = {
            RETRY_ATTEMPTS: str(attempts),
            RETRY_NOT_BEFORE: f"{self.clock() + delay:.3f}",
            RETRY_REASON: reason[:500],
        }
        await self.runtime.broker.publish(
            encode_event(referral), self.retry_topic, key=str(referral.case_id).encode(), headers=headers
        )
        log.warning("to %s: %s; next try in %.1fs (%d attempts so far)", self.agency.id, reason, delay, attempts)

    async def _give_up(self, referral: ReferralRequested, step: GiveUp, agency_status: int | None) -> None:
        await self._dead_letter(referral, step, agency_status)
        event = ReferralFailed(**self._event_fields(referral, step.attempts), reason=step.reason[:500])

        async def record_failure(conn: asyncpg.Connection, referral: ReferralRequested) -> None:
            erased = await is_erased(conn, referral.case_id)
            await storage.record_delivery(conn, event, agency_status, event.reason, erased=erased)
            await add_to_outbox(conn, REFERRAL_EVENTS, event)

        if not await once(self.runtime.pool, self.failed_consumer, referral, record_failure):
            return
        log.warning("delivery to %s failed (%s); sent to %s", self.agency.id, step.dlq_reason, dlq_topic(self.topic))

    async def _dead_letter(self, event: OnAgencyTopic, step: GiveUp, agency_status: int | None) -> None:
        record = current_record()
        headers = {
            "dlq.reason": step.dlq_reason,
            "dlq.detail": step.reason[:500],
            "dlq.source.topic": self.topic,
            "dlq.source.partition": str(record.partition),
            "dlq.source.offset": str(record.offset),
            "dlq.consumer.group": DELIVERIES_CONSUMER,
            "dlq.failed_at": datetime.now(UTC).isoformat(),
            "dlq.attempts": str(step.attempts),
            "dlq.channel": self.agency.channel.type,
        }
        if agency_status is not None:
            headers["dlq.agency_status"] = str(agency_status)
        await self.runtime.broker.publish(
            encode_event(event), dlq_topic(self.topic), key=str(event.case_id).encode(), headers=headers
        )
        metrics.dead_lettered(self.topic, step.dlq_reason)

    def _event_fields(self, referral: ReferralRequested, attempts: int) -> dict[str, object]:
        return {
            "case_id": referral.case_id,
            "producer": "agency-gateway",
            "referral_id": referral.referral_id,
            "agency_id": self.agency.id,
            "channel": self.agency.channel.type,
            "attempts": attempts,
        }
