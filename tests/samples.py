"""Synthetic sample data for tests: no real person's details."""

from datetime import UTC, datetime
from typing import Any

from schemas.events import CaseDetails, ReferralCancelled, ReferralReminded, ReferralRequested
from schemas.examples import sample_case_json
from schemas.vocab import CancelReason

__all__ = ["cancellation_for", "reminder_for", "sample_case", "sample_case_json"]


def sample_case(**overrides: Any) -> CaseDetails:
    return CaseDetails.model_validate(sample_case_json(**overrides))


def reminder_for(event: ReferralRequested) -> ReferralReminded:
    """Notify's reminder about the referral `event`, as it reaches the agency's topic."""
    return ReferralReminded(
        case_id=event.case_id,
        producer="notify",
        referral_id=event.referral_id,
        agency_id=event.agency_id,
        deadline=datetime(2026, 3, 2, 13, 0, tzinfo=UTC),
    )


def cancellation_for(event: ReferralRequested) -> ReferralCancelled:
    """Notify's cancellation of the referral `event` after its deadline passed and it was re-routed."""
    return ReferralCancelled(
        case_id=event.case_id,
        producer="notify",
        referral_id=event.referral_id,
        agency_id=event.agency_id,
        reason=CancelReason.deadline_breached,
    )
