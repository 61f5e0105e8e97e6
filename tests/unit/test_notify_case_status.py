"""A case's overall state from its referrals, which referrals need the staff, and which a re-route supersedes."""

import pytest
from notify.domain import (
    Attention,
    CaseStatus,
    Change,
    ReferralSummary,
    attention,
    case_status,
    change,
    superseded,
)
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


@pytest.mark.parametrize(
    ("referral", "expected"),
    [
        (r(S.delivered, overdue=True), True),  # silent past its deadline: another agency has its needs now
        (r(S.requested, overdue=True), True),  # still being delivered (retries) when it breached
        (r(S.delivered), False),  # not overdue: a re-route of it can only follow a decline or failure
        (r(S.accepted, overdue=True), False),  # answered late, before the new agency was found: it stands
        (r(S.declined, overdue=True), False),  # ended already
        (r(S.cancelled, overdue=True), False),  # cancelled already (by staff, or by an earlier re-route)
    ],
)
def test_which_referrals_a_new_agency_for_their_needs_supersedes(referral: ReferralSummary, expected: bool) -> None:
    assert superseded(referral) is expected


def test_once_the_overdue_referral_is_superseded_and_cancelled_the_case_no_longer_needs_attention() -> None:
    before = [r(S.delivered, overdue=True, replaced=True), r(S.accepted)]
    assert case_status(before) is CaseStatus.needs_attention
    # Notify cancels it; the old agency's late acceptance is then not applied (a command answers it 409).
    assert [change(S.delivered, S.cancelled), change(S.cancelled, S.accepted)] == [Change.applied, Change.stale]
    after = [r(S.cancelled, overdue=True, replaced=True), r(S.accepted)]
    assert case_status(after) is CaseStatus.all_accepted
    assert attention(after[0]) is None
