"""Event contracts: one pydantic model per event type and version, each wrapped in the common envelope."""

import re
from datetime import UTC, datetime, time
from typing import Annotated, Any, ClassVar, Literal, get_args
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .locations import error_locations
from .validators import listed_once
from .vocab import (
    CancelReason,
    CaseClosedReason,
    CompletionOutcome,
    CrimeType,
    DeclineReason,
    ErasureCause,
    FollowUpKind,
    FollowUpOutcome,
    FollowUpProposal,
    IntakeChannel,
    LegalBasis,
    Need,
    NeedClosedReason,
    NoContactReason,
    NotSuccessfulReason,
    ReferralState,
    ReroutingCause,
    Urgency,
    WithdrawalScope,
)

AgencyId = Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]
ShortText = Annotated[str, Field(min_length=1, max_length=500)]

# The victim's personal items a case may hold. Their values never travel on Kafka nor leave intake unencrypted at
# rest: events say which items exist and which an agency may receive; the gateway fetches the values at delivery.
PersonalItem = Literal["victim.name", "victim.phone", "victim.email", "summary"]
PERSONAL_ITEMS: tuple[PersonalItem, ...] = get_args(PersonalItem)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        """PostgreSQL stores no NUL in text or JSON: a contract refuses it here, at the edge (422 over HTTP, the DLQ on
        Kafka), rather than in a transaction that would roll back and be tried again."""
        if _holds_nul(data):
            raise PydanticCustomError("nul_character", "text holds a NUL character, which cannot be stored")
        return data


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


class Envelope(Contract):
    """Fields every event carries. `event_id` is the idempotency key of the event."""

    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: AwareDatetime = Field(default_factory=utc_now)
    case_id: UUID
    producer: Annotated[str, Field(min_length=1, max_length=64)]

    type: ClassVar[str]
    version: ClassVar[int]

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("the time is outside the range that can be expressed in UTC") from None


# --- case details -----------------------------------------------------------------------------------


class SafeHours(Contract):
    """When the victim may safely be contacted, in local time; a `start` later than `end` spans midnight."""

    start: time
    end: time
    timezone: str = "Asia/Seoul"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone; use an IANA name such as Asia/Seoul") from None
        return name

    @model_validator(mode="after")
    def _not_empty(self) -> "SafeHours":
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class ContactRules(Contract):
    """Whether, how and when the centre may contact the victim: an offender may share a phone, an inbox or a home.

    Without rules, or without a safe channel, the victim is not contacted at all.
    """

    do_not_contact: bool = False
    safe_channel: Literal["email", "sms"] | None = None  # the only channel that may be used
    safe_hours: SafeHours | None = None  # None: any time of day


class VictimContact(Contract):
    """How the victim may be reached. Personal data: never logged, only sent to agencies allowed it."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    phone: Annotated[str, Field(pattern=r"^\+?[0-9][0-9 -]{5,19}$")] | None = None
    email: EmailStr | None = None
    contact_rules: ContactRules | None = None

    @model_validator(mode="after")
    def _safe_channel_has_an_address(self) -> "VictimContact":
        channel = self.contact_rules.safe_channel if self.contact_rules is not None else None
        if channel == "email" and self.email is None:
            raise ValueError("contact_rules.safe_channel is email, but no email is given")
        if channel == "sms" and self.phone is None:
            raise ValueError("contact_rules.safe_channel is sms, but no phone is given")
        return self


class Caseworker(Contract):
    """The centre's staff member following the case, told when a referral needs them."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    email: EmailStr


class ConsentOverride(Contract):
    """Providing data without consent (PIPA Art. 18(2)): which legal basis, who decided, and why."""

    legal_basis: LegalBasis
    recorded_by: Annotated[str, Field(min_length=1, max_length=64)]
    # Free text: required when staff record an override (CaseDetails), never on Kafka (CaseDetails.facts drops it;
    # it stays in intake's consent ledger).
    reason: ShortText | None = None


class Consent(Contract):
    """The victim's consent to give their data to one agency (PIPA Art. 17), and to sensitive items (Art. 23)."""

    agency_id: AgencyId
    granted: bool
    sensitive_granted: bool = False
    override: ConsentOverride | None = None


class _CaseCommon(Contract):
    """What a case is, as staff submit it and as it travels between services alike."""

    crime_type: CrimeType
    needs: Annotated[list[Need], Field(min_length=1, max_length=len(Need)), listed_once("need")]
    urgency: Urgency
    region: Annotated[str, Field(min_length=2, max_length=64)]
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]
    intake_channel: IntakeChannel
    consents: Annotated[list[Consent], Field(max_length=64)] = []
    caseworker: Caseworker | None = None  # the centre's staff member, not the victim
    # Route the needs stage by stage (the centre's case plan: crisis and safety first, daily life last), each later
    # stage when the caseworker advances the plan; false routes every need at once.
    staged: bool = False

    @field_validator("consents")
    @classmethod
    def _one_consent_per_agency(cls, consents: list[Consent]) -> list[Consent]:
        agencies = [c.agency_id for c in consents]
        if len(set(agencies)) != len(agencies):
            raise ValueError("each agency may have one consent entry")
        return consents


class CaseDetails(_CaseCommon):
    """A case as staff submit it to intake: with the victim's personal data."""

    victim: VictimContact
    summary: Annotated[str, Field(max_length=4000)] | None = None

    def personal_items(self) -> list[PersonalItem]:
        """The personal items this case holds a value for."""
        return list(self.personal_values())

    def personal_values(self) -> dict[PersonalItem, str]:
        """The personal items' values, by item (only those it holds)."""
        values = {
            "victim.name": self.victim.name,
            "victim.phone": self.victim.phone,
            "victim.email": None if self.victim.email is None else str(self.victim.email),
            "summary": self.summary,
        }
        return {item: value for item in PERSONAL_ITEMS if (value := values[item]) is not None}

    @model_validator(mode="after")
    def _overrides_say_why(self) -> "CaseDetails":
        if any(c.override is not None and c.override.reason is None for c in self.consents):
            raise ValueError("an override needs its reason")
        return self

    def facts(self) -> "CaseFacts":
        """The case as it may travel between services: everything but the personal items' values and free text (an
        override's reason stays in intake's consent ledger)."""
        common = {name: getattr(self, name) for name in _CaseCommon.model_fields}
        common["consents"] = [
            c
            if c.override is None
            else c.model_copy(update={"override": c.override.model_copy(update={"reason": None})})
            for c in self.consents
        ]
        return CaseFacts(**common, contact_rules=self.victim.contact_rules, personal_items=self.personal_items())


class CaseFacts(_CaseCommon):
    """A case as it travels between services: the routing facts, the consents, the victim's contact rules and which
    personal items intake holds — never their values, which stay in intake, encrypted, and are fetched per use."""

    contact_rules: ContactRules | None = None
    personal_items: list[PersonalItem] = []


class ReferralCase(Contract):
    """What one agency receives about the case: always the routing facts, personal fields only if allowed."""

    crime_type: CrimeType
    needs: list[Need]
    urgency: Urgency
    region: str | None = None
    language: str | None = None
    victim_name: str | None = None
    victim_phone: str | None = None
    victim_email: str | None = None
    summary: str | None = None


# --- events -----------------------------------------------------------------------------------------


class CaseSubmitted(Envelope):
    """A case was recorded. It carries the case's facts, not the victim's personal data (see `CaseFacts`)."""

    type: ClassVar[str] = "case.submitted"
    version: ClassVar[int] = 2
    case: CaseFacts


class CaseSubmittedV1(Envelope):
    """Version 1 carried the victim's personal data in clear; kept so old records still decode. Consumers
    `upgrade()` it and never store the personal values it holds."""

    type: ClassVar[str] = "case.submitted"
    version: ClassVar[int] = 1
    case: CaseDetails

    def upgrade(self) -> CaseSubmitted:
        return CaseSubmitted(
            event_id=self.event_id,
            occurred_at=self.occurred_at,
            case_id=self.case_id,
            producer=self.producer,
            case=self.case.facts(),
        )


def current_form(event: "CaseSubmitted | CaseSubmittedV1") -> CaseSubmitted:
    """The current form of a `case.submitted`, whichever version came."""
    return event.upgrade() if isinstance(event, CaseSubmittedV1) else event


class RoutingDecision(Contract):
    """Why one agency was chosen or skipped for a case."""

    agency_id: AgencyId
    chosen: bool
    needs: list[Need]
    reason: ShortText
    override: ConsentOverride | None = None  # set when chosen without consent, on this legal basis (PIPA 18(2))


class RoutedReferral(Contract):
    referral_id: UUID
    agency_id: AgencyId
    needs: list[Need]


class CaseRouted(Envelope):
    type: ClassVar[str] = "case.routed"
    version: ClassVar[int] = 1
    referrals: list[RoutedReferral]
    decisions: list[RoutingDecision]
    uncovered_needs: list[Need] = []
    rerouted_from: UUID | None = None  # set when this routing answers a ReroutingRequested for that referral


class ReferralRequested(Envelope):
    type: ClassVar[str] = "referral.requested"
    version: ClassVar[int] = 1
    referral_id: UUID
    agency_id: AgencyId
    case: ReferralCase
    # The personal items this agency may receive. Their values are not on Kafka: the gateway fetches them from
    # intake when it delivers (a Kafka-native agency fetches them from the gateway with its own credential).
    personal_items: list[PersonalItem] = []


class ReferralDelivered(Envelope):
    type: ClassVar[str] = "referral.delivered"
    version: ClassVar[int] = 1
    referral_id: UUID
    agency_id: AgencyId
    channel: Annotated[str, Field(max_length=32)]
    attempts: Annotated[int, Field(ge=1)]
    agency_status: int | None = None


class ReferralFailed(Envelope):
    type: ClassVar[str] = "referral.failed"
    version: ClassVar[int] = 1
    referral_id: UUID
    agency_id: AgencyId
    channel: Annotated[str, Field(max_length=32)]
    attempts: Annotated[int, Field(ge=1)]
    reason: ShortText


class ReferralAccepted(Envelope):
    type: ClassVar[str] = "referral.accepted"
    version: ClassVar[int] = 1
    referral_id: UUID
    agency_id: AgencyId
    note: ShortText | None = None
    has_note: bool = False  # on Kafka a note is never carried: notify keeps it (GET /referrals/{id} shows it)


class ReferralDeclined(Envelope):
    type: ClassVar[str] = "referral.declined"
    version: ClassVar[int] = 1
    referral_id: UUID
    agency_id: AgencyId
    reason: DeclineReason
    note: ShortText | None = None
    has_note: bool = False  # on Kafka a note is never carried: notify keeps it (GET /referrals/{id} shows it)


class ReferralStarted(Envelope):
    """The agency has begun working with the victim (state in_progress)."""

    type: ClassVar[str] = "referral.in_progress"
    version: ClassVar[int] = 1
    referral_id: UUID
    agency_id: AgencyId
    note: ShortText | None = None
    has_note: bool = False  # on Kafka a note is never carried: notify keeps it (GET /referrals/{id} shows it)


class ReferralCompleted(Envelope):
    type: ClassVar[str] = "referral.completed"
    version: ClassVar[int] = 1
    referral_id: UUID
    agency_id: AgencyId
    outcome: CompletionOutcome
    reason: NotSuccessfulReason | None = None  # required when not successful
    note: ShortText | None = None
    has_note: bool = False  # on Kafka a note is never carried: notify keeps it (GET /referrals/{id} shows it)

    @model_validator(mode="after")
    def _reason_when_not_successful(self) -> "ReferralCompleted":
        if (self.outcome is CompletionOutcome.not_successful) != (self.reason is not None):
            raise ValueError("a reason is required when, and only when, the outcome is not_successful")
        return self


class ReferralCancelled(Envelope):
    type: ClassVar[str] = "referral.cancelled"
    version: ClassVar[int] = 1
    referral_id: UUID
    agency_id: AgencyId
    reason: CancelReason
    note: ShortText | None = None
    has_note: bool = False  # on Kafka a note is never carried: notify keeps it (GET /referrals/{id} shows it)


class ReferralReminded(Envelope):
    """The agency was reminded that its acknowledgement deadline is near."""

    type: ClassVar[str] = "referral.reminded"
    version: ClassVar[int] = 1
    referral_id: UUID
    agency_id: AgencyId
    deadline: AwareDatetime


class ReferralOverdue(Envelope):
    """The agency did not acknowledge before its deadline; the caseworker is alerted and routing re-routes."""

    type: ClassVar[str] = "referral.overdue"
    version: ClassVar[int] = 1
    referral_id: UUID
    agency_id: AgencyId
    deadline: AwareDatetime


class ReroutingRequested(Envelope):
    """notify asks routing to find another agency for the needs a referral leaves unmet.

    Published on `referral.rerouting`. Routing never chooses `agency_id` again for this case.
    """

    type: ClassVar[str] = "referral.rerouting"
    version: ClassVar[int] = 1
    referral_id: UUID
    agency_id: AgencyId
    needs: Annotated[list[Need], Field(min_length=1)]
    cause: ReroutingCause


class NeedClosed(Envelope):
    """A caseworker ended a pending need — one no agency could take when the case was routed — so routing stops
    looking for an agency for it. Published by routing on `referral.events`; notify takes it off the case's status."""

    type: ClassVar[str] = "need.closed"
    version: ClassVar[int] = 1
    need: Need
    reason: NeedClosedReason
    closed_by: Annotated[str, Field(min_length=1, max_length=128)]  # the staff member's principal id, from the token


class FollowUpOpened(Envelope):
    """notify opened a follow-up task for the case's caseworker when an agency completed a referral: check with the
    victim (within their contact rules; `review_without_contact` when the victim must not be contacted). A
    `not_successful` completion comes with a proposal to re-route its needs, which the caseworker accepts or declines.
    Published by notify on `referral.events`; carries no personal data (the task's due time, which follows the
    victim's safe hours, stays in notify)."""

    type: ClassVar[str] = "follow_up.opened"
    version: ClassVar[int] = 1
    task_id: UUID
    referral_id: UUID
    agency_id: AgencyId
    needs: list[Need]
    outcome: CompletionOutcome
    kind: FollowUpKind
    no_contact: NoContactReason | None = None
    proposal: FollowUpProposal | None = None


class FollowUpClosed(Envelope):
    """A follow-up task ended: a caseworker closed it with an outcome code (`rerouted`: they accepted the proposal to
    re-route, and notify asked routing on `referral.rerouting`), or the case was closed. Published by notify on
    `referral.events`."""

    type: ClassVar[str] = "follow_up.closed"
    version: ClassVar[int] = 1
    task_id: UUID
    referral_id: UUID
    agency_id: AgencyId
    outcome: FollowUpOutcome
    closed_by: Annotated[str, Field(min_length=1, max_length=128)]  # the staff member's principal id, from the token


class PlanStage(Contract):
    """One stage of a case's plan: its needs, and whether it is waiting, under way (`active`) or done."""

    stage: Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")]
    needs: Annotated[list[Need], listed_once("need")]
    state: Literal["waiting", "active", "done"]
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None


class CasePlanned(Envelope):
    """A staged case's plan as it stands now (made at routing, advanced or edited by a caseworker since): routing
    publishes it on `referral.events` at each change; notify shows it with each stage's referrals and time spent."""

    type: ClassVar[str] = "case.plan"
    version: ClassVar[int] = 1
    stages: Annotated[list[PlanStage], Field(min_length=1, max_length=12)]
    changed_by: Annotated[str, Field(min_length=1, max_length=128)]  # routing, or the staff member's principal id


class CaseErased(Envelope):
    """The case's personal data was destroyed — on request, or when its retention period after closing ended: intake
    destroyed its data key and its personal data; every service that holds personal data of the case purges it.
    Published on `case.erased`; carries no personal data."""

    type: ClassVar[str] = "case.erased"
    version: ClassVar[int] = 1
    erased_at: AwareDatetime
    cause: ErasureCause = ErasureCause.requested


class CaseClosed(Envelope):
    """A caseworker closed the case: notify cancels its open referrals (telling each agency through its channel) and
    ends its pending needs; routing stops looking for agencies for it. Its personal data is kept until
    `retention_until`, then destroyed as on an erasure (`case.erased`, cause `retention_ended`). Published by intake on
    `case.closed`; carries no personal data."""

    type: ClassVar[str] = "case.closed"
    version: ClassVar[int] = 1
    reason: CaseClosedReason
    closed_by: Annotated[str, Field(min_length=1, max_length=128)]  # the staff member's principal id, from the token
    closed_at: AwareDatetime
    retention_until: AwareDatetime


class ConsentWithdrawn(Envelope):
    """The victim withdrew their consent to one agency (PIPA Art. 37), recorded in intake's consent ledger.

    Published on `consent.withdrawn`; carries no personal data. Scope `all`: notify cancels the case's open referrals
    to the agency and routing never chooses it again for the case. Scope `sensitive`: the referrals stand, but the
    agency is given no sensitive item (PIPA Art. 23) from now on.
    """

    type: ClassVar[str] = "consent.withdrawn"
    version: ClassVar[int] = 1
    agency_id: AgencyId
    scope: WithdrawalScope
    withdrawn_at: AwareDatetime


class ConsentRecorded(Envelope):
    """The victim consented to one agency after the case was submitted (or a supervisor recorded a legal basis to
    provide without consent), in intake's consent ledger: `consent` is where that agency's consent stands now.

    Published on `consent.recorded`; carries what `case.submitted`'s consents carry, no more. Routing takes it into
    account from the next routing of the case on, and tries the case's pending needs again at once: a need no agency
    could take for want of consent may be taken now. A withdrawal is `consent.withdrawn`, never this.
    """

    type: ClassVar[str] = "consent.recorded"
    version: ClassVar[int] = 1
    consent: Consent
    recorded_at: AwareDatetime


EVENT_MODELS: tuple[type[Envelope], ...] = (
    CaseSubmitted,
    CaseSubmittedV1,
    CaseRouted,
    ReferralRequested,
    ReferralDelivered,
    ReferralFailed,
    ReferralAccepted,
    ReferralDeclined,
    ReferralStarted,
    ReferralCompleted,
    ReferralCancelled,
    ReferralReminded,
    ReferralOverdue,
    ReroutingRequested,
    NeedClosed,
    CasePlanned,
    FollowUpOpened,
    FollowUpClosed,
    CaseErased,
    CaseClosed,
    ConsentWithdrawn,
    ConsentRecorded,
)
_BY_TYPE_VERSION: dict[tuple[str, int], type[Envelope]] = {(m.type, m.version): m for m in EVENT_MODELS}

# The events that put a referral in a state (on `referral.events`), and that state.
ReferralStateEvent = (
    ReferralDelivered
    | ReferralFailed
    | ReferralAccepted
    | ReferralDeclined
    | ReferralStarted
    | ReferralCompleted
    | ReferralCancelled
)
REFERRAL_STATE_OF: dict[type[Envelope], ReferralState] = {
    ReferralDelivered: ReferralState.delivered,
    ReferralFailed: ReferralState.failed,
    ReferralAccepted: ReferralState.accepted,
    ReferralDeclined: ReferralState.declined,
    ReferralStarted: ReferralState.in_progress,
    ReferralCompleted: ReferralState.completed,
    ReferralCancelled: ReferralState.cancelled,
}


class EventRejected(ValueError):
    """A record that is not a known, valid event. `reason` is a short code for the DLQ header."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_JSON_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


def encode_event(event: Envelope) -> bytes:
    """The wire form: the model's fields plus `type` and `version`, as UTF-8 JSON."""
    body = {"type": event.type, "version": event.version, **event.model_dump(mode="json")}
    return _JSON_OBJECT.dump_json(body)


def decode_event(raw: bytes | None, accepts: tuple[type[Envelope], ...] = EVENT_MODELS) -> Envelope:
    """Parse one record's value; raise EventRejected naming what was wrong, never echoing the content."""
    if raw is None:
        raise EventRejected("empty_record", "the record has no value")
    try:
        body = _JSON_OBJECT.validate_json(raw)
    except ValueError:
        raise EventRejected("invalid_json", "the record is not a JSON object") from None
    event_type, version = body.pop("type", None), body.pop("version", None)
    model = _BY_TYPE_VERSION.get((event_type, version)) if isinstance(event_type, str) else None
    if model is None:
        # Name the type and version only when they look like ours: the record's content is not to be echoed.
        named = event_type if isinstance(event_type, str) and re.fullmatch(r"[a-z][a-z.]{0,63}", event_type) else "?"
        shown = version if isinstance(version, int) and not isinstance(version, bool) else "?"
        raise EventRejected("unknown_event", f"no contract for type {named} version {shown}")
    if model not in accepts:
        raise EventRejected("unexpected_event", f"{model.type} v{model.version} is not expected on this topic")
    try:
        return model.model_validate(body)
    except ValidationError as error:
        locations = error_locations(error.errors(include_input=False, include_context=False))
        raise EventRejected("invalid_event", f"{model.type} v{model.version} invalid at {locations}") from None
    except Exception as error:
        # Any other failure of the contract's own validators (a date whose conversion to UTC overflows, say) is a
        # bad record too, never a reason to read it again.
        detail = f"{model.type} v{model.version} could not be validated ({type(error).__name__})"
        raise EventRejected("invalid_event", detail) from None


def wire_schema(model: type[Envelope]) -> dict[str, Any]:
    """JSON Schema of the wire form, `type` and `version` included as constants."""
    schema = model.model_json_schema(mode="serialization")
    schema["properties"] = {
        "type": {"const": model.type, "type": "string"},
        "version": {"const": model.version, "type": "integer"},
        **schema["properties"],
    }
    schema["required"] = ["type", "version", *schema.get("required", [])]
    schema["$id"] = f"{model.type}.v{model.version}"
    return schema
