"""Vocabularies shared by every service (DOMAIN.md), with Korean and English labels."""

from enum import StrEnum


class Need(StrEnum):
    safety = "safety"
    investigation = "investigation"
    counselling = "counselling"
    legal = "legal"
    financial = "financial"
    employment = "employment"
    welfare = "welfare"
    medical = "medical"
    housing = "housing"
    statement_support = "statement_support"
    digital_takedown = "digital_takedown"


class CrimeType(StrEnum):
    sexual_violence = "sexual_violence"
    digital_sex_crime = "digital_sex_crime"
    stalking = "stalking"
    domestic_violence = "domestic_violence"
    dating_violence = "dating_violence"
    violent_crime = "violent_crime"
    homicide_bereaved = "homicide_bereaved"
    property_crime = "property_crime"
    fraud = "fraud"
    child_abuse = "child_abuse"
    elder_abuse = "elder_abuse"
    other = "other"


class Urgency(StrEnum):
    urgent = "urgent"  # life or safety at risk
    high = "high"
    normal = "normal"


# Default acknowledgement deadline per urgency, in hours; an agency's catalogue entry may override it.
DEFAULT_ACK_HOURS: dict[Urgency, int] = {Urgency.urgent: 2, Urgency.high: 6, Urgency.normal: 24}


class IntakeChannel(StrEnum):
    visit = "visit"
    phone = "phone"
    online = "online"
    police = "police"
    prosecution = "prosecution"


class DeclineReason(StrEnum):
    no_capacity = "no_capacity"
    not_eligible = "not_eligible"
    out_of_area = "out_of_area"
    duplicate = "duplicate"
    victim_unreachable = "victim_unreachable"
    other = "other"


class NotSuccessfulReason(StrEnum):
    victim_refused_services = "victim_refused_services"
    lack_of_capacity = "lack_of_capacity"
    services_no_longer_needed = "services_no_longer_needed"
    unable_to_contact_victim = "unable_to_contact_victim"
    unable_to_contact_agency = "unable_to_contact_agency"
    other = "other"


class ReferralState(StrEnum):
    requested = "requested"
    delivered = "delivered"
    accepted = "accepted"
    in_progress = "in_progress"
    completed = "completed"
    declined = "declined"
    cancelled = "cancelled"
    failed = "failed"


# A total order of the referral states extending the transitions agencies and staff may make (every allowed one goes
# up). Facts that never lie on one path (accepted and failed, say) are settled by it too: the later stage of the work,
# or the staff's cancel, wins. Whoever keeps a referral's state from its events keeps the one of highest rank, so the
# state does not depend on the order the events arrive in (a late "delivered" after "accepted" changes nothing).
REFERRAL_STATE_RANK: dict[ReferralState, int] = {
    ReferralState.requested: 0,
    ReferralState.delivered: 1,
    ReferralState.failed: 2,
    ReferralState.declined: 3,
    ReferralState.accepted: 4,
    ReferralState.in_progress: 5,
    ReferralState.completed: 6,
    ReferralState.cancelled: 7,
}


NEED_LABELS: dict[Need, tuple[str, str]] = {
    Need.safety: ("신변보호", "personal safety"),
    Need.investigation: ("수사협력", "investigation cooperation"),
    Need.counselling: ("심리", "psychological support"),
    Need.legal: ("법률", "legal aid"),
    Need.financial: ("금융", "finance"),
    Need.employment: ("고용", "employment"),
    Need.welfare: ("복지", "welfare"),
    Need.medical: ("의료", "medical"),
    Need.housing: ("주거", "housing"),
    Need.statement_support: ("진술조력", "statement support"),
    Need.digital_takedown: ("불법촬영물 삭제지원", "digital takedown"),
}


class CompletionOutcome(StrEnum):
    successful = "successful"
    not_successful = "not_successful"


class CancelReason(StrEnum):
    consent_withdrawn = "consent_withdrawn"
    case_closed = "case_closed"
    other = "other"
    # The agency let its acknowledgement deadline pass and routing has given its needs to another agency.
    deadline_breached = "deadline_breached"


class WithdrawalScope(StrEnum):
    """What the victim withdraws from one agency (PIPA Art. 37): the whole consent, or only the separate consent to
    its sensitive items (Art. 23), which stops them being provided while the rest still goes."""

    all = "all"
    sensitive = "sensitive"


class CaseClosedReason(StrEnum):
    """Why a caseworker closed a case: a code, never free text (it travels on Kafka)."""

    back_to_daily_life = "back_to_daily_life"  # the support plan is done
    victim_withdrew = "victim_withdrew"
    moved_away = "moved_away"
    unreachable = "unreachable"
    transferred = "transferred"  # to another centre
    other = "other"


class ErasureCause(StrEnum):
    """Why a case's personal data was destroyed: the victim asked (PIPA Art. 36), or the centre's retention period
    after closing ended (Art. 21)."""

    requested = "requested"
    retention_ended = "retention_ended"


class NeedClosedReason(StrEnum):
    """Why a caseworker ended a pending need no agency could take: a code, never free text (it travels on Kafka)."""

    no_longer_needed = "no_longer_needed"
    victim_declined = "victim_declined"
    arranged_outside_network = "arranged_outside_network"  # e.g. a hospital, a shelter not in the catalogue
    case_closed = "case_closed"
    other = "other"


class ReroutingCause(StrEnum):
    declined = "declined"
    deadline_breached = "deadline_breached"
    delivery_failed = "delivery_failed"
    # The agency completed its referral without success and the caseworker, having checked with the victim, accepted
    # the follow-up's proposal to re-route its needs (never automatic). Added to `referral.rerouting` v1: a value its
    # one consumer (routing) is deployed with; an older routing dead-letters it as invalid, to be replayed.
    not_successful = "not_successful"


class FollowUpKind(StrEnum):
    """What a follow-up task asks of the caseworker after an agency completed a referral."""

    check_with_victim = "check_with_victim"  # through the victim's safe channel, within their safe hours
    review_without_contact = "review_without_contact"  # the victim must not be contacted: review the case on file


class NoContactReason(StrEnum):
    """Why a follow-up is not a contact task: the victim's contact rules forbid it, or name no safe channel."""

    do_not_contact = "do_not_contact"
    no_safe_channel = "no_safe_channel"


class FollowUpProposal(StrEnum):
    """What a follow-up proposes to the caseworker, to accept or decline: never done without them."""

    reroute = "reroute"  # route the completed referral's needs to another agency


class FollowUpOutcome(StrEnum):
    """How a follow-up task ended: a code, never free text (it travels on Kafka)."""

    needs_met = "needs_met"  # the victim confirms they got the help they needed
    needs_remain = "needs_remain"  # help is still needed: the caseworker acts on the case's plan
    victim_not_reached = "victim_not_reached"
    victim_declined_further_help = "victim_declined_further_help"
    reviewed_without_contact = "reviewed_without_contact"  # the victim must not be contacted: reviewed on file
    rerouted = "rerouted"  # the re-routing proposal accepted (only through .../reroute)
    case_closed = "case_closed"  # the case was closed with the task still open (notify only)


# What a caseworker may give when closing a task; the rest are set by what happened.
FOLLOW_UP_CLOSINGS = frozenset(FollowUpOutcome) - {FollowUpOutcome.rerouted, FollowUpOutcome.case_closed}


class LegalBasis(StrEnum):
    """PIPA Art. 18(2): when personal data may be provided without consent. An override must name one."""

    other_law = "other_law"  # a special provision in another law requires it
    imminent_danger = "imminent_danger"  # clearly needed to protect life, body or property from imminent danger
    criminal_investigation = "criminal_investigation"  # needed for a public body's investigation and prosecution
    court_proceedings = "court_proceedings"  # needed for a court's proceedings
