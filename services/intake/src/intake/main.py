"""The intake service: HTTP API for staff, the consent ledger, the outbox relay publishing case.submitted,
case.erased, consent.withdrawn and case.closed, and the destruction of closed cases whose retention ended."""

from fastapi import FastAPI
from kit.app import service_app
from kit.loops import every
from kit.runtime import ServiceRuntime
from schemas.topics import CASE_CLOSED, CASE_ERASED, CASE_SUBMITTED, CONSENT_RECORDED, CONSENT_WITHDRAWN

from .api import Intake, catalogue_of, router
from .closing import destroy_expired
from .settings import IntakeSettings


def create_app(settings: IntakeSettings) -> FastAPI:
    runtime = ServiceRuntime(settings)
    runtime.produces(CASE_SUBMITTED, CASE_ERASED, CONSENT_WITHDRAWN, CONSENT_RECORDED, CASE_CLOSED)

    async def destroy_round() -> int:
        return await destroy_expired(runtime.pool, runtime.access_log)

    intake = Intake(settings, settings.keyring(), catalogue_of(settings.catalogue_dir))
    # Closed cases whose retention ended: destroyed at start (if due meanwhile) and then as they fall due.
    retention = [lambda: every(settings.retention_poll_seconds, destroy_round, "retention")]
    return service_app("Intake", runtime, router, provides=[intake], loops=retention)
