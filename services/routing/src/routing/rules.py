"""The routing rules file (`catalogue/rules.toml`): ranking, hours and crime-type hubs, validated at start."""

import tomllib
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from schemas.catalogue import Catalogue, CatalogueError
from schemas.events import AgencyId
from schemas.validators import listed_once
from schemas.vocab import CrimeType, Urgency

RankKey = Literal["hub", "already_chosen", "specialty", "language", "priority"]


class RuleEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HoursRule(RuleEntry):
    # Urgencies for which an agency closed at the moment of routing is skipped for the next candidate.
    skip_closed_for: list[Urgency] = [Urgency.urgent]


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


def load_rules(path: Path, catalogue: Catalogue) -> Rules:
    """Read and check the rules file against the catalogue; a CatalogueError names the file and the field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(f"{path.name}: the rules file is missing ({path})") from None
    except tomllib.TOMLDecodeError as error:
        raise CatalogueError(f"{path.name}: not valid TOML ({error})") from None
    try:
        rules = Rules.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<file>'}: {e['msg']}" for e in error.errors())
        raise CatalogueError(f"{path.name}: {problems}") from None
    for index, hub in enumerate(rules.hubs):
        for position, agency_id in enumerate(hub.agencies):
            if agency_id not in catalogue:
                raise CatalogueError(
                    f"{path.name}: hubs.{index}.agencies.{position}: no agency {agency_id!r} in the catalogue"
                )
    return rules
