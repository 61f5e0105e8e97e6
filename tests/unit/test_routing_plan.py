"""The case plan, pure: a staged case's needs in the centre's stages, one stage under way at a time."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from routing.plan import PlanRefused, advanced, load_plan, new_plan, routes_now, with_needs
from schemas.catalogue import CatalogueError
from schemas.vocab import Need

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


def test_the_stages_file_names_every_need_once(tmp_path: Path) -> None:
    broken = tmp_path / "plan.toml"
    text = Path("catalogue/plan.toml").read_text(encoding="utf-8")
    broken.write_text(text.replace('needs = ["safety"]', 'needs = ["safety", "legal"]'), encoding="utf-8")
    with pytest.raises(CatalogueError, match="twice: \\['legal'\\]"):
        load_plan(broken)
    broken.write_text(text.replace('needs = ["safety"]', 'needs = ["medical"]'), encoding="utf-8")
    with pytest.raises(CatalogueError, match="in no stage: \\['safety'\\]"):
        load_plan(broken)
