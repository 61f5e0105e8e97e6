"""The case plan, pure: a staged case's needs in the centre's stages, one stage under way at a time."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from routing.plan import (
    PlanRefused,
    ReferralStanding,
    advanced,
    current,
    load_plan,
    new_plan,
    routes_now,
    rule_met,
    rule_name,
    with_needs,
)
from schemas.catalogue import CatalogueError
from schemas.vocab import CompletionOutcome, Need, ReferralState

PLAN = load_plan(Path("catalogue/plan.toml"))
T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
NEEDS = [Need.legal, Need.safety, Need.employment, Need.counselling]


def states(stages: list) -> dict[str, tuple[str, list[str]]]:  # type: ignore[type-arg]
    return {s.stage: (s.state, [str(n) for n in s.needs]) for s in stages}


def test_the_first_stage_with_needs_routes_now_and_the_others_wait() -> None:
    stages = new_plan(PLAN, NEEDS, T0)
    assert states(stages) == {
        "crisis": ("active", ["safety"]),
        "investigation_legal": ("waiting", ["legal"]),
        "recovery": ("waiting", ["counselling"]),
        "daily_life": ("waiting", ["employment"]),
    }
    assert routes_now(stages) == [Need.safety] and stages[0].started_at == T0
    later = new_plan(PLAN, [Need.employment, Need.counselling], T0)  # no crisis need: recovery first
    assert states(later)["crisis"] == ("done", []) and routes_now(later) == [Need.counselling]


def test_advancing_ends_the_stage_under_way_and_starts_the_next_with_needs() -> None:
    stages = new_plan(PLAN, NEEDS, T0)
    stages, now = advanced(stages, T0 + timedelta(days=2))
    assert now == [Need.legal] and states(stages)["crisis"][0] == "done"
    assert stages[0].ended_at == stages[1].started_at == T0 + timedelta(days=2)
    stages, now = advanced(stages, T0 + timedelta(days=9))
    stages, now = advanced(stages, T0 + timedelta(days=30))
    assert now == [Need.employment]
    stages, now = advanced(stages, T0 + timedelta(days=60))
    assert now == [] and all(s.state == "done" for s in stages), "the last stage ends the plan"
    with pytest.raises(PlanRefused):
        advanced(stages, T0 + timedelta(days=61))


def test_a_waiting_stages_needs_can_change_but_not_a_started_one() -> None:
    stages = new_plan(PLAN, NEEDS, T0)
    moved = with_needs(stages, "recovery", [Need.employment, Need.counselling, Need.medical])
    assert states(moved)["recovery"] == ("waiting", ["employment", "counselling", "medical"])
    assert states(moved)["daily_life"] == ("waiting", []), "a need moved here leaves its old stage"
    with pytest.raises(PlanRefused, match="active"):
        with_needs(stages, "crisis", [Need.safety, Need.housing])
    with pytest.raises(PlanRefused, match="safety"):
        with_needs(stages, "recovery", [Need.safety])
    with pytest.raises(PlanRefused, match="no stage"):
        with_needs(stages, "leisure", [])
    # A stage left without needs is passed over when the plan advances.
    emptied = with_needs(stages, "investigation_legal", [])
    after, now = advanced(emptied, T0 + timedelta(days=1))
    assert now == [Need.counselling] and states(after)["investigation_legal"] == ("done", [])


def test_the_stages_file_names_every_need_once_and_only_known_rules(tmp_path: Path) -> None:
    broken = tmp_path / "plan.toml"
    text = Path("catalogue/plan.toml").read_text(encoding="utf-8")
    broken.write_text(text.replace('needs = ["safety"]', 'needs = ["safety", "legal"]'), encoding="utf-8")
    with pytest.raises(CatalogueError, match="twice: \\['legal'\\]"):
        load_plan(broken)
    broken.write_text(text.replace('needs = ["safety"]', 'needs = ["medical"]'), encoding="utf-8")
    with pytest.raises(CatalogueError, match="in no stage: \\['safety'\\]"):
        load_plan(broken)
    broken.write_text(text.replace('advance_when = "accepted"', 'advance_when = "acknowledged"'), encoding="utf-8")
    with pytest.raises(CatalogueError, match="advance_when"):
        load_plan(broken)


def test_the_centres_stages_say_which_end_by_a_rule() -> None:
    rules = {stage.id: stage.advance_when for stage in PLAN.stages}
    assert rules == {"crisis": "accepted", "investigation_legal": None, "recovery": "completed", "daily_life": None}
    assert PLAN.rule_of("crisis") == "accepted" and PLAN.rule_of("no_such_stage") is None
    assert rule_name("accepted") == "rule:all_accepted" and rule_name("completed") == "rule:all_completed"


S = ReferralState


def referral(
    *needs: Need, state: ReferralState = S.requested, outcome: CompletionOutcome | None = None, rerouted: bool = False
) -> ReferralStanding:
    return ReferralStanding(frozenset(needs), state, outcome, rerouted)


LEGAL_STAGE = advanced(new_plan(PLAN, [Need.safety, Need.legal, Need.investigation], T0), T0)[0][1]


@pytest.mark.parametrize(
    ("state", "accepted", "completed"),
    [
        (S.requested, False, False),
        (S.delivered, False, False),
        (S.accepted, True, False),
        (S.in_progress, True, False),
        (S.completed, True, True),
        (S.declined, False, False),
        (S.failed, False, False),
        (S.cancelled, False, False),
    ],
)
def test_a_stage_ends_by_its_rule_when_every_referral_is_in_the_state_it_asks(
    state: ReferralState, accepted: bool, completed: bool
) -> None:
    assert LEGAL_STAGE.state == "active" and LEGAL_STAGE.needs == [Need.legal, Need.investigation]
    outcome = CompletionOutcome.successful if state is S.completed else None
    ours = [
        referral(Need.legal, state=S.completed, outcome=CompletionOutcome.successful),
        referral(Need.investigation, state=state, outcome=outcome),
    ]
    assert rule_met("accepted", LEGAL_STAGE, ours, set()) is accepted
    assert rule_met("completed", LEGAL_STAGE, ours, set()) is completed
    assert not rule_met(None, LEGAL_STAGE, ours, set()), "without a rule only the caseworker advances"


def test_only_the_stages_own_referrals_count_and_a_rerouted_one_through_its_replacement() -> None:
    crisis_police = referral(Need.safety, state=S.declined)  # an earlier stage's: not this stage's business
    declined = referral(Need.legal, state=S.declined)
    taken = referral(Need.investigation, state=S.accepted)
    assert not rule_met("accepted", LEGAL_STAGE, [crisis_police, declined, taken], set()), "declined, not yet re-routed"
    rerouted = referral(Need.legal, state=S.declined, rerouted=True)
    replacement = referral(Need.legal)
    assert not rule_met("accepted", LEGAL_STAGE, [rerouted, replacement, taken], set()), "the replacement must answer"
    replacement = referral(Need.legal, state=S.accepted)
    assert rule_met("accepted", LEGAL_STAGE, [crisis_police, rerouted, replacement, taken], set())


def test_a_pending_need_an_unsuccessful_completion_or_no_referral_keeps_the_stage_open() -> None:
    taken = referral(Need.investigation, state=S.accepted)
    rerouted = referral(Need.legal, state=S.failed, rerouted=True)  # re-routed to nobody: legal is pending
    assert not rule_met("accepted", LEGAL_STAGE, [taken, rerouted], {Need.legal})
    assert rule_met("accepted", LEGAL_STAGE, [taken, rerouted], set()), "the caseworker closed the pending need"
    assert not rule_met("accepted", LEGAL_STAGE, [], set()), "no referral at all: nothing to go by"
    assert not rule_met("accepted", LEGAL_STAGE, [rerouted], set())
    failed = referral(Need.investigation, state=S.completed, outcome=CompletionOutcome.not_successful)
    assert not rule_met("accepted", LEGAL_STAGE, [failed], set())
    assert not rule_met("completed", LEGAL_STAGE, [failed], set())


def test_a_stage_not_under_way_never_ends_by_its_rule() -> None:
    stages = new_plan(PLAN, [Need.safety, Need.legal], T0)
    waiting = next(s for s in stages if s.stage == "investigation_legal")
    accepted = [referral(Need.legal, state=S.accepted)]
    assert waiting.state == "waiting" and not rule_met("accepted", waiting, accepted, set())
    crisis = current(stages)
    assert crisis is not None and rule_met("accepted", crisis, [referral(Need.safety, state=S.in_progress)], set())
