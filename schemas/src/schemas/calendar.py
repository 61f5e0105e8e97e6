"""Opening hours as time, pure: is an agency open, when does it next open, and when do N of its working hours end.

Every service that reasons about an agency's hours uses these, so routing's "closed now; opens Mon 09:00" and
notify's deadline counted in the agency's opening hours never disagree. Public holidays close every agency that
is not open around the clock, unless its catalogue entry says `open_on_holidays`.
"""

import logging
from collections.abc import Container, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .catalogue import CatalogueError, OpeningHours, parse_toml

log = logging.getLogger(__name__)

# How far ahead an agency's next opening is searched: a calendar with no working day in two years is a data error.
_SEARCH_DAYS = 2 * 366
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # not %a: that follows the process's locale


class Holiday(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    date: date
    name_ko: Annotated[str, Field(min_length=1, max_length=80)]
    name_en: Annotated[str, Field(min_length=1, max_length=80)]


class HolidayFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    holidays: list[Holiday] = []

    @field_validator("holidays")
    @classmethod
    def _each_date_once(cls, holidays: list[Holiday]) -> list[Holiday]:
        seen: set[date] = set()
        for holiday in holidays:
            if holiday.date in seen:
                raise ValueError(f"{holiday.date} is listed twice")
            seen.add(holiday.date)
        return holidays


HOLIDAYS_FILE = "holidays.toml"  # beside the rules file and the agencies' folder, in the catalogue
Holidays = Container[date]  # public holidays, as local dates (the agencies' own, in their time zone)
NO_HOLIDAYS: frozenset[date] = frozenset()


def load_holidays(path: Path) -> dict[date, str]:
    """Read the public holidays file: each date with its name; a CatalogueError names the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogueError(f"{path.name}: the holidays file is missing ({path})") from None
    parsed = parse_toml(path, text, HolidayFile)
    return {h.date: f"{h.name_en} ({h.name_ko})" for h in parsed.holidays}


def read_public_holidays(path: Path, today: date | None = None) -> frozenset[date]:
    """The public holidays in `path` (none when there is no such file), warning when next year has none yet."""
    if not path.exists():
        log.warning("no public holidays file at %s: agencies are taken as open on public holidays", path)
        return frozenset()
    days = frozenset(load_holidays(path))
    year = (today or datetime.now(UTC).date()).year + 1
    if lacks_next_year(days, date(year - 1, 1, 1)):
        log.warning(
            "%s lists no public holiday in %d yet: add them, or deadlines will count them as working days",
            path.name,
            year,
        )
    return days


def lacks_next_year(holidays: Iterable[date], today: date) -> bool:
    """Whether the holidays list has no date in the year after `today`'s: a list to bring up to date."""
    return all(day.year != today.year + 1 for day in holidays)


def _works_on(hours: OpeningHours, day: date, holidays: Holidays) -> bool:
    return day.weekday() in hours.weekdays and (hours.open_on_holidays or day not in holidays)


def _open_periods(hours: OpeningHours, at: datetime, holidays: Holidays) -> Iterator[tuple[datetime, datetime]]:
    """The agency's opening periods (UTC) that end after `at`, in order, the one in progress first."""
    zone = ZoneInfo(hours.timezone)
    day = at.astimezone(zone).date()
    for _ in range(_SEARCH_DAYS):
        if _works_on(hours, day, holidays):
            opens = datetime.combine(day, hours.opens, zone).astimezone(UTC)
            closes = datetime.combine(day, hours.closes, zone).astimezone(UTC)
            if closes > at:
                yield max(opens, at), closes
        day += timedelta(days=1)
    raise ValueError(f"no opening in the next {_SEARCH_DAYS} days: check the agency's weekdays and the holidays")


def is_open(hours: OpeningHours, at: datetime, holidays: Holidays = NO_HOLIDAYS) -> bool:
    """Whether an agency with these hours is open at the aware instant `at`."""
    if hours.always_open:
        return True
    begins, _ = next(_open_periods(hours, at, holidays))
    return begins <= at


def next_opening(hours: OpeningHours, at: datetime, holidays: Holidays = NO_HOLIDAYS) -> datetime:
    """When the agency is next open at or after `at` (`at` itself when it is open)."""
    if hours.always_open:
        return at
    begins, _ = next(_open_periods(hours, at, holidays))
    return max(begins, at)


def after_working_time(
    hours: OpeningHours, start: datetime, duration: timedelta, holidays: Holidays = NO_HOLIDAYS
) -> datetime:
    """The instant at which `duration` of the agency's opening time has passed since `start`.

    Around-the-clock agencies count clock time. For the others the clock runs only while they are open: a
    referral made on Saturday evening to a weekday agency starts counting at Monday's opening (or Tuesday's, when
    Monday is a public holiday). A duration that ends exactly at closing ends at closing, not at the next opening.
    """
    if duration < timedelta(0):
        raise ValueError("a duration of working time cannot be negative")
    if hours.always_open:
        return start + duration
    left = duration
    for begins, closes in _open_periods(hours, start, holidays):
        if left <= closes - begins:
            return begins + left
        left -= closes - begins
    raise AssertionError("unreachable: _open_periods raises when it runs out")  # pragma: no cover


def local_moment(hours: OpeningHours, at: datetime) -> str:
    """`at` as the agency's local weekday and time, e.g. 'Mon 09:00 Asia/Seoul'."""
    local = at.astimezone(ZoneInfo(hours.timezone))
    return f"{_WEEKDAYS[local.weekday()]} {local:%H:%M} {hours.timezone}"
