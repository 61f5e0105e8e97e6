"""Personal data leaves intake only here, item by item, to a named service for a named purpose, each read
access-logged (PIPA safety measures Art. 8). Nothing personal travels on Kafka: events carry a case's facts and
which personal items it holds (`CaseFacts`), and

- the agency gateway fetches the items an agency may receive when it delivers that agency's referral
  (`POST /cases/{id}/disclosures`);
- notify fetches the victim's safe-channel address when it sends the victim a notice (`GET /cases/{id}/contact`).

After erasure both answer 410: the data key is gone, so nothing can be disclosed any more.
"""

from collections.abc import Callable
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Request
from kit.access_log import Access, AccessLog
from kit.auth import Principal, Role, refuse, require
from kit.http import Problem
from pydantic import BaseModel, ConfigDict, Field
from schemas.events import PERSONAL_ITEMS, AgencyId, CaseDetails, ContactRules, PersonalItem

from . import storage
from .consents import check_disclosure
from .crypto import Keyring

GATEWAY = "agency-gateway"
NOTIFY = "notify"


class DisclosureRequest(BaseModel):
    """Which personal items of the case the gateway needs to deliver one agency's referral."""

    model_config = ConfigDict(extra="forbid")

    referral_id: UUID
    agency_id: AgencyId
    items: Annotated[list[PersonalItem], Field(min_length=1, max_length=len(PERSONAL_ITEMS))]


def disclosure_routes(access_log: AccessLog, keyring: Callable[[], Keyring]) -> APIRouter:
    router = APIRouter(tags=["disclosures"])
    service = Depends(require(Role.service))

    @router.post("/cases/{case_id}/disclosures")
    async def disclose(case_id: UUID, body: DisclosureRequest, request: Request, who: Principal = service) -> Any:
        """The gateway's copy of the personal items one agency may receive, to deliver its referral; only the items
        asked for (routing chose them by the catalogue and the consents) and that the case holds."""
        only(request, who, GATEWAY)
        pool: asyncpg.Pool = request.app.state.runtime.pool
        case = await open_case(pool, case_id, keyring())
        values = case.personal_values()
        # The consent ledger decides last: 409 once consent is withdrawn (no override); sensitive items need theirs.
        allowed = await check_disclosure(pool, case_id, body.agency_id, body.items)
        disclosed = {item: values[item] for item in allowed if item in values}
        await access_log.record_now(pool, who, Access(f"case.disclose:{body.agency_id}", case_id, body.referral_id))
        return {
            "case_id": str(case_id),
            "referral_id": str(body.referral_id),
            "agency_id": body.agency_id,
            "items": disclosed,
        }

    @router.get("/cases/{case_id}/contact")
    async def contact(case_id: UUID, request: Request, who: Principal = service) -> Any:
        """The victim's contact rules and the address of their safe channel, for notify to send one notice."""
        only(request, who, NOTIFY)
        pool: asyncpg.Pool = request.app.state.runtime.pool
        case = await open_case(pool, case_id, keyring())
        rules = case.victim.contact_rules
        channel = None if rules is None or rules.do_not_contact else rules.safe_channel
        address = {"email": case.victim.email, "sms": case.victim.phone, None: None}[channel]
        await access_log.record_now(pool, who, Access("case.contact", case_id))
        return {
            "do_not_contact": rules is not None and rules.do_not_contact,
            "channel": channel,
            "address": None if address is None else str(address),
            # notify checks them again at the very moment it sends (a notice may wait out retries or a backlog).
            "safe_hours": None
            if rules is None or rules.safe_hours is None
            else rules.safe_hours.model_dump(mode="json"),
        }

    return router


def only(request: Request, who: Principal, service: str) -> None:
    """Each disclosure is for one service's purpose: another service's credential is refused (and logged)."""
    if who.subject != service:
        raise refuse(request, 403, "wrong_service", f"this disclosure is for the {service} service only", who)


async def open_case(pool: asyncpg.Pool, case_id: UUID, keyring: Keyring) -> CaseDetails:
    case = await storage.load_case(pool, case_id, keyring)
    if case is None:
        raise Problem(404, f"no case {case_id}")
    if isinstance(case, storage.ErasedCase):
        raise Problem(410, f"case {case_id} was erased on request", title="Erased")
    details: CaseDetails = case["case"]
    return details


def safe_hours_of(rules: ContactRules | None) -> dict[str, Any] | None:
    return None if rules is None or rules.safe_hours is None else rules.safe_hours.model_dump(mode="json")
