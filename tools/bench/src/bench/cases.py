"""The case every benchmark submission carries (synthetic), and the sizes of the events it becomes."""

from typing import Any
from uuid import uuid4

from schemas.events import (
    CaseDetails,
    CaseRouted,
    CaseSubmitted,
    ReferralCase,
    ReferralDelivered,
    ReferralRequested,
    RoutedReferral,
    RoutingDecision,
    encode_event,
)
from schemas.examples import SAMPLE_AGENCIES, sample_case_json

# Three needs, three consents: routing sends each case to exactly these three agencies.
AGENCIES = SAMPLE_AGENCIES
CASE_BODY: dict[str, Any] = sample_case_json()


def event_sizes() -> dict[str, int]:
    """Bytes on the wire of each event one case produces, built from the same case as the pipeline's."""
    details = CaseDetails.model_validate(CASE_BODY)
    case_id = uuid4()
    referrals = [RoutedReferral(referral_id=uuid4(), agency_id=a, needs=["legal"]) for a in AGENCIES]
    decisions = [
        RoutingDecision(agency_id=a, chosen=True, needs=["legal"], reason="first by priority") for a in AGENCIES
    ]
    routed = CaseRouted(case_id=case_id, producer="routing", referrals=referrals, decisions=decisions)
    view = ReferralCase(
        crime_type=details.crime_type,
        needs=["legal"],
        urgency=details.urgency,
        region=details.region,
        language=details.language,
    )
    requested = ReferralRequested(
        case_id=case_id,
        producer="routing",
        referral_id=uuid4(),
        agency_id="legal-aid",
        case=view,
        personal_items=details.personal_items(),
    )
    delivered = ReferralDelivered(
        case_id=case_id,
        producer="agency-gateway",
        referral_id=uuid4(),
        agency_id="legal-aid",
        channel="webhook",
        attempts=1,
        agency_status=202,
    )
    return {
        "case.submitted": len(encode_event(CaseSubmitted(case_id=case_id, producer="intake", case=details.facts()))),
        "case.routed": len(encode_event(routed)),
        "referral.requested": len(encode_event(requested)),
        "referral.delivered": len(encode_event(delivered)),
    }
