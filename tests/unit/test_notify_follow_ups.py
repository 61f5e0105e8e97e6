"""Follow-ups after a completion, pure: the task's kind and due time under the victim's contact rules, its re-routing
proposal, which closings it allows; the case stays on the needing-attention list while one is open; the caseworker's
e-mail says so. (The API's edge: tests/unit/test_notify_api.py.)"""

from datetime import UTC, datetime, time, timedelta
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kit.errors import Conflict, Invalid
from notify.domain import CaseStatus, ReferralSummary, case_status
from notify.follow_up_rules import (
    ProposalState,
    TaskState,
    check_closing,
    check_reroute,
    follow_up,
    proposal_state,
    task_id_of,
)
from notify.notices import News, ReferralNews, VictimReach, caseworker_notice, in_safe_hours
from schemas.events import SafeHours
from schemas.vocab import (
    FOLLOW_UP_CLOSINGS,
    CompletionOutcome,
    FollowUpKind,
    FollowUpOutcome,
    FollowUpProposal,
    NoContactReason,
)
from schemas.vocab import ReferralState as S

EVENING = SafeHours(start=time(18, 0), end=time(21, 0), timezone="Asia/Seoul")  # 09:00-12:00 UTC
AFTER = timedelta(days=2)
COMPLETED = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 10:00 in Seoul, a Monday
SUCCESSFUL, NOT_SUCCESSFUL = CompletionOutcome.successful, CompletionOutcome.not_successful


def test_a_contact_task_is_due_at_the_victims_next_safe_hour_after_the_delay() -> None:
    task = follow_up(SUCCESSFUL, VictimReach(False, "sms", EVENING), COMPLETED, AFTER)
    assert (task.kind, task.no_contact, task.proposal) == (FollowUpKind.check_with_victim, None, None)
    assert task.due_at == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)  # Wednesday 18:00 in Seoul, not 10:00
    any_time = follow_up(SUCCESSFUL, VictimReach(False, "email", None), COMPLETED, AFTER)
    assert any_time.due_at == COMPLETED + AFTER


@pytest.mark.parametrize(
    ("reach", "why"),
    [
        (VictimReach(True, None, None), NoContactReason.do_not_contact),
        (VictimReach(True, "sms", EVENING), NoContactReason.do_not_contact),  # do-not-contact outranks a channel
        (VictimReach(False, None, None), NoContactReason.no_safe_channel),  # no rules, or no safe channel named
    ],
)
def test_a_victim_who_must_not_be_contacted_gets_a_review_on_file_that_says_why(
    reach: VictimReach, why: NoContactReason
) -> None:
    task = follow_up(NOT_SUCCESSFUL, reach, COMPLETED, AFTER)
    assert (task.kind, task.no_contact, task.due_at) == (FollowUpKind.review_without_contact, why, COMPLETED + AFTER)
    assert task.proposal is FollowUpProposal.reroute  # the proposal does not depend on the contact rules


def test_only_a_not_successful_completion_proposes_re_routing() -> None:
    reach = VictimReach(False, "email", None)
    assert follow_up(SUCCESSFUL, reach, COMPLETED, AFTER).proposal is None
    assert follow_up(NOT_SUCCESSFUL, reach, COMPLETED, AFTER).proposal is FollowUpProposal.reroute


@given(
    completed=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)),
    start=st.times(),
    end=st.times(),
    after_hours=st.integers(min_value=0, max_value=24 * 14),
)
def test_a_contact_tasks_due_time_is_inside_the_safe_hours_and_never_before_the_delay(
    completed: datetime, start: time, end: time, after_hours: int
) -> None:
    if start == end:
        return  # an empty window: the contract's SafeHours allows it, but no moment is inside it
    hours = SafeHours(start=start.replace(microsecond=0), end=end.replace(microsecond=0), timezone="Asia/Seoul")
    if hours.start == hours.end:
        return
    after = timedelta(hours=after_hours)
    task = follow_up(SUCCESSFUL, VictimReach(False, "sms", hours), completed, after)
    assert in_safe_hours(task.due_at, hours)
    assert completed + after <= task.due_at < completed + after + timedelta(days=1)


def test_one_task_per_referral_whatever_the_delivery() -> None:
    referral = uuid4()
    assert task_id_of(referral) == task_id_of(referral) != task_id_of(uuid4())


def test_a_proposal_is_proposed_until_the_task_closes_accepted_only_by_a_re_routing() -> None:
    reroute = FollowUpProposal.reroute
    assert proposal_state(None, None) is None and proposal_state(None, FollowUpOutcome.needs_met) is None
    assert proposal_state(reroute, None) is ProposalState.proposed
    assert proposal_state(reroute, FollowUpOutcome.rerouted) is ProposalState.accepted
    for declined in (FollowUpOutcome.victim_declined_further_help, FollowUpOutcome.case_closed):
        assert proposal_state(reroute, declined) is ProposalState.declined


def test_a_caseworker_closes_an_open_task_with_a_code_of_theirs_once() -> None:
    for outcome in FOLLOW_UP_CLOSINGS:
        check_closing(TaskState.open, outcome)
    for set_by_what_happened in (FollowUpOutcome.rerouted, FollowUpOutcome.case_closed):
        with pytest.raises(Invalid):
            check_closing(TaskState.open, set_by_what_happened)
    with pytest.raises(Conflict):
        check_closing(TaskState.done, FollowUpOutcome.needs_met)


def test_a_re_routing_is_accepted_only_from_an_open_task_that_proposes_it_for_an_open_case() -> None:
    reroute = FollowUpProposal.reroute
    check_reroute(TaskState.open, reroute, ["legal"], case_closed=False)
    refused = [
        (TaskState.done, reroute, ["legal"], False),
        (TaskState.open, None, ["legal"], False),
        (TaskState.open, reroute, [], False),
        (TaskState.open, reroute, ["legal"], True),
    ]
    for state, proposal, needs, closed in refused:
        with pytest.raises(Conflict):
            check_reroute(state, proposal, needs, case_closed=closed)


def test_a_case_with_an_open_follow_up_needs_attention_until_it_is_done() -> None:
    completed = [ReferralSummary(S.completed, overdue=False, replaced=False)]
    assert case_status(completed, open_follow_ups=1) is CaseStatus.needs_attention
    assert case_status(completed, open_follow_ups=0) is CaseStatus.closed


def _completion(reason: str | None) -> ReferralNews:
    outcome = "successful" if reason is None else "not_successful"
    return ReferralNews(News.completed, uuid4(), uuid4(), "police", "Police", reason=reason, outcome=outcome)


def test_the_caseworkers_e_mail_points_to_the_follow_up_and_a_proposal_only_when_not_successful() -> None:
    done = caseworker_notice(_completion(None), "cw@centre.example", COMPLETED, "http://notify/status")
    failed = caseworker_notice(_completion("lack_of_capacity"), "cw@centre.example", COMPLETED, "u")
    assert done is not None and failed is not None
    assert "follow-up task" in done.body and "re-routing" not in done.body
    assert "follow-up task" in failed.body and "nothing is re-routed unless you accept it" in failed.body
