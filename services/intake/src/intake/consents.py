"""The consent ledger's service functions (its routes are in api.py): read a case's consents, record one with the
notice the victim was shown, withdraw one (whole, or only for the sensitive items), override a missing consent on a
legal basis (supervisors), check a disclosure against it.

Every read and change is access-logged in its transaction. A withdrawal queues `consent.withdrawn` in the same
transaction as its ledger row: notify cancels the open referrals to the agency, routing never chooses it again.
"""

from collections.abc import Callable, Sequence
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from kit.access_log import Access, AccessLog
from kit.auth import Principal
from kit.errors import Conflict, Gone, NotFound
from kit.outbox import add_to_outbox
from pydantic import Field, model_validator
from schemas.catalogue import Catalogue
from schemas.events import (
    AgencyId,
    Consent,
    ConsentRecorded,
    ConsentWithdrawn,
    Contract,
    PersonalItem,
    ShortText,
    utc_now,
)
from schemas.topics import CONSENT_RECORDED, CONSENT_WITHDRAWN
from schemas.vocab import LegalBasis

from . import consent_storage
from .consent_ledger import (
    Action,
    Answer,
    ConsentState,
    Entry,
    Forbidden,
    Refusal,
    as_consent,
    current,
    disclosable,
    notice_for,
)


class NoticeShown(Contract):
    """The catalogue's notice as the caseworker showed it (the routing preview's `consent_notice`)."""

    purpose: Annotated[str, Field(min_length=1, max_length=1000)]
    items: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(min_length=1, max_length=50)]
    retention: Annotated[str, Field(min_length=1, max_length=500)]


class ConsentGiven(Contract):
    """The victim's answer to one agency's notice: consent to provide their data, and apart for sensitive items."""

    agency_id: AgencyId
    granted: bool
    sensitive_granted: bool = False
    notice: NoticeShown | None = None  # when given, it must be the catalogue's current notice for the agency

    @model_validator(mode="after")
    def _sensitive_only_with_consent(self) -> "ConsentGiven":
        if self.sensitive_granted and not self.granted:
            raise ValueError("sensitive_granted needs granted: sensitive items go only with the consent itself")
        return self


class Override(Contract):
    """Providing the data without consent (PIPA Art. 18(2)): on which legal basis, and why."""

    legal_basis: LegalBasis
    reason: ShortText


async def record_given_with_case(
    conn: asyncpg.Connection, case_id: UUID, consents: Sequence[Consent], who: Principal, catalogue: Catalogue
) -> None:
    """Put the consents submitted with a case in the ledger, each with its agency's catalogue notice (none if the
    agency is not in the catalogue), and an override where one came with it. Call in the case's transaction."""
    at = utc_now()
    entries: list[Entry] = []
    for consent in consents:
        agency = catalogue.agencies.get(consent.agency_id)
        entries.append(
            Entry(
                consent.agency_id,
                Action.grant,
                who.credential,
                at,
                granted=consent.granted,
                sensitive_granted=consent.granted and consent.sensitive_granted,
                notice=None if agency is None else notice_for(agency),
            )
        )
        if consent.override is not None:
            override = consent.override
            entries.append(
                Entry(
                    consent.agency_id,
                    Action.override,
                    who.credential,
                    at,
                    legal_basis=override.legal_basis,
                    decided_by=who.credential,  # never the body's word (api.with_overrides_decided_by)
                    reason=override.reason,
                )
            )
    await consent_storage.append(conn, case_id, *entries)


async def check_disclosure(
    conn: asyncpg.Connection | asyncpg.Pool, case_id: UUID, agency_id: str, items: Sequence[PersonalItem]
) -> list[PersonalItem]:
    """The items the agency may be given now (sensitive ones dropped without their consent), or a 409 problem when
    its consent is withdrawn, refused or missing and no override was recorded."""
    state = current(await consent_storage.entries(conn, case_id, agency_id)).get(agency_id)
    return disclosure_allowed(state, agency_id, items)


def disclosure_allowed(state: ConsentState | None, agency_id: str, items: Sequence[PersonalItem]) -> list[PersonalItem]:
    """`check_disclosure` on the agency's consent state already read."""
    try:
        return disclosable(state, items)
    except Refusal as refusal:
        title = "Consent withdrawn" if refusal.answer is Answer.withdrawn else "No consent"
        raise Conflict(f"{refusal} for {agency_id}", title=title) from None


async def open_case(conn: asyncpg.Connection, case_id: UUID, *, lock: bool = True) -> None:
    """The case exists and is not erased (404, 410 otherwise); `lock` holds it to the transaction's end."""
    exists, erased_at = await consent_storage.case_standing(conn, case_id, lock=lock)
    if not exists:
        raise NotFound(f"no case {case_id}")
    if erased_at is not None:
        raise Gone(f"case {case_id} was erased on request", title="Erased")


async def state_of(conn: asyncpg.Connection, case_id: UUID, agency_id: str) -> ConsentState:
    return current(await consent_storage.entries(conn, case_id, agency_id)).get(agency_id, ConsentState(agency_id))


async def change_consent(
    pool: asyncpg.Pool,
    access_log: AccessLog,
    who: Principal,
    case_id: UUID,
    entry: Entry,
    check: Callable[[ConsentState], None],
) -> dict[str, Any]:
    """Append `entry` if the agency's consent allows it (409 otherwise), access-logged, in one transaction; a
    withdrawal queues `consent.withdrawn` in the same transaction, a consent given or an override recorded
    `consent.recorded` (routing may now take a need it could not)."""
    async with pool.acquire() as conn, conn.transaction():
        await open_case(conn, case_id)
        before = await state_of(conn, case_id, entry.agency_id)
        try:
            check(before)
        except Forbidden as forbidden:
            raise Conflict(str(forbidden)) from None
        await consent_storage.append(conn, case_id, entry)
        if entry.action is Action.withdraw:
            assert entry.scope is not None
            withdrawn = ConsentWithdrawn(
                case_id=case_id,
                producer="intake",
                agency_id=entry.agency_id,
                scope=entry.scope,
                withdrawn_at=entry.recorded_at,
            )
            await add_to_outbox(conn, CONSENT_WITHDRAWN, withdrawn)
        await access_log.record(conn, who, Access(f"consent.{entry.action}", case_id))
        after = await state_of(conn, case_id, entry.agency_id)
        if entry.action is not Action.withdraw:
            recorded = ConsentRecorded(
                case_id=case_id, producer="intake", consent=as_consent(after), recorded_at=entry.recorded_at
            )
            await add_to_outbox(conn, CONSENT_RECORDED, recorded)
    return {"case_id": str(case_id), "recorded": entry_json(entry), "consent": state_json(after)}


def entry_json(entry: Entry) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "agency_id": entry.agency_id,
        "action": entry.action.value,
        "recorded_by": entry.recorded_by,
        "recorded_at": entry.recorded_at.isoformat(),
    }
    if entry.action is Action.grant:
        shown |= {
            "granted": entry.granted,
            "sensitive_granted": entry.sensitive_granted,
            "notice": None if entry.notice is None else entry.notice.model_dump(mode="json"),
        }
    elif entry.action is Action.withdraw:
        shown |= {"scope": None if entry.scope is None else entry.scope.value}
    else:
        shown |= {
            "legal_basis": None if entry.legal_basis is None else entry.legal_basis.value,
            "decided_by": entry.decided_by,
            "reason": entry.reason,
        }
    return shown


def state_json(state: ConsentState) -> dict[str, Any]:
    return {
        "agency_id": state.agency_id,
        "consent": state.consent.value,
        "sensitive": state.sensitive.value,
        "may_provide": state.may_provide,
        "may_provide_sensitive": state.may_provide_sensitive,
        "notice": None if state.notice is None else state.notice.model_dump(mode="json"),
        "override": None if state.override is None else entry_json(state.override),
        "changed_at": None if state.changed_at is None else state.changed_at.isoformat(),
    }
