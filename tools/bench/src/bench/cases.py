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

# Three needs, three consents: routing sends each case to exactly these three agencies.
AGENCIES = ("police", "legal-aid", "employment-center")

CASE_BODY: dict[str, Any] = {
    "crime_type": "violent_crime",
    "needs": ["safety", "legal", "employment"],
    "urgency": "high",
    "region": "seoul",
    "language": "ko",
    "intake_channel": "visit",
    "victim": {"name": "Kim Example", "phone": "+82 10-0000-0000", "email": "victim@example.org"},
    "consents": [
        {"agency_id": "police", "granted": True, "sensitive_granted": True},
        {"agency_id": "legal-aid", "granted": True, "sensitive_granted": False},
        {"agency_id": "employment-center", "granted": True, "sensitive_granted": False},
    ],
    "summary": "Assaulted near home; fears the offender knows the address.",
}


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
        victim_name=details.victim.name,
        victim_phone=details.victim.phone,
        summary=details.summary,
    )
    requested = ReferralRequested(
        case_id=case_id, producer="routing", referral_id=uuid4(), agency_id="legal-aid", case=view
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
        "case.submitted": len(encode_event(CaseSubmitted(case_id=case_id, producer="intake", case=details))),
        "case.routed": len(encode_event(routed)),
        "referral.requested": len(encode_event(requested)),
        "referral.delivered": len(encode_event(delivered)),
    }
