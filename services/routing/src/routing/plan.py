"""The case plan, pure: stages from the centre's own model (`catalogue/plan.toml`), a staged case's needs laid out in
them, and how a plan moves on — one stage under way at a time, each later stage's needs routed when the caseworker
advances it, or when the stage's rule (`advance_when`) is met by the states of its referrals. No I/O beyond reading
the file."""

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from schemas.catalogue import CatalogueError, parse_toml
from schemas.events import PlanStage
from schemas.validators import listed_once
from schemas.vocab import CompletionOutcome, Need, ReferralState

PLAN_FILE = "plan.toml"  # beside rules.toml

# When a stage ends by itself: every referral of the stage taken up (accepted, in progress or completed), or every one
# completed. Without a rule only a caseworker advances the stage.
AdvanceWhen = Literal["accepted", "completed"]
REACHED: dict[AdvanceWhen, frozenset[ReferralState]] = {
    "accepted": frozenset({ReferralState.accepted, ReferralState.in_progress, ReferralState.completed}),
    "completed": frozenset({ReferralState.completed}),
}


class StageModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")]
    name_ko: Annotated[str, Field(min_length=1, max_length=80)]
    name_en: Annotated[str, Field(min_length=1, max_length=80)]
    needs: Annotated[list[Need], Field(min_length=1), listed_once("need")]
    advance_when: AdvanceWhen | None = None


class PlanModel(BaseModel):
    """The centre's stages, in order; every need in exactly one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: Annotated[list[StageModel], Field(min_length=1, max_length=12)]

    @model_validator(mode="after")
    def _every_need_once(self) -> "PlanModel":
        seen = [need for stage in self.stages for need in stage.needs]
        twice = sorted({str(n) for n in seen if seen.count(n) > 1})
        missing = sorted(str(n) for n in set(Need) - set(seen))
        ids = [stage.id for stage in self.stages]
        if twice or missing or len(set(ids)) != len(ids):
            raise ValueError(
                f"every need in exactly one stage and each stage once (twice: {twice or 'none'};"
                f" in no stage: {missing or 'none'})"
            )
        return self

    def stage_of(self, need: Need) -> str:
        return next(stage.id for stage in self.stages if need in stage.needs)

    def rule_of(self, stage_id: str) -> AdvanceWhen | None:
        """The stage's rule for ending by itself (None: a stage the file no longer has, or one without a rule)."""
        return next((stage.advance_when for stage in self.stages if stage.id == stage_id), None)


def load_plan(path: Path) -> PlanModel:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogueError(f"{path.name}: the case plan's stages are missing ({path})") from None
    return parse_toml(path, text, PlanModel)


class PlanRefused(ValueError):
    """A change the plan cannot take (the caller answers 409)."""


def new_plan(model: PlanModel, needs: Sequence[Need], at: datetime) -> list[PlanStage]:
    """The case's needs in the centre's stages (the case's own order within a stage); the first stage with needs is
    under way, the others wait. Stages without needs are kept, empty, so a caseworker can add one later."""
    stages = [
        PlanStage(stage=stage.id, needs=[n for n in needs if n in stage.needs], state="waiting")
        for stage in model.stages
    ]
    return advanced(stages, at)[0]


def current(stages: Sequence[PlanStage]) -> PlanStage | None:
    return next((s for s in stages if s.state == "active"), None)


def advanced(stages: Sequence[PlanStage], at: datetime) -> tuple[list[PlanStage], list[Need]]:
    """The stage under way done, the next stage with needs under way: the plan after, and the needs to route now.
    At the start (nothing under way yet) the first stage with needs starts. PlanRefused when nothing is left."""
    plan = list(stages)
    index = next((i for i, s in enumerate(plan) if s.state == "active"), None)
    if index is not None:
        plan[index] = plan[index].model_copy(update={"state": "done", "ended_at": at})
    later = (i for i, s in enumerate(plan) if s.state == "waiting" and s.needs)
    following = next(later, None)
    if following is None:
        if index is None:
            raise PlanRefused("the plan has no stage left to start")
        return [s.model_copy(update={"state": "done"}) if s.state == "waiting" else s for s in plan], []
    plan[following] = plan[following].model_copy(update={"state": "active", "started_at": at})
    # Waiting stages without needs before the new one are passed over: nothing to do in them.
    plan = [s.model_copy(update={"state": "done"}) if s.state == "waiting" and i < following else s
            for i, s in enumerate(plan)]  # fmt: skip
    return plan, list(plan[following].needs)


def with_needs(stages: Sequence[PlanStage], stage_id: str, needs: Sequence[Need]) -> list[PlanStage]:
    """The plan with this waiting stage's needs set (added, removed or reordered); a need listed here leaves any other
    waiting stage. PlanRefused for a stage that started or ended, or a need routed already in one that did."""
    target = next((s for s in stages if s.stage == stage_id), None)
    if target is None:
        raise PlanRefused(f"no stage {stage_id} in this plan")
    if target.state != "waiting":
        raise PlanRefused(f"stage {stage_id} is {target.state}: only a waiting stage's needs can change")
    started = {n for s in stages if s.state != "waiting" for n in s.needs}
    if taken := sorted(set(needs) & started):
        raise PlanRefused(f"already routed in an earlier stage: {', '.join(taken)}")
    return [
        s.model_copy(update={"needs": list(needs)})
        if s.stage == stage_id
        else s.model_copy(update={"needs": [n for n in s.needs if n not in needs]})
        if s.state == "waiting"
        else s
        for s in stages
    ]


def routes_now(stages: Sequence[PlanStage]) -> list[Need]:
    """The needs a staged case routes at submission: the stage under way's."""
    stage = current(stages)
    return [] if stage is None else list(stage.needs)


@dataclass(frozen=True)
class ReferralStanding:
    """What routing knows of one referral it made: its needs, its latest state (and a completion's outcome), and
    whether routing re-routed its needs (it was declined, failed or overdue: its replacement, or the needs pending
    after it, count instead)."""

    needs: frozenset[Need]
    state: ReferralState
    outcome: CompletionOutcome | None = None
    rerouted: bool = False


def rule_name(rule: AdvanceWhen) -> str:
    """Who advanced the plan, when the rule did: `changed_by` of its `case.plan` event (hence the timeline)."""
    return f"rule:all_{rule}"


def rule_met(
    rule: AdvanceWhen | None, stage: PlanStage, referrals: Iterable[ReferralStanding], pending: Collection[Need]
) -> bool:
    """Whether the stage under way ends by its rule: no need of it still pending, at least one referral for its
    needs, and every one of them (a re-routed one aside: its replacement counts) in the state the rule asks for. A
    referral that ended without help and was not re-routed (cancelled, completed without success) keeps the stage
    open: the caseworker decides. No rule, or a stage not under way: never."""
    if rule is None or stage.state != "active" or set(stage.needs) & set(pending):
        return False
    ours = [r for r in referrals if r.needs & set(stage.needs) and not r.rerouted]
    return bool(ours) and all(
        r.state in REACHED[rule] and r.outcome is not CompletionOutcome.not_successful for r in ours
    )
