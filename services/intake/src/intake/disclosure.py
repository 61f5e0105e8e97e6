"""Personal data leaves intake only here, item by item, to a named service for a named purpose, each read
access-logged (PIPA safety measures Art. 8). Nothing personal travels on Kafka: events carry a case's facts and
which personal items it holds (`CaseFacts`), and

- the agency gateway fetches the items an agency may receive when it delivers that agency's referral
  (`POST /cases/{id}/disclosures`), or those of several agencies' referrals of one case at once
  (`POST /cases/{id}/disclosures/batch`: one call and one transaction, each agency answered on its own — one
  agency's refused or withdrawn consent is its answer alone and never fails or leaks into another's);
- notify fetches the victim's safe-channel address when it sends the victim a notice (`GET /cases/{id}/contact`).

After erasure both answer 410: the data key is gone, so nothing can be disclosed any more.
"""

from collections.abc import Collection
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
from kit.access_log import Access, AccessLog
from kit.auth import Principal
from kit.errors import Conflict, Gone, NotFound
from pydantic import BaseModel, ConfigDict, Field, model_validator
from schemas.events import PERSONAL_ITEMS, AgencyId, CaseDetails, ContactRules, PersonalItem

from . import consent_storage, storage
from .consent_ledger import current
from .consents import check_disclosure, disclosure_allowed
from .crypto import Keyring

GATEWAY = "agency-gateway"
NOTIFY = "notify"


class DisclosureRequest(BaseModel):
    """Which personal items of the case the gateway needs to deliver one agency's referral."""

    model_config = ConfigDict(extra="forbid")

    referral_id: UUID
    agency_id: AgencyId
    items: Annotated[list[PersonalItem], Field(min_length=1, max_length=len(PERSONAL_ITEMS))]


# Most referrals one batch may name: a case goes to a handful of agencies.
MAX_BATCH = 32


class DisclosureBatch(BaseModel):
    """Several referrals of one case at once (the agency gateway's batch): each agency answered on its own."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    referrals: Annotated[list[DisclosureRequest], Field(min_length=1, max_length=MAX_BATCH)]

    @model_validator(mode="after")
    def _distinct(self) -> "DisclosureBatch":
        if len({asked.referral_id for asked in self.referrals}) != len(self.referrals):
            raise ValueError("each referral is named once")
        return self


def disclosure_accesses(case_id: UUID, asked: DisclosureRequest, disclosed: Collection[str]) -> list[Access]:
    """The access-log rows of one agency's disclosure: one per item given; one naming no item when none was."""
    action = f"case.disclose:{asked.agency_id}"
    if not disclosed:
        return [Access(action, case_id, asked.referral_id)]
    return [Access(f"{action}:{item}", case_id, asked.referral_id) for item in disclosed]


async def disclose(
    pool: asyncpg.Pool,
    access_log: AccessLog,
    who: Principal,
    keyring: Keyring,
    case_id: UUID,
    asked: DisclosureRequest,
) -> dict[str, Any]:
    """The personal items asked for that the agency may receive and the case holds, the read access-logged."""
    case = await open_case(pool, case_id, keyring)
    values = case.personal_values()
    # The consent ledger decides last: 409 once consent is withdrawn (no override); sensitive items need theirs.
    allowed = await check_disclosure(pool, case_id, asked.agency_id, asked.items)
    disclosed = {item: values[item] for item in allowed if item in values}
    await access_log.record_now(pool, who, *disclosure_accesses(case_id, asked, disclosed))
    return {
        "case_id": str(case_id),
        "referral_id": str(asked.referral_id),
        "agency_id": asked.agency_id,
        "items": disclosed,
    }


async def disclose_batch(
    pool: asyncpg.Pool,
    access_log: AccessLog,
    who: Principal,
    keyring: Keyring,
    case_id: UUID,
    batch: DisclosureBatch,
) -> dict[str, Any]:
    """Each referral's agency's items, as `disclose` would answer it alone, in one transaction: the case read once,
    the consent ledger read once, every agency's items access-logged (a row per agency and item). A refusal (no or
    withdrawn consent) is that referral's answer, a 409 problem in its place; the others are answered all the same.
    A missing or erased case is the whole batch's 404 or 410: no agency may get anything of it."""
    async with pool.acquire() as conn, conn.transaction():
        case = await open_case(conn, case_id, keyring)
        values = case.personal_values()
        states = current(await consent_storage.entries(conn, case_id))
        answers: list[dict[str, Any]] = []
        accesses: list[Access] = []
        for asked in batch.referrals:
            answer: dict[str, Any] = {"referral_id": str(asked.referral_id), "agency_id": asked.agency_id}
            try:
                allowed = disclosure_allowed(states.get(asked.agency_id), asked.agency_id, asked.items)
            except Conflict as refused:
                answers.append(answer | {"status": 409, "title": refused.title, "detail": refused.detail})
                continue
            disclosed = {item: values[item] for item in allowed if item in values}
            accesses += disclosure_accesses(case_id, asked, disclosed)
            answers.append(answer | {"status": 200, "items": disclosed})
        await access_log.record(conn, who, *accesses)
    return {"case_id": str(case_id), "version": 1, "disclosures": answers}


async def contact_of(
    pool: asyncpg.Pool, access_log: AccessLog, who: Principal, keyring: Keyring, case_id: UUID
) -> dict[str, Any]:
    """The victim's contact rules and their safe channel's address, the read access-logged."""
    case = await open_case(pool, case_id, keyring)
    rules = case.victim.contact_rules
    channel = None if rules is None or rules.do_not_contact else rules.safe_channel
    address = {"email": case.victim.email, "sms": case.victim.phone, None: None}[channel]
    await access_log.record_now(pool, who, Access("case.contact", case_id))
    return {
        "do_not_contact": rules is not None and rules.do_not_contact,
        "channel": channel,
        "address": None if address is None else str(address),
        # notify checks them again at the very moment it sends (a notice may wait out retries or a backlog).
        "safe_hours": None if rules is None or rules.safe_hours is None else rules.safe_hours.model_dump(mode="json"),
    }


async def open_case(pool: asyncpg.Pool | asyncpg.Connection, case_id: UUID, keyring: Keyring) -> CaseDetails:
    case = await storage.load_case(pool, case_id, keyring)
    if case is None:
        raise NotFound(f"no case {case_id}")
    if isinstance(case, storage.ErasedCase):
        raise Gone(f"case {case_id} was erased on request", title="Erased")
    details: CaseDetails = case["case"]
    return details


def safe_hours_of(rules: ContactRules | None) -> dict[str, Any] | None:
    return None if rules is None or rules.safe_hours is None else rules.safe_hours.model_dump(mode="json")
