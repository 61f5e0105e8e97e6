"""intake's HTTP API: staff submit, read and erase cases and keep each case's consent ledger; the agency gateway and
notify are disclosed the personal items their purpose needs. Every read and write is access-logged; auditors read
the log (kit.access_log_api)."""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import httpx
from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response, status
from fastapi import Path as PathParam
from kit.access_log import Access, Instant
from kit.auth import Principal, Role, issue_token, refuse
from kit.deps import AccessLogDep, PoolDep, ServiceDep, StaffDep, SupervisorDep, provided
from kit.http import Problem
from pydantic import BaseModel, ConfigDict
from schemas.catalogue import Catalogue, CatalogueError, load_catalogue
from schemas.events import CaseDetails, utc_now
from schemas.vocab import CaseClosedReason, WithdrawalScope

from . import consent_storage, storage
from .cases import erase_case, submit_case
from .closing import close_case, destroyed_cases
from .consent_ledger import Action, Entry, check_override, check_withdrawal, current, notice_for
from .consents import (
    ConsentGiven,
    Override,
    change_consent,
    entry_json,
    open_case,
    record_given_with_case,
    state_json,
)
from .crypto import Keyring
from .disclosure import GATEWAY, NOTIFY, DisclosureBatch, DisclosureRequest, contact_of, disclose, disclose_batch
from .settings import IntakeSettings

AgencyPath = Annotated[str, PathParam(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]


_load_catalogue = functools.cache(load_catalogue)


def catalogue_of(directory: Path) -> Callable[[], Catalogue]:
    """The agency catalogue, read once when first needed: intake needs it only for the consent notices, and a
    service that cannot read it refuses to record consents (503) rather than record them without their notice."""

    def catalogue() -> Catalogue:
        try:
            return _load_catalogue(directory)
        except CatalogueError:
            raise Problem(503, "intake cannot read the agency catalogue, so it records no consent now") from None

    return catalogue


@dataclass(frozen=True)
class Intake:
    """What intake's routes read besides the database: its settings, its keyring (None without CASE_KEYS) and the
    agency catalogue (read when first needed), from main.py."""

    settings: IntakeSettings
    keyring: Keyring | None
    catalogue: Callable[[], Catalogue]

    def encryption(self) -> Keyring:
        if self.keyring is None:
            raise Problem(503, "intake has no encryption keys configured (CASE_KEYS), so it stores and reads no case")
        return self.keyring


IntakeDep = Annotated[Intake, Depends(provided(Intake))]

router = APIRouter()


# --- cases: staff (caseworkers, supervisors) submit and read the centre's cases ---------------------------------


@router.post("/cases", status_code=status.HTTP_201_CREATED, tags=["cases"])
async def submit(
    details: CaseDetails,
    response: Response,
    who: StaffDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    intake: IntakeDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Record a case once; it is routed to agencies in the background. Safe to retry with an Idempotency-Key."""
    details = with_overrides_decided_by(details, who)
    agencies = intake.catalogue()  # the notices the consents given with the case go into the consent ledger with

    async def log_creation(conn: asyncpg.Connection, case_id: UUID) -> None:
        await access_log.record(conn, who, Access("case.create", case_id))
        await record_given_with_case(conn, case_id, details.consents, who, agencies)

    submission = await submit_case(pool, details, idempotency_key, also=log_creation, keyring=intake.encryption())
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


@router.get("/cases/{case_id}", tags=["cases"])
async def read(
    case_id: UUID, who: StaffDep, pool: PoolDep, access_log: AccessLogDep, intake: IntakeDep
) -> dict[str, Any]:
    case = await storage.load_case(pool, case_id, intake.encryption())
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


@router.post("/cases/preview", tags=["cases"])
async def preview(details: CaseDetails, who: StaffDep, intake: IntakeDep) -> Any:
    """The agencies routing would choose for this case, why, and each one's consent notice — before submitting."""
    settings = intake.settings
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


@router.delete("/cases/{case_id}", tags=["cases"])
async def erase(case_id: UUID, who: SupervisorDep, pool: PoolDep, access_log: AccessLogDep) -> dict[str, Any]:
    """Erase a case on request (supervisors): its data key is destroyed, so its personal data can never be
    decrypted again, and `case.erased` tells every service to purge what it holds. Then the case answers 410."""

    async def log_erasure(conn: asyncpg.Connection, erased: UUID) -> None:
        await access_log.record(conn, who, Access("case.erase", erased))

    event = await erase_case(pool, case_id, also=log_erasure)
    if event is None:
        exists, _ = await storage.erased_at(pool, case_id)
        if not exists:
            raise Problem(404, f"no case {case_id}")
        raise Problem(410, f"case {case_id} was erased already", title="Erased")
    return {"case_id": str(case_id), "status": "erased", "erased_at": event.erased_at}


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


# --- the consent ledger: read a case's consents, record one with the notice shown, withdraw, override ------------


class Withdrawal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: WithdrawalScope = WithdrawalScope.all


@router.get("/cases/{case_id}/consents", tags=["consents"])
async def read_consents(case_id: UUID, who: StaffDep, pool: PoolDep, access_log: AccessLogDep) -> dict[str, Any]:
    """Where each agency's consent stands now, and every entry of the ledger that led there."""
    async with pool.acquire() as conn, conn.transaction():
        await open_case(conn, case_id, lock=False)
        history = await consent_storage.entries(conn, case_id)
        await access_log.record(conn, who, Access("consent.read", case_id))
    return {
        "case_id": str(case_id),
        "agencies": [state_json(s) for s in current(history).values()],
        "history": [entry_json(e) for e in history],
    }


@router.post("/cases/{case_id}/consents", status_code=status.HTTP_201_CREATED, tags=["consents"])
async def record_consent(
    case_id: UUID, given: ConsentGiven, who: StaffDep, pool: PoolDep, access_log: AccessLogDep, intake: IntakeDep
) -> dict[str, Any]:
    """Record the victim's answer to an agency's notice; the ledger keeps the notice as the catalogue has it."""
    agency = intake.catalogue().agencies.get(given.agency_id)
    if agency is None:
        unknown = {"loc": "body.agency_id", "msg": "no such agency in the catalogue", "type": "unknown_agency"}
        raise Problem(422, f"no agency {given.agency_id} in the catalogue", errors=[unknown])
    notice = notice_for(agency)
    if given.notice is not None and given.notice.model_dump() != agency.consent_notice.model_dump():
        raise Problem(409, f"the notice shown is not the catalogue's current notice for {agency.id}: show it again")
    entry = Entry(
        agency.id,
        Action.grant,
        who.credential,
        utc_now(),
        granted=given.granted,
        sensitive_granted=given.sensitive_granted,
        notice=notice,
    )
    return await change_consent(pool, access_log, who, case_id, entry, lambda _: None)


@router.post("/cases/{case_id}/consents/{agency_id}/withdraw", tags=["consents"])
async def withdraw_consent(
    case_id: UUID,
    agency_id: AgencyPath,
    who: StaffDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    withdrawal: Annotated[Withdrawal | None, Body()] = None,
) -> dict[str, Any]:
    """The victim withdraws their consent (scope `all`: the agency's open referrals are cancelled and it is told),
    or only the one for sensitive items (`sensitive`: they are not provided from now on)."""
    scope = (withdrawal or Withdrawal()).scope
    entry = Entry(agency_id, Action.withdraw, who.credential, utc_now(), scope=scope)
    return await change_consent(pool, access_log, who, case_id, entry, lambda state: check_withdrawal(state, scope))


@router.post("/cases/{case_id}/consents/{agency_id}/override", status_code=status.HTTP_201_CREATED, tags=["consents"])
async def override_consent(
    case_id: UUID,
    agency_id: AgencyPath,
    basis: Override,
    who: SupervisorDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    intake: IntakeDep,
) -> dict[str, Any]:
    """Provide the data to the agency without consent (PIPA Art. 18(2)): supervisors only, with the legal basis
    and the reason recorded. Sensitive items still need their own consent."""
    if agency_id not in intake.catalogue():
        raise Problem(404, f"no agency {agency_id} in the catalogue")
    entry = Entry(
        agency_id,
        Action.override,
        who.credential,
        utc_now(),
        legal_basis=basis.legal_basis,
        decided_by=who.credential,
        reason=basis.reason,
    )
    return await change_consent(pool, access_log, who, case_id, entry, check_override)


# --- disclosures: the personal items another service's purpose needs, to that service only ----------------------


@router.post("/cases/{case_id}/disclosures", tags=["disclosures"])
async def disclosures(
    case_id: UUID,
    body: DisclosureRequest,
    request: Request,
    who: ServiceDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    intake: IntakeDep,
) -> Any:
    """The gateway's copy of the personal items one agency may receive, to deliver its referral; only the items
    asked for (routing chose them by the catalogue and the consents) and that the case holds."""
    only(request, who, GATEWAY)
    return await disclose(pool, access_log, who, intake.encryption(), case_id, body)


@router.post("/cases/{case_id}/disclosures/batch", tags=["disclosures"])
async def disclosure_batch(
    case_id: UUID,
    body: DisclosureBatch,
    request: Request,
    who: ServiceDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    intake: IntakeDep,
) -> Any:
    """Version 1. The personal items of several agencies' referrals of one case in one call, for the gateway to
    deliver them: each referral answered on its own, as `POST /cases/{case_id}/disclosures` would (`status` 200 with
    its `items`, or 409 with the problem's `title` and `detail` when that agency has no consent now), each agency's
    items access-logged (a row per agency and item), all in one transaction. 404 or 410 when the case is missing or
    erased: nothing of it goes to any agency."""
    only(request, who, GATEWAY)
    return await disclose_batch(pool, access_log, who, intake.encryption(), case_id, body)


@router.get("/cases/{case_id}/contact", tags=["disclosures"])
async def contact(
    case_id: UUID, request: Request, who: ServiceDep, pool: PoolDep, access_log: AccessLogDep, intake: IntakeDep
) -> Any:
    """The victim's contact rules and the address of their safe channel, for notify to send one notice."""
    only(request, who, NOTIFY)
    return await contact_of(pool, access_log, who, intake.encryption(), case_id)


def only(request: Request, who: Principal, service: str) -> None:
    """Each disclosure is for one service's purpose: another service's credential is refused (and logged)."""
    if who.subject != service:
        raise refuse(request, 403, "wrong_service", f"this disclosure is for the {service} service only", who)


# --- closing: the case's referrals end, its personal data is kept for the retention period and then destroyed ----


class Closing(BaseModel):
    """Why the case is closed: a code; who closed it comes from the credential."""

    model_config = ConfigDict(extra="forbid")

    reason: CaseClosedReason


@router.post("/cases/{case_id}/close", tags=["cases"])
async def close(
    case_id: UUID, closing: Closing, who: StaffDep, pool: PoolDep, access_log: AccessLogDep, intake: IntakeDep
) -> dict[str, Any]:
    """Close the case: its open referrals are cancelled and the agencies told, its pending needs end, and its
    personal data is destroyed when the retention period after closing ends."""
    settings = intake.settings
    async with pool.acquire() as conn, conn.transaction():
        event = await close_case(
            conn, case_id, closing.reason, who, settings.case_retention, settings.case_retention_by_crime_type
        )
        await access_log.record(conn, who, Access("case.close", case_id))
    return {
        "case_id": str(case_id),
        "status": "closed",
        "reason": event.reason,
        "closed_by": event.closed_by,
        "closed_at": event.closed_at.isoformat(),
        "retention_until": event.retention_until.isoformat(),
    }


@router.get("/retention/destroyed", tags=["cases"])
async def destroyed(
    who: SupervisorDep,
    pool: PoolDep,
    since: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """Cases whose personal data was destroyed because their retention period ended: when each was closed,
    why, when it was due and when it was destroyed. No personal data (there is none left)."""
    rows = await destroyed_cases(pool, since, limit)
    return {
        "destroyed": [
            {
                "case_id": str(r["case_id"]),
                "crime_type": r["crime_type"],
                "closed_at": r["closed_at"].isoformat(),
                "reason": r["closed_reason"],
                "retention_until": r["retention_until"].isoformat(),
                "destroyed_at": r["erased_at"].isoformat(),
            }
            for r in rows
        ]
    }
