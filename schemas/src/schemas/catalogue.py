"""The agency catalogue format: one TOML file per agency, validated at start with errors naming file and field."""

import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator

from .events import AgencyId
from .vocab import CrimeType, Need, Urgency

# Fields of a case an agency may be allowed to receive, beyond crime type, needs and urgency.
SHAREABLE_FIELDS = ("region", "language", "victim.name", "victim.phone", "victim.email", "summary")
SENSITIVE_FIELDS = frozenset({"summary"})  # may describe health or sex life (PIPA Art. 23)


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpeningHours(Entry):
    always_open: bool = False
    timezone: str = "Asia/Seoul"
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = [0, 1, 2, 3, 4]  # Monday is 0
    opens: time = time(9, 0)
    closes: time = time(18, 0)


class WebhookChannel(Entry):
    type: Literal["webhook"]
    url: HttpUrl
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 10.0


Channel = WebhookChannel


class ConsentNotice(Entry):
    """What the victim is told before consenting (PIPA Art. 17): recipient, purpose, items, retention."""

    purpose: Annotated[str, Field(min_length=1)]
    items: Annotated[list[str], Field(min_length=1)]
    retention: Annotated[str, Field(min_length=1)]


class Agency(Entry):
    id: AgencyId
    name_ko: Annotated[str, Field(min_length=1)]
    name_en: Annotated[str, Field(min_length=1)]
    services: Annotated[list[Need], Field(min_length=1)]
    specialties: list[CrimeType] = []
    regions: Annotated[list[str], Field(min_length=1)]  # "*" serves everywhere
    languages: Annotated[list[str], Field(min_length=1)]
    hours: OpeningHours = OpeningHours()
    capacity: Annotated[int, Field(ge=0)] = 100
    priority: Annotated[int, Field(ge=0)] = 100  # lower is tried first among equals
    ack_hours: dict[Urgency, Annotated[int, Field(gt=0)]] = {}
    channel: Channel
    allowed_fields: list[str] = []
    consent_notice: ConsentNotice

    @field_validator("allowed_fields")
    @classmethod
    def _known_fields(cls, fields: list[str]) -> list[str]:
        unknown = sorted(set(fields) - set(SHAREABLE_FIELDS))
        if unknown:
            raise ValueError(f"unknown fields {unknown}; shareable fields are {list(SHAREABLE_FIELDS)}")
        return fields


class CatalogueError(ValueError):
    """A catalogue file that cannot be used; the message names the file and the field."""


_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)\}")


def _expand(text: str, path: Path) -> str:
    """Replace ${NAME} with the environment's value, so endpoints differ per deployment, not per file."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise CatalogueError(f"{path.name}: environment variable {name} is not set")
        return os.environ[name]

    return _VARIABLE.sub(value, text)


def load_agency(path: Path) -> Agency:
    try:
        data = tomllib.loads(_expand(path.read_text(encoding="utf-8"), path))
    except tomllib.TOMLDecodeError as error:
        raise CatalogueError(f"{path.name}: not valid TOML ({error})") from None
    try:
        agency = Agency.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<file>'}: {e['msg']}" for e in error.errors())
        raise CatalogueError(f"{path.name}: {problems}") from None
    if agency.id != path.stem:
        raise CatalogueError(f"{path.name}: id {agency.id!r} must match the file name {path.stem!r}")
    return agency


@dataclass(frozen=True)
class Catalogue:
    """All agencies by id, in file-name order."""

    agencies: dict[str, Agency]

    def __getitem__(self, agency_id: str) -> Agency:
        return self.agencies[agency_id]

    def __contains__(self, agency_id: object) -> bool:
        return agency_id in self.agencies

    def __iter__(self) -> Iterator[Agency]:
        return iter(self.agencies.values())


def load_catalogue(directory: Path) -> Catalogue:
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise CatalogueError(f"no agency files (*.toml) in {directory}")
    return Catalogue(agencies={a.id: a for a in map(load_agency, files)})
