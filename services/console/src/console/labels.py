"""English labels of the contracts' vocabularies; Korean comes from the Babel catalogue like every other label
(`N_` marks them for `pybabel extract` without translating here). Needs have their own names in schemas.vocab."""

from schemas.vocab import (
    FOLLOW_UP_CLOSINGS,
    NEED_LABELS,
    CompletionOutcome,
    CrimeType,
    DeclineReason,
    IntakeChannel,
    Need,
    NotSuccessfulReason,
    ReferralState,
    Urgency,
)


def N_(message: str) -> str:
    return message


CRIME_TYPES = {
    CrimeType.sexual_violence: N_("Sexual violence"),
    CrimeType.digital_sex_crime: N_("Digital sex crime"),
    CrimeType.stalking: N_("Stalking"),
    CrimeType.domestic_violence: N_("Domestic violence"),
    CrimeType.dating_violence: N_("Dating violence"),
    CrimeType.violent_crime: N_("Violent crime"),
    CrimeType.homicide_bereaved: N_("Homicide (bereaved family)"),
    CrimeType.property_crime: N_("Property crime"),
    CrimeType.fraud: N_("Fraud"),
    CrimeType.child_abuse: N_("Child abuse"),
    CrimeType.elder_abuse: N_("Elder abuse"),
    CrimeType.other: N_("Other"),
}
URGENCIES = {Urgency.urgent: N_("Urgent"), Urgency.high: N_("High"), Urgency.normal: N_("Normal")}
INTAKE_CHANNELS = {
    IntakeChannel.visit: N_("Visit"),
    IntakeChannel.phone: N_("Phone"),
    IntakeChannel.online: N_("Online"),
    IntakeChannel.police: N_("Police"),
    IntakeChannel.prosecution: N_("Prosecution"),
}
STATES = {
    ReferralState.requested: N_("Requested"),
    ReferralState.delivered: N_("Delivered"),
    ReferralState.accepted: N_("Accepted"),
    ReferralState.in_progress: N_("In progress"),
    ReferralState.completed: N_("Completed"),
    ReferralState.declined: N_("Declined"),
    ReferralState.cancelled: N_("Cancelled"),
    ReferralState.failed: N_("Failed"),
}
DECLINE_REASONS = {
    DeclineReason.no_capacity: N_("No capacity"),
    DeclineReason.not_eligible: N_("Not eligible"),
    DeclineReason.out_of_area: N_("Out of area"),
    DeclineReason.duplicate: N_("Duplicate"),
    DeclineReason.victim_unreachable: N_("Victim unreachable"),
    DeclineReason.other: N_("Other reason"),
}
OUTCOMES = {CompletionOutcome.successful: N_("Successful"), CompletionOutcome.not_successful: N_("Not successful")}
NOT_SUCCESSFUL = {
    NotSuccessfulReason.victim_refused_services: N_("Victim refused services"),
    NotSuccessfulReason.lack_of_capacity: N_("Lack of capacity"),
    NotSuccessfulReason.services_no_longer_needed: N_("Services no longer needed"),
    NotSuccessfulReason.unable_to_contact_victim: N_("Unable to contact the victim"),
    NotSuccessfulReason.unable_to_contact_agency: N_("Unable to contact the agency"),
    NotSuccessfulReason.other: N_("Other reason"),
}
CASE_STATUSES = {
    "submitted": N_("Submitted"),
    "open": N_("Open"),
    "all_accepted": N_("All accepted"),
    "needs_attention": N_("Needs attention"),
    "closed": N_("Closed"),
}
EVENTS = {
    "case.submitted": N_("Case submitted"),
    "case.routed": N_("Case routed"),
    "referral.delivered": N_("Referral delivered"),
    "referral.failed": N_("Delivery failed"),
    "referral.accepted": N_("Accepted by the agency"),
    "referral.declined": N_("Declined by the agency"),
    "referral.requested": N_("Referral requested"),
    "referral.in_progress": N_("Work started"),
    "referral.completed": N_("Work completed"),
    "referral.cancelled": N_("Referral cancelled"),
    "referral.reminded": N_("Agency reminded"),
    "referral.overdue": N_("Answer overdue"),
    "referral.rerouting": N_("Re-routing"),
    "consent.withdrawn": N_("Consent withdrawn"),
    "case.erased": N_("Case erased"),
    "case.plan": N_("Plan changed"),
    "case.closed": N_("Case closed"),
    "need.closed": N_("Pending need closed"),
    "follow_up.opened": N_("Follow-up opened"),
    "follow_up.closed": N_("Follow-up done"),
    "consent.recorded": N_("Consent recorded"),
}
STAGE_STATES = {"waiting": N_("Waiting"), "active": N_("Under way"), "done": N_("Done")}
CONSENT_STATES = {
    "granted": N_("Granted"),
    "refused": N_("Refused"),
    "withdrawn": N_("Withdrawn"),
    "not_asked": N_("Not asked"),
}
REGIONS = {"seoul": N_("Seoul")}
LANGUAGE_NAMES = {"ko": N_("Korean"), "en": N_("English"), "zh": N_("Chinese"), "vi": N_("Vietnamese")}


def need_name(need: str, language: str) -> str:
    """A need's own name (schemas.vocab.NEED_LABELS: Korean, English)."""
    try:
        ko, en = NEED_LABELS[Need(need)]
    except ValueError:
        return need
    return ko if language == "ko" else en


def label(table: dict[str, str], value: str | None) -> str:
    """The English label of a vocabulary value (the value itself if the table has none)."""
    if value is None:
        return ""
    return table.get(value, value)


ATTENTION = {
    "overdue": N_("Answer overdue"),
    "declined_without_new_agency": N_("Declined, and no other agency found"),
    "failed_without_new_agency": N_("Delivery failed, and no other agency found"),
    "follow_up_open": N_("Follow-up: check with the victim"),
    "reroute_proposed": N_("Completed without success: re-routing proposed"),
}
FOLLOW_UP_KINDS = {
    "check_with_victim": N_("Check with the victim"),
    "review_without_contact": N_("Review on file, without contacting the victim"),
}
NO_CONTACT = {
    "do_not_contact": N_("the victim must not be contacted"),
    "no_safe_channel": N_("no safe channel recorded"),
}
FOLLOW_UP_OUTCOMES = {
    "needs_met": N_("The victim got the help they needed"),
    "needs_remain": N_("Help is still needed"),
    "victim_not_reached": N_("The victim could not be reached"),
    "victim_declined_further_help": N_("The victim declined further help"),
    "reviewed_without_contact": N_("Reviewed on file, without contact"),
    "rerouted": N_("Re-routed to another agency"),
    "case_closed": N_("The case was closed"),
}
# What a caseworker may choose when closing a task (schemas.vocab.FOLLOW_UP_CLOSINGS), in this order.
FOLLOW_UP_CHOICES = [(value, text) for value, text in FOLLOW_UP_OUTCOMES.items() if value in FOLLOW_UP_CLOSINGS]
ROLES = {
    "caseworker": N_("Caseworker"),
    "supervisor": N_("Supervisor"),
    "agency": N_("Agency"),
    "auditor": N_("Auditor"),
}
ITEMS = {
    "victim.name": N_("Victim's name"),
    "victim.phone": N_("Victim's phone"),
    "victim.email": N_("Victim's e-mail"),
    "summary": N_("Case summary"),
}
CLOSE_REASONS = {
    "back_to_daily_life": N_("Back to daily life (support done)"),
    "victim_withdrew": N_("The victim withdrew"),
    "moved_away": N_("Moved away"),
    "unreachable": N_("Unreachable"),
    "transferred": N_("Transferred to another centre"),
    "other": N_("Other reason"),
}
NEED_CLOSE_REASONS = {
    "no_longer_needed": N_("No longer needed"),
    "victim_declined": N_("The victim declined it"),
    "arranged_outside_network": N_("Arranged outside the network"),
    "case_closed": N_("The case is closed"),
    "other": N_("Other reason"),
}
LEGAL_BASES = {
    "other_law": N_("Another law requires it"),
    "imminent_danger": N_("Imminent danger to life, body or property"),
    "criminal_investigation": N_("Criminal investigation and prosecution"),
    "court_proceedings": N_("Court proceedings"),
}
