"""A case's overall state from its referrals, and which referrals need the staff."""

import pytest
from notify.domain import Attention, CaseStatus, ReferralSummary, attention, case_status
from schemas.vocab import ReferralState as S


def r(state: S, *, overdue: bool = False, replaced: bool = False) -> ReferralSummary:
    return ReferralSummary(state, overdue, replaced)


@pytest.mark.parametrize(
    ("referral", "expected"),
    [
        (r(S.delivered, overdue=True), Attention.overdue),
        (r(S.requested, overdue=True, replaced=True), Attention.overdue),  # still open: someone must chase or cancel
        (r(S.accepted, overdue=True), None),  # answered late: nothing left to do
        (r(S.cancelled, overdue=True), None),
        (r(S.declined), Attention.declined_without_new_agency),
        (r(S.declined, replaced=True), None),
        (r(S.failed), Attention.failed_without_new_agency),
        (r(S.failed, replaced=True), None),
        (r(S.delivered), None),
        (r(S.completed), None),
    ],
)
def test_which_referrals_need_the_staff(referral: ReferralSummary, expected: Attention | None) -> None:
    assert attention(referral) == expected


@pytest.mark.parametrize(
    ("referrals", "expected"),
    [
        ([], CaseStatus.open),
        ([r(S.requested), r(S.accepted)], CaseStatus.open),
        ([r(S.accepted), r(S.in_progress), r(S.completed)], CaseStatus.all_accepted),
        ([r(S.declined, replaced=True), r(S.accepted)], CaseStatus.all_accepted),
        ([r(S.cancelled), r(S.accepted)], CaseStatus.all_accepted),
        ([r(S.accepted), r(S.delivered, overdue=True)], CaseStatus.needs_attention),
        ([r(S.completed), r(S.declined)], CaseStatus.needs_attention),
        ([r(S.accepted), r(S.failed)], CaseStatus.needs_attention),
        ([r(S.completed), r(S.cancelled), r(S.declined, replaced=True)], CaseStatus.closed),
        ([r(S.cancelled)], CaseStatus.closed),
    ],
)
def test_a_cases_overall_state(referrals: list[ReferralSummary], expected: CaseStatus) -> None:
    assert case_status(referrals) is expected
