"""HTTP routes for staff: submit a case, read it back, preview which agencies it would reach, erase it."""

from typing import Annotated, Any
from uuid import UUID

import asyncpg
import httpx
from fastapi import APIRouter, Depends, Header, Request, Response, status
from kit.access_log import Access, AccessLog, access_log_routes
from kit.auth import STAFF, Principal, Role, issue_token, require
from kit.http import Problem
from schemas.events import CaseDetails

from . import storage
from .cases import erase_case, submit_case
from .consents import catalogue_of, record_given_with_case
from .crypto import Keyring
from .disclosure import disclosure_routes
from .settings import IntakeSettings


def routes(settings: IntakeSettings) -> APIRouter:
    """Staff (caseworkers, supervisors) submit and read the centre's cases; every read and write is access-logged."""
    router = APIRouter(tags=["cases"])
    access_log = AccessLog.for_service(settings)
    staff = Depends(require(*STAFF))
    supervisor = Depends(require(Role.supervisor))
    keyring = settings.keyring()
    catalogue = catalogue_of(settings.catalogue_dir)

    def encryption() -> Keyring:
        if keyring is None:
            raise Problem(503, "intake has no encryption keys configured (CASE_KEYS), so it stores and reads no case")
        return keyring

    @router.post("/cases", status_code=status.HTTP_201_CREATED)
    async def submit(
        details: CaseDetails,
        request: Request,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
        who: Principal = staff,
    ) -> dict[str, Any]:
        """Record a case once; it is routed to agencies in the background. Safe to retry with an Idempotency-Key."""
        details = with_overrides_decided_by(details, who)
        pool = request.app.state.runtime.pool
        agencies = catalogue()  # the notices the consents given with the case go into the consent ledger with

        async def log_creation(conn: asyncpg.Connection, case_id: UUID) -> None:
            await access_log.record(conn, who, Access("case.create", case_id))
            await record_given_with_case(conn, case_id, details.consents, who, agencies)

        submission = await submit_case(pool, details, idempotency_key, also=log_creation, keyring=encryption())
        if submission.replayed:
            response.status_code = status.HTTP_200_OK
            response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = f"/cases/{submission.case_id}"
        return {
            "case_id": str(submission.case_id),
            "status": "submitted",
            "links": {
                "self": f"/cases/{submission.case_id}",
                "timeline": f"/cases/{submission.case_id}/timeline",
            },
        }

    @router.get("/cases/{case_id}")
    async def read(case_id: UUID, request: Request, who: Principal = staff) -> dict[str, Any]:
        pool = request.app.state.runtime.pool
        case = await storage.load_case(pool, case_id, encryption())
        if case is None:
            raise Problem(404, f"no case {case_id}")
        if isinstance(case, storage.ErasedCase):
            raise Problem(410, f"case {case_id} was erased on request", title="Erased")
        await access_log.record_now(pool, who, Access("case.read", case_id))
        return {
            "case_id": str(case["case_id"]),
            "submitted_at": case["submitted_at"],
            **case["case"].model_dump(mode="json"),
        }

    @router.post("/cases/preview")
    async def preview(details: CaseDetails, who: Principal = staff) -> Any:
        """The agencies routing would choose for this case, why, and each one's consent notice — before submitting."""
        headers = {"content-type": "application/json"}
        if settings.auth_secret is not None:  # intake's own service credential, short-lived
            token = issue_token(settings.auth_secret.get_secret_value(), Role.service, "intake", ttl_seconds=60)
            headers["authorization"] = f"Bearer {token}"
        try:
            async with httpx.AsyncClient(base_url=settings.routing_url, timeout=5.0) as client:
                answer = await client.post("/preview", content=details.model_dump_json(), headers=headers)
        except httpx.HTTPError:
            raise Problem(503, "routing cannot be reached for a preview; the case can still be submitted") from None
        if answer.status_code != 200:
            raise Problem(502, f"routing answered the preview with status {answer.status_code}")
        return answer.json()

    @router.delete("/cases/{case_id}")
    async def erase(case_id: UUID, request: Request, who: Principal = supervisor) -> dict[str, Any]:
        """Erase a case on request (supervisors): its data key is destroyed, so its personal data can never be
        decrypted again, and `case.erased` tells every service to purge what it holds. Then the case answers 410."""
        pool = request.app.state.runtime.pool

        async def log_erasure(conn: asyncpg.Connection, erased: UUID) -> None:
            await access_log.record(conn, who, Access("case.erase", erased))

        event = await erase_case(pool, case_id, also=log_erasure)
        if event is None:
            exists, _ = await storage.erased_at(pool, case_id)
            if not exists:
                raise Problem(404, f"no case {case_id}")
            raise Problem(410, f"case {case_id} was erased already", title="Erased")
        return {"case_id": str(case_id), "status": "erased", "erased_at": event.erased_at}

    router.include_router(disclosure_routes(access_log, encryption))
    router.include_router(access_log_routes(access_log))
    return router


def with_overrides_decided_by(details: CaseDetails, who: Principal) -> CaseDetails:
    """An override of a missing consent is a supervisor's act (PIPA Art. 18(2)): refused (403, nothing stored) in
    anyone else's submission, and always recorded as decided by the caller's credential, whatever the body says."""
    if all(consent.override is None for consent in details.consents):
        return details
    if who.role is not Role.supervisor:
        raise Problem(
            403,
            "only a supervisor may provide data without consent (an override): submit the case without it, "
            "and a supervisor records it with POST /cases/{case_id}/consents/{agency_id}/override",
        )
    decided_by = {"recorded_by": who.credential}
    consents = [
        consent
        if consent.override is None
        else consent.model_copy(update={"override": consent.override.model_copy(update=decided_by)})
        for consent in details.consents
    ]
    return details.model_copy(update={"consents": consents})
