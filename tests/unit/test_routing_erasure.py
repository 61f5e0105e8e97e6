"""What routing keeps of an erased case's decisions and sent events: the choices and their grounds, no free text
staff wrote and no personal field."""

from uuid import uuid4

from routing.erasure import ERASED_TEXT, decisions_without_free_text, without_personal_data
from schemas.events import CaseRouted, ReferralCase, ReferralDelivered, ReferralRequested, RoutingDecision

OVERRIDE = {"legal_basis": "imminent_danger", "recorded_by": "sv-1", "reason": "Kim hides at 12 Example-ro"}
DECISIONS = [
    {"agency_id": "police", "chosen": True, "needs": ["safety"], "reason": "NO CONSENT: ...", "override": OVERRIDE},
    {"agency_id": "legal-aid", "chosen": False, "needs": ["legal"], "reason": "skipped: closed", "override": None},
]


def test_an_overrides_reason_goes_and_its_legal_basis_and_author_stay() -> None:
    kept = decisions_without_free_text(DECISIONS)
    assert "Kim" not in str(kept)
    assert kept[0]["override"] == {**OVERRIDE, "reason": ERASED_TEXT}
    assert kept[1] == DECISIONS[1] and kept[0]["reason"] == DECISIONS[0]["reason"]


def test_sent_events_lose_the_free_text_and_the_personal_fields_and_keep_the_rest() -> None:
    case_id, referral_id = uuid4(), uuid4()
    routed = CaseRouted(
        case_id=case_id,
        producer="routing",
        referrals=[],
        decisions=[RoutingDecision.model_validate(d) for d in DECISIONS],
    )
    kept_routed = without_personal_data(routed)
    assert "Kim" not in kept_routed.model_dump_json() and kept_routed.event_id == routed.event_id
    assert [d.agency_id for d in kept_routed.decisions] == ["police", "legal-aid"]

    referral = ReferralRequested(
        case_id=case_id,
        producer="routing",
        referral_id=referral_id,
        agency_id="police",
        case=ReferralCase(
            crime_type="violent_crime",
            needs=["safety"],
            urgency="high",
            region="seoul",
            victim_name="Kim Example",
            victim_phone="+82 10-0000-0000",
            summary="Kim was assaulted.",
        ),
    )
    kept_referral = without_personal_data(referral)
    assert "Kim" not in kept_referral.model_dump_json() and "+82" not in kept_referral.model_dump_json()
    assert (kept_referral.case.region, kept_referral.case.needs) == ("seoul", ["safety"])

    delivered = ReferralDelivered(
        case_id=case_id,
        producer="agency-gateway",
        referral_id=referral_id,
        agency_id="police",
        channel="kafka",
        attempts=1,
    )
    assert without_personal_data(delivered) == delivered
