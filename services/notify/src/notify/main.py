"""The notify service: consumes referral.events, case.submitted, case.erased and every agency's acknowledgement
topic; serves acknowledgements, case states and timelines; fires deadline timers and sends notices in the
background (a victim's address asked of intake at each send)."""

import logging
from datetime import timedelta

import asyncpg
from fastapi import FastAPI
from kit.app import service_app
from kit.loops import every
from kit.messaging import source_topic
from kit.runtime import ServiceRuntime
from schemas.calendar import HOLIDAYS_FILE, read_public_holidays
from schemas.catalogue import load_catalogue
from schemas.events import CaseClosed, CaseErased, CaseSubmitted, CaseSubmittedV1, ConsentWithdrawn, Envelope
from schemas.topics import (
    CASE_CLOSED,
    CASE_ERASED,
    CASE_SUBMITTED,
    CONSENT_WITHDRAWN,
    REFERRAL_EVENTS,
    REFERRAL_REROUTING,
    ack_topic,
    agency_topic,
)

from .api import router
from .channels import Channel, EmailChannel, LogOnlySms, SmsChannel
from .contacts import IntakeContacts
from .context import (
    ACKS_CONSUMER,
    AGENCY_ANSWERS,
    CASES_CONSUMER,
    CLOSED_CONSUMER,
    CONSENTS_CONSUMER,
    EVENTS_CONSUMER,
    REFERRAL_EVENT_TYPES,
    AgencyAnswer,
    Context,
)
from .dispatch import send_due_notices
from .erasure import ERASURE_CONSUMER, on_case_erased
from .events import apply_agency_ack, apply_case_submitted, apply_referral_event, on_case_closed, on_consent_withdrawn
from .report_pages import report_router
from .settings import NotifySettings
from .timers import finished_timers, fire_due_timers

log = logging.getLogger(__name__)

# How long notify's reader of referral.events gathers events into one batch (kit/batches.py, `gather_ms`).
EVENTS_GATHER_MS = 100


def create_app(settings: NotifySettings) -> FastAPI:
    catalogue = load_catalogue(settings.catalogue_dir)
    ctx = Context(
        agencies=catalogue.agencies,
        public_holidays=read_public_holidays(settings.catalogue_dir.parent / HOLIDAYS_FILE),
        hour_seconds=settings.ack_deadline_hour_seconds,
        remind_at_fraction=settings.reminder_at_fraction,
        staff_link_base=settings.staff_link_base,
        follow_up_after=timedelta(seconds=settings.follow_up_after_seconds),
    )
    channels: dict[str, Channel] = {
        "email": EmailChannel(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_sender,
            tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=None if settings.smtp_password is None else settings.smtp_password.get_secret_value(),
        ),
        "sms": SmsChannel(LogOnlySms()),
    }
    secret = None if settings.auth_secret is None else settings.auth_secret.get_secret_value()
    contacts = IntakeContacts(settings.intake_url, secret)
    runtime = ServiceRuntime(settings)

    async def handle_case(conn: asyncpg.Connection, event: Envelope) -> None:
        assert isinstance(event, CaseSubmitted | CaseSubmittedV1)  # the consumer accepts no other
        await apply_case_submitted(conn, ctx, event)

    async def handle_erasure(event: CaseErased) -> None:
        await on_case_erased(runtime.pool, event)

    async def handle_consent_withdrawn(event: ConsentWithdrawn) -> None:
        await on_consent_withdrawn(runtime.pool, ctx, event)

    async def handle_referral_event(conn: asyncpg.Connection, event: Envelope) -> None:
        await apply_referral_event(conn, ctx, event)

    agency_of_topic = {ack_topic(agency.id): agency.id for agency in catalogue}

    async def handle_ack(conn: asyncpg.Connection, event: Envelope) -> None:
        assert isinstance(event, AgencyAnswer)  # the consumer accepts AGENCY_ANSWERS only
        await apply_agency_ack(conn, ctx, agency_of_topic[source_topic()], event)

    # The busy consumers take what is waiting in batches: one transaction per batch (kit/batches.py).
    # Each of them asks whether the event's case is erased: the batch asks for all its cases at once.
    runtime.consume_batch(
        CASE_SUBMITTED,
        CASES_CONSUMER,
        (CaseSubmitted, CaseSubmittedV1),
        handle_case,
        inbox=CASES_CONSUMER,
        checks_erasure=True,
    )
    runtime.consume(CASE_ERASED, ERASURE_CONSUMER, (CaseErased,), handle_erasure)
    # referral.events is the busiest topic, and what notify does with it (the timeline, the deadlines, the notices)
    # waits on no one for a tenth of a second: its events are gathered that long per batch.
    runtime.consume_batch(
        REFERRAL_EVENTS,
        EVENTS_CONSUMER,
        REFERRAL_EVENT_TYPES,
        handle_referral_event,
        inbox=EVENTS_CONSUMER,
        checks_erasure=True,
        gather_ms=EVENTS_GATHER_MS,
    )
    runtime.consume(CONSENT_WITHDRAWN, CONSENTS_CONSUMER, (ConsentWithdrawn,), handle_consent_withdrawn)

    async def handle_case_closed(event: CaseClosed) -> None:
        await on_case_closed(runtime.pool, ctx, event)

    runtime.consume(CASE_CLOSED, CLOSED_CONSUMER, (CaseClosed,), handle_case_closed)
    # Every agency's acknowledgement topic in one consumer and one group: a refused answer goes to its own topic's
    # DLQ and the rest go on, so one consumer per agency (slow to start, idle CPU) bought nothing.
    ack_topics = sorted(agency_of_topic)
    runtime.consume_batch(
        ack_topics, ACKS_CONSUMER, AGENCY_ANSWERS, handle_ack, inbox=ACKS_CONSUMER, checks_erasure=True
    )
    # Reminders and cancellations go to the agency's own topic, behind its referrals.
    runtime.produces(REFERRAL_REROUTING, *(agency_topic(agency.id) for agency in catalogue))

    runtime.purge(finished_timers(timedelta(days=settings.timer_retention_days)))

    async def fire_timers() -> int:
        return await fire_due_timers(runtime.pool, ctx)

    async def send_notices() -> int:
        return await send_due_notices(
            runtime.pool,
            channels,
            contacts,
            max_attempts=settings.notification_attempts,
            retry_base_seconds=settings.notification_retry_seconds,
        )

    return service_app(
        "Notify",
        runtime,
        router,
        report_router,
        provides=[ctx],
        loops=[
            lambda: every(settings.timer_poll_seconds, fire_timers, "deadline timers"),
            lambda: every(settings.notification_poll_seconds, send_notices, "notices"),
        ],
    )
