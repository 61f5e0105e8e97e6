"""The referral state machine: every command is applied, a no-op or refused; facts end in one state in any order."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from notify.domain import (
    ALLOWED,
    FINAL,
    RANK,
    Change,
    Fact,
    Standing,
    answered_after_replay,
    change,
    revived,
    settle,
)
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

# An earlier step reported after a later one: nothing changes, and nothing is wrong.
STALE_PAIRS = [
    (S.delivered, S.requested),
    (S.accepted, S.requested),
    (S.accepted, S.delivered),
    (S.in_progress, S.requested),
    (S.in_progress, S.delivered),
    (S.in_progress, S.accepted),
    (S.completed, S.requested),
    (S.completed, S.delivered),
    (S.completed, S.accepted),
    (S.completed, S.in_progress),
    (S.declined, S.requested),
    (S.declined, S.delivered),
    (S.cancelled, S.requested),
    (S.cancelled, S.delivered),
    (S.cancelled, S.accepted),  # accepted, then cancelled; the acceptance is reported late
    (S.cancelled, S.in_progress),
    (S.failed, S.requested),
]

# Not allowed from the current state: the API answers 409 and nothing changes.
REFUSED_PAIRS = [
    (S.requested, S.in_progress),  # work cannot start before the agency accepts
    (S.requested, S.completed),
    (S.delivered, S.in_progress),
    (S.delivered, S.completed),
    (S.delivered, S.failed),  # the agency has it: delivery cannot fail any more
    (S.accepted, S.declined),  # an agency that accepted cannot decline; it completes not_successful
    (S.accepted, S.failed),
    (S.in_progress, S.declined),
    (S.in_progress, S.failed),
    (S.declined, S.accepted),
    (S.declined, S.in_progress),
    (S.declined, S.completed),
    (S.declined, S.cancelled),
    (S.declined, S.failed),
    (S.completed, S.declined),
    (S.completed, S.cancelled),
    (S.completed, S.failed),
    (S.cancelled, S.declined),
    (S.cancelled, S.completed),
    (S.cancelled, S.failed),
    (S.failed, S.delivered),
    (S.failed, S.accepted),
    (S.failed, S.declined),
    (S.failed, S.in_progress),
    (S.failed, S.completed),
    (S.failed, S.cancelled),
]


@pytest.mark.parametrize(("current", "target"), ALLOWED_PAIRS)
def test_allowed_transitions_apply(current: S, target: S) -> None:
    assert change(current, target) is Change.applied


@pytest.mark.parametrize("state", list(S))
def test_repeating_a_state_is_a_no_op(state: S) -> None:
    assert change(state, state) is Change.duplicate


@pytest.mark.parametrize(("current", "target"), STALE_PAIRS)
def test_an_earlier_step_reported_late_changes_nothing(current: S, target: S) -> None:
    assert change(current, target) is Change.stale


@pytest.mark.parametrize(("current", "target"), REFUSED_PAIRS)
def test_forbidden_transitions_are_refused(current: S, target: S) -> None:
    assert change(current, target) is Change.refused


def test_the_lists_cover_every_pair_of_states_once() -> None:
    listed = ALLOWED_PAIRS + STALE_PAIRS + REFUSED_PAIRS + [(s, s) for s in S]
    assert len(listed) == len(set(listed)) == len(S) ** 2


def test_the_table_allows_exactly_the_listed_pairs_and_final_states_allow_nothing() -> None:
    assert set(ALLOWED) == set(S)
    assert {(c, t) for c in S for t in ALLOWED[c]} == set(ALLOWED_PAIRS)
    assert {S.declined, S.completed, S.cancelled, S.failed} == FINAL
    assert all(ALLOWED[final] == frozenset() for final in FINAL)


def test_every_allowed_transition_goes_up_the_rank_so_a_command_is_also_a_fact_that_applies() -> None:
    assert sorted(RANK.values()) == list(range(len(S)))
    for current, target in ALLOWED_PAIRS:
        assert RANK[target] > RANK[current], (current, target)


# --- facts: any arrival order ends in the same state ------------------------------------------------------

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REASONS = {S.declined: "no_capacity", S.failed: "agency endpoint kept failing", S.cancelled: "consent_withdrawn"}


def _fact(state: S, minute: int, event_id: UUID | None = None, reason: str | None = None) -> Fact:
    outcome = "successful" if state is S.completed else None
    return Fact(state, T0 + timedelta(minutes=minute), event_id or uuid4(), reason or REASONS.get(state), outcome)


@st.composite
def histories(draw: st.DrawFn) -> list[Fact]:
    """One referral's events as they happened: a walk along allowed transitions from requested."""
    path = [S.requested]
    while ALLOWED[path[-1]] and draw(st.booleans()):
        path.append(draw(st.sampled_from(sorted(ALLOWED[path[-1]]))))
    return [_fact(state, minute, UUID(int=draw(st.integers(0, 2**64)))) for minute, state in enumerate(path)]


@st.composite
def histories_with_noise(draw: st.DrawFn) -> list[Fact]:
    """A history plus what real streams add: replays under new ids, and facts that contradict the path."""
    facts = draw(histories())
    replays = draw(st.lists(st.sampled_from(facts), max_size=3))
    facts += [_fact(f.state, draw(st.integers(0, 20)), UUID(int=draw(st.integers(0, 2**64)))) for f in replays]
    contradictions = draw(st.lists(st.tuples(st.sampled_from(list(S)), st.integers(0, 20)), max_size=2))
    facts += [
        _fact(state, minute, UUID(int=draw(st.integers(0, 2**64))), reason=f"contradiction {minute}")
        for state, minute in contradictions
    ]
    return facts


def fold(facts: list[Fact]) -> Standing:
    standing: Standing | None = None
    for fact in facts:
        standing, _ = settle(standing, fact)
    assert standing is not None
    return standing


@settings(max_examples=300)
@given(st.data())
def test_any_permutation_of_a_referrals_events_ends_in_the_same_state(data: st.DataObject) -> None:
    facts = data.draw(histories())
    shuffled = data.draw(st.permutations(facts))
    # The same state, and the same details of it: reason, outcome, when and by which event.
    assert fold(shuffled) == fold(facts)
    assert fold(shuffled).state is facts[-1].state


@settings(max_examples=300)
@given(st.data())
def test_replays_and_contradicting_facts_still_settle_the_same_whatever_the_order(data: st.DataObject) -> None:
    facts = data.draw(histories_with_noise())
    shuffled = data.draw(st.permutations(facts))
    assert fold(shuffled) == fold(facts)


@given(histories())
def test_a_fact_seen_twice_changes_nothing_the_second_time(facts: list[Fact]) -> None:
    standing = fold(facts)
    for fact in facts:
        again, outcome = settle(standing, fact)
        assert again == standing
        assert outcome in (Change.duplicate, Change.stale)


def test_a_late_delivered_after_accepted_is_stale_and_keeps_the_acceptance() -> None:
    accepted = settle(None, _fact(S.accepted, 2))[0]
    standing, outcome = settle(accepted, _fact(S.delivered, 1))
    assert (standing, outcome) == (accepted, Change.stale)


def test_a_completion_seen_before_its_acceptance_is_the_state_and_the_acceptance_is_stale() -> None:
    completed, outcome = settle(settle(None, _fact(S.delivered, 1))[0], _fact(S.completed, 5))
    assert (completed.state, completed.outcome, outcome) == (S.completed, "successful", Change.applied)
    assert settle(completed, _fact(S.accepted, 3)) == (completed, Change.stale)


def test_two_declines_under_different_ids_keep_the_earliest_reason_whichever_arrives_first() -> None:
    first, second = _fact(S.declined, 1, reason="no_capacity"), _fact(S.declined, 2, reason="out_of_area")
    assert fold([first, second]) == fold([second, first]) == Standing.of(first)
    assert settle(Standing.of(second), first)[1] is Change.duplicate


def test_a_replayed_delivery_revives_a_failed_referral_only_when_nobody_took_its_needs() -> None:
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    failed = Standing(S.failed, at, uuid4(), reason="gave up")
    replayed = Fact(S.delivered, at + timedelta(hours=1), uuid4())
    assert revived(failed, replayed, replaced=False)
    assert not revived(failed, replayed, replaced=True), "its needs went to another agency: it stays failed"
    early = Fact(S.delivered, at - timedelta(seconds=1), uuid4())
    assert not revived(failed, early, replaced=False), "a delivery before the failure is not a replay"
    assert not revived(Standing(S.declined, at, uuid4()), replayed, replaced=False)


def test_an_agency_answering_a_failed_referral_was_reached_by_a_replay_unless_its_needs_went_elsewhere() -> None:
    for answer in (S.accepted, S.declined):
        assert answered_after_replay(S.failed, answer, replaced=False)
        assert not answered_after_replay(S.failed, answer, replaced=True)
    assert not answered_after_replay(S.failed, S.cancelled, replaced=False), "staff cannot cancel a failed one"
    assert not answered_after_replay(S.failed, S.completed, replaced=False), "completing needs an acceptance"
    assert not answered_after_replay(S.declined, S.accepted, replaced=False)
