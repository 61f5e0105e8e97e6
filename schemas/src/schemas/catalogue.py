"""The agency catalogue format: one TOML file per agency, validated at start with errors naming file and field."""

import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    EmailStr,
    Field,
    HttpUrl,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from .events import AgencyId
from .validators import listed_once
from .vocab import CrimeType, Need, Urgency

# Fields of a case an agency may be allowed to receive, beyond crime type, needs and urgency.
SHAREABLE_FIELDS = ("region", "language", "victim.name", "victim.phone", "victim.email", "summary")
SENSITIVE_FIELDS = frozenset({"summary"})  # may describe health or sex life (PIPA Art. 23)


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Weekday = Annotated[int, Field(ge=0, le=6)]  # Monday is 0


class OpeningHours(Entry):
    """When the agency answers: around the clock, or on `weekdays` from `opens` to `closes` local time, public
    holidays (catalogue/holidays.toml) excepted unless `open_on_holidays`."""

    always_open: bool = False
    open_on_holidays: bool = False
    timezone: str = "Asia/Seoul"
    weekdays: Annotated[list[Weekday], Field(min_length=1), listed_once("weekday")] = [0, 1, 2, 3, 4]
    opens: time = time(9, 0)
    closes: time = time(18, 0)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'Asia/Seoul'") from None
        return name

    @field_validator("closes")
    @classmethod
    def _closes_after_opening(cls, closes: time, info: ValidationInfo) -> time:
        opens = info.data.get("opens")
        if opens is not None and closes <= opens:
            raise ValueError("must be later than `opens` (for round-the-clock service set always_open = true)")
        return closes


# --- delivery channels -------------------------------------------------------------------------------
# `type` picks the agency gateway's plugin that delivers; webhook, email and kafka are built in, any other
# type is a plugin package's, whose own settings model checks the rest of the table when the gateway starts.

ChannelType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
# The name of an environment variable holding a secret: the catalogue names it, the deployment sets it.
SecretEnv = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")]
Timeout = Annotated[float, Field(gt=0, le=60)]


class WebhookChannel(Entry):
    """HTTP POST of the referral, signed with HMAC-SHA256 under the secret in the variable `secret_env`."""

    type: Literal["webhook"]
    url: HttpUrl
    secret_env: SecretEnv
    timeout_seconds: Timeout = 10.0


class EmailChannel(Entry):
    """The referral by e-mail over SMTP; `${VARIABLE}`s let the deployment name the relay."""

    type: Literal["email"]
    to: EmailStr
    from_address: EmailStr
    smtp_host: Annotated[str, Field(min_length=1)]
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    tls: Literal["starttls", "implicit", "none"] = "starttls"  # "none" only for a relay on the same host
    username_env: SecretEnv | None = None
    password_env: SecretEnv | None = None
    timeout_seconds: Timeout = 10.0


class KafkaChannel(Entry):
    """The agency consumes `referrals.<agency-id>` itself, with its own consumer group, and acknowledges on
    `acks.<agency-id>`; the gateway only records that the referral is available."""

    type: Literal["kafka"]


class PluginChannel(Entry):
    """A channel of an installed gateway plugin: `type` names the plugin, which checks the other settings."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: ChannelType


BUILT_IN_CHANNELS = ("webhook", "email", "kafka")


def _channel_kind(value: object) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) and kind in BUILT_IN_CHANNELS else "plugin"


Channel = Annotated[
    Annotated[WebhookChannel, Tag("webhook")]
    | Annotated[EmailChannel, Tag("email")]
    | Annotated[KafkaChannel, Tag("kafka")]
    | Annotated[PluginChannel, Tag("plugin")],
    Discriminator(_channel_kind),
]


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
    only_specialties: bool = False  # takes only cases of its specialties (a stalking centre, say)
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

    @field_validator("only_specialties")
    @classmethod
    def _specialties_to_keep_to(cls, only: bool, info: ValidationInfo) -> bool:
        if only and not info.data.get("specialties"):
            raise ValueError("needs a non-empty `specialties` list to keep to")
        return only

    @field_validator("consent_notice")
    @classmethod
    def _notice_names_sensitive_items(cls, notice: ConsentNotice, info: ValidationInfo) -> ConsentNotice:
        # PIPA Art. 23: the victim must be told, separately, when sensitive items would be provided.
        sensitive = SENSITIVE_FIELDS & set(info.data.get("allowed_fields") or [])
        if sensitive and not any("sensitive" in item for item in notice.items):
            raise ValueError(f"allowed_fields include sensitive {sorted(sensitive)}: an item must say '(sensitive)'")
        return notice


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


M = TypeVar("M", bound=BaseModel)


def parse_toml(path: Path, text: str, model: type[M], *, reserved: tuple[str, ...] = ()) -> M:
    """A catalogue file's TOML text as `model`; a CatalogueError names the file and the field. A file that must not
    set a field the program fills in itself (from another file) names it in `reserved`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CatalogueError(f"{path.name}: not valid TOML ({error})") from None
    for name in reserved:
        if name in data:
            raise CatalogueError(f"{path.name}: {name}: not set in this file")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<file>'}: {e['msg']}" for e in error.errors())
        raise CatalogueError(f"{path.name}: {problems}") from None


def load_agency(path: Path) -> Agency:
    agency = parse_toml(path, _expand(path.read_text(encoding="utf-8"), path), Agency)
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
