"""The routing rules file (`catalogue/rules.toml`): ranking, hours and crime-type hubs, validated at start."""

from datetime import date
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator
from schemas.calendar import HOLIDAYS_FILE, read_public_holidays
from schemas.catalogue import Catalogue, CatalogueError, parse_toml
from schemas.events import AgencyId
from schemas.validators import listed_once
from schemas.vocab import CrimeType, Need, Urgency

from .plan import PLAN_FILE, PlanModel, load_plan

RankKey = Literal["hub", "already_chosen", "specialty", "language", "priority"]


class RuleEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HoursRule(RuleEntry):
    """Per urgency, the needs that are time-critical: they go only to an agency open at the moment of routing.
    Every other need goes to the best agency even when it is closed, and the decision says when it opens."""

    time_critical: dict[Urgency, Annotated[list[Need], listed_once("need")]] = {
        Urgency.urgent: [Need.safety, Need.medical]
    }

    def is_time_critical(self, need: Need, urgency: Urgency) -> bool:
        return need in self.time_critical.get(urgency, ())


class HubRule(RuleEntry):
    """Agencies tried first, for every need they offer, in cases of these crime types (and urgencies)."""

    crime_types: Annotated[list[CrimeType], Field(min_length=1)]
    urgencies: Annotated[list[Urgency], Field(min_length=1)] = list(Urgency)
    agencies: list[AgencyId] = []
    always_open: bool = False
    specialists: bool = False
    note: Annotated[str, Field(min_length=1, max_length=200)]  # the explanation recorded when the hub is chosen

    @model_validator(mode="after")
    def _selects_something(self) -> "HubRule":
        if not (self.agencies or self.always_open or self.specialists):
            raise ValueError("a hub names `agencies` or selects them with `always_open` and/or `specialists`")
        return self


class Rules(RuleEntry):
    rank_by: Annotated[list[RankKey], Field(min_length=1), listed_once("ranking key")] = list(get_args(RankKey))
    hours: HoursRule = HoursRule()
    hubs: list[HubRule] = []
    # Read from holidays.toml beside the rules file (see load_rules), never written in rules.toml.
    public_holidays: frozenset[date] = frozenset()
    # Read from plan.toml beside the rules file: the stages of a staged case (none: no case can be staged).
    plan: PlanModel | None = None


def load_rules(path: Path, catalogue: Catalogue) -> Rules:
    """Read and check the rules file against the catalogue; a CatalogueError names the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogueError(f"{path.name}: the rules file is missing ({path})") from None
    rules = parse_toml(path, text, Rules, reserved=("public_holidays", "plan"))  # kept in files of their own
    for index, hub in enumerate(rules.hubs):
        for position, agency_id in enumerate(hub.agencies):
            if agency_id not in catalogue:
                raise CatalogueError(
                    f"{path.name}: hubs.{index}.agencies.{position}: no agency {agency_id!r} in the catalogue"
                )
    plan = path.parent / PLAN_FILE
    return rules.model_copy(
        update={
            "public_holidays": read_public_holidays(path.parent / HOLIDAYS_FILE),
            "plan": load_plan(plan) if plan.exists() else None,
        }
    )
