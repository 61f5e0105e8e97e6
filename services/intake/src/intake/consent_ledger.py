"""The consent ledger, pure: per case and receiving agency, what the victim was told (PIPA Art. 17), what they agreed
to, apart for the sensitive items (Art. 23), what they withdrew (Art. 37) and what was provided without consent on a
legal basis (Art. 18(2)). Entries are only ever appended; the current state is derived from them. No I/O here."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel, ConfigDict
from schemas.catalogue import SENSITIVE_FIELDS, Agency
from schemas.events import Consent, ConsentOverride
from schemas.vocab import LegalBasis, WithdrawalScope

Item = TypeVar("Item", bound=str)

RIGHT_TO_REFUSE = "You may refuse this consent, and you may withdraw it at any time later."


class Action(StrEnum):
    grant = "grant"  # the victim answered the notice: consent given or refused, the sensitive items apart
    withdraw = "withdraw"  # the victim withdrew the whole consent, or only the one for the sensitive items
    override = "override"  # provided without consent, on a legal basis a supervisor recorded (PIPA Art. 18(2))


class Answer(StrEnum):
    granted = "granted"
    refused = "refused"
    withdrawn = "withdrawn"
    not_asked = "not_asked"


class Notice(BaseModel):
    """The notice items shown to the victim before they answered (PIPA Art. 17(2)), as the ledger keeps them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipient_id: str
    recipient: str
    purpose: str
    items: list[str]
    sensitive_items: list[str]  # asked for apart (PIPA Art. 23)
    retention: str
    right_to_refuse: str
    if_refused: str
    if_sensitive_refused: str | None = None


def notice_for(agency: Agency) -> Notice:
    """The notice of the agency's catalogue entry, with the right to refuse and what refusing means."""
    sensitive = [item for item in agency.consent_notice.items if "sensitive" in item]
    held_back = ", ".join(sorted(SENSITIVE_FIELDS & set(agency.allowed_fields)))
    return Notice(
        recipient_id=agency.id,
        recipient=f"{agency.name_en} ({agency.name_ko})",
        purpose=agency.consent_notice.purpose,
        items=list(agency.consent_notice.items),
        sensitive_items=sensitive,
        retention=agency.consent_notice.retention,
        right_to_refuse=RIGHT_TO_REFUSE,
        if_refused=f"{agency.name_en} receives none of your data and is not asked to help you.",
        if_sensitive_refused=(
            f"Only the sensitive items ({held_back}) are withheld; {agency.name_en} still receives the others."
            if held_back
            else None
        ),
    )


@dataclass(frozen=True)
class Entry:
    """One row of the ledger: who recorded what, when, for which agency."""

    agency_id: str
    action: Action
    recorded_by: str  # the credential that recorded it (`caseworker:cw-17`)
    recorded_at: datetime
    granted: bool | None = None  # grant
    sensitive_granted: bool | None = None  # grant
    notice: Notice | None = None  # grant: what the victim was shown (None: recorded before the ledger kept it)
    scope: WithdrawalScope | None = None  # withdraw
    legal_basis: LegalBasis | None = None  # override
    decided_by: str | None = None  # override: who decided it
    reason: str | None = None  # override; blanked when the case is erased


@dataclass(frozen=True)
class ConsentState:
    """Where the consent to one agency stands now, derived from its entries in order."""

    agency_id: str
    consent: Answer = Answer.not_asked
    sensitive: Answer = Answer.not_asked
    notice: Notice | None = None  # the notice of the latest answer
    override: Entry | None = None  # the latest override, if any
    changed_at: datetime | None = None

    @property
    def may_provide(self) -> bool:
        """Whether the agency may be given the victim's data: with consent, or on a recorded legal basis."""
        return self.consent is Answer.granted or self.override is not None

    @property
    def may_provide_sensitive(self) -> bool:
        """An override stands in for the consent, not for the separate one sensitive items need (PIPA Art. 23)."""
        return self.consent is Answer.granted and self.sensitive is Answer.granted


def as_consent(state: ConsentState) -> Consent:
    """The state in the contract's form (a case as `GET /cases/{id}` shows it): a withdrawn consent is not granted."""
    override = state.override
    return Consent(
        agency_id=state.agency_id,
        granted=state.consent is Answer.granted,
        sensitive_granted=state.may_provide_sensitive,
        override=None
        if override is None or override.legal_basis is None or override.reason is None
        else ConsentOverride(
            legal_basis=override.legal_basis,
            recorded_by=override.decided_by or override.recorded_by,
            reason=override.reason,
        ),
    )


def _answer(given: bool | None) -> Answer:
    return Answer.granted if given else Answer.refused


def apply(state: ConsentState, entry: Entry) -> ConsentState:
    """The state after one more entry."""
    at = entry.recorded_at
    if entry.action is Action.grant:
        sensitive = _answer(bool(entry.granted and entry.sensitive_granted))
        return ConsentState(state.agency_id, _answer(entry.granted), sensitive, entry.notice, state.override, at)
    if entry.action is Action.withdraw:
        everything = entry.scope is WithdrawalScope.all
        consent = Answer.withdrawn if everything else state.consent
        sensitive = Answer.withdrawn if state.sensitive is Answer.granted else state.sensitive
        # Withdrawing everything ends a standing override too: nothing more goes to the agency until a new decision.
        override = None if everything else state.override
        return ConsentState(state.agency_id, consent, sensitive, state.notice, override, at)
    return ConsentState(state.agency_id, state.consent, state.sensitive, state.notice, entry, at)


def current(entries: Iterable[Entry]) -> dict[str, ConsentState]:
    """Each agency's state from the case's entries in the order they were recorded, by agency id."""
    states: dict[str, ConsentState] = {}
    for entry in entries:
        states[entry.agency_id] = apply(states.get(entry.agency_id, ConsentState(entry.agency_id)), entry)
    return dict(sorted(states.items()))


class Forbidden(ValueError):
    """A change the consent's current state does not allow (HTTP 409); the message says why."""


def check_withdrawal(state: ConsentState, scope: WithdrawalScope) -> None:
    if scope is WithdrawalScope.all and not state.may_provide:
        raise Forbidden(f"there is no consent or override for {state.agency_id} to withdraw (it is {state.consent})")
    if scope is WithdrawalScope.sensitive and not state.may_provide_sensitive:
        raise Forbidden(f"there is no consent to {state.agency_id} for sensitive items to withdraw")


def check_override(state: ConsentState) -> None:
    if state.consent is Answer.granted:
        raise Forbidden(f"the victim consents to {state.agency_id}: an override (PIPA Art. 18(2)) is not needed")


class Refusal(ValueError):
    """Why nothing may be disclosed to the agency now: its consent is `answer` and no override stands."""

    def __init__(self, answer: Answer) -> None:
        super().__init__("consent withdrawn" if answer is Answer.withdrawn else f"no consent to this agency ({answer})")
        self.answer = answer


def disclosable(state: ConsentState | None, items: Sequence[Item]) -> list[Item]:
    """The items the agency may be given now, or Refusal: withdrawn or refused consent without an override refuses
    all; sensitive items go only while their separate consent stands."""
    if state is None or not state.may_provide:
        raise Refusal(Answer.not_asked if state is None else state.consent)
    return [item for item in items if item not in SENSITIVE_FIELDS or state.may_provide_sensitive]
