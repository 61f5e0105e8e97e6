"""The referral state machine: every pair of states is either allowed, a no-op, or refused."""

import pytest
from notify.domain import ALLOWED, Change, change
from schemas.vocab import ReferralState as S

ALLOWED_PAIRS = [
    (S.requested, S.delivered),
    (S.requested, S.accepted),
    (S.requested, S.declined),
    (S.requested, S.failed),
    (S.requested, S.cancelled),
    (S.delivered, S.accepted),
    (S.delivered, S.declined),
    (S.delivered, S.cancelled),
    (S.accepted, S.in_progress),
    (S.accepted, S.completed),
    (S.accepted, S.cancelled),
    (S.in_progress, S.completed),
    (S.in_progress, S.cancelled),
]


@pytest.mark.parametrize(("current", "target"), ALLOWED_PAIRS)
def test_allowed_transitions_apply(current: S, target: S) -> None:
    assert change(current, target) is Change.applied


@pytest.mark.parametrize("state", list(S))
def test_repeating_a_state_is_a_no_op(state: S) -> None:
    assert change(state, state) is Change.duplicate


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.accepted, S.delivered),
        (S.in_progress, S.accepted),
        (S.accepted, S.requested),
        (S.declined, S.delivered),
        (S.completed, S.accepted),
        (S.cancelled, S.accepted),  # accepted, then cancelled; the acceptance is reported late
    ],
)
def test_an_earlier_step_reported_late_changes_nothing(current: S, target: S) -> None:
    assert change(current, target) is Change.stale


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.declined, S.accepted),
        (S.failed, S.accepted),
        (S.completed, S.declined),
        (S.accepted, S.declined),
        (S.delivered, S.failed),
    ],
)
def test_forbidden_transitions_are_refused(current: S, target: S) -> None:
    assert change(current, target) is Change.refused


def test_final_states_allow_nothing() -> None:
    for final in (S.declined, S.completed, S.cancelled, S.failed):
        assert ALLOWED[final] == frozenset()
        assert all(change(final, t) in (Change.refused, Change.duplicate, Change.stale) for t in S)


def test_the_table_covers_every_state_and_only_the_listed_pairs() -> None:
    assert set(ALLOWED) == set(S)
    assert {(c, t) for c in S for t in ALLOWED[c]} == set(ALLOWED_PAIRS)
