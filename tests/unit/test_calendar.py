"""Opening hours as time: open or not, the next opening, and N working hours from a moment (weekends, holidays)."""

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from schemas.calendar import (
    after_working_time,
    is_open,
    lacks_next_year,
    load_holidays,
    next_opening,
    read_public_holidays,
)
from schemas.catalogue import CatalogueError, OpeningHours

SEOUL_OFFICE = OpeningHours()  # Monday to Friday, 09:00–18:00 Asia/Seoul
HOLIDAYS = frozenset(load_holidays(Path("catalogue/holidays.toml")))


def kst(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC) - timedelta(hours=9)  # the arguments are Seoul wall-clock time


@pytest.mark.parametrize(
    ("start", "hours", "due"),
    [
        (kst(2026, 12, 5, 16, 45), 2, kst(2026, 12, 7, 11, 0)),  # Saturday evening: Monday's first two hours
        (kst(2026, 12, 7, 17, 0), 2, kst(2026, 12, 8, 10, 0)),  # one hour today, one tomorrow
        (kst(2026, 12, 7, 16, 0), 2, kst(2026, 12, 7, 18, 0)),  # ends exactly at closing: at closing
        (kst(2026, 12, 24, 17, 0), 2, kst(2026, 12, 28, 10, 0)),  # Christmas (Friday) and the weekend skipped
        (kst(2026, 10, 2, 18, 30), 6, kst(2026, 10, 6, 15, 0)),  # Foundation Day's substitute Monday skipped
        (kst(2026, 12, 7, 3, 0), 24, kst(2026, 12, 9, 15, 0)),  # 24 working hours: 9 + 9 + 6
    ],
    ids=["saturday-evening", "over-night", "at-closing", "christmas", "substitute-holiday", "a-normal-sla"],
)
def test_working_time_counts_only_opening_hours(start: datetime, hours: int, due: datetime) -> None:
    assert after_working_time(SEOUL_OFFICE, start, timedelta(hours=hours), HOLIDAYS) == due


def test_around_the_clock_agencies_count_clock_hours() -> None:
    start = kst(2026, 12, 25, 3, 0)
    assert after_working_time(OpeningHours(always_open=True), start, timedelta(hours=2), HOLIDAYS) == start + timedelta(
        hours=2
    )


def test_an_agency_open_on_holidays_works_on_christmas() -> None:
    open_on_holidays = SEOUL_OFFICE.model_copy(update={"open_on_holidays": True})
    christmas = kst(2026, 12, 25, 10, 0)
    assert is_open(open_on_holidays, christmas, HOLIDAYS) and not is_open(SEOUL_OFFICE, christmas, HOLIDAYS)


def test_the_next_opening_skips_nights_weekends_and_holidays() -> None:
    assert next_opening(SEOUL_OFFICE, kst(2026, 12, 5, 16, 45), HOLIDAYS) == kst(2026, 12, 7, 9, 0)
    assert next_opening(SEOUL_OFFICE, kst(2026, 12, 24, 18, 0), HOLIDAYS) == kst(2026, 12, 28, 9, 0)
    assert next_opening(SEOUL_OFFICE, kst(2026, 12, 7, 10, 0), HOLIDAYS) == kst(2026, 12, 7, 10, 0)  # open now


def test_a_negative_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        after_working_time(SEOUL_OFFICE, kst(2026, 12, 7, 10, 0), timedelta(minutes=-1))


# --- properties, against a minute-by-minute count ----------------------------------------------------------------

starts = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 20), timezones=st.just(UTC)).map(
    lambda at: at.replace(second=0, microsecond=0)
)
hours_of_opening = st.builds(
    OpeningHours,
    weekdays=st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True),
    opens=st.sampled_from([time(0, 0), time(8, 30), time(9, 0), time(13, 15)]),
    closes=st.sampled_from([time(14, 0), time(18, 0), time(23, 59)]),
)
minutes = st.integers(0, 12 * 60)


def open_minutes(hours: OpeningHours, start: datetime, end: datetime) -> int:
    count, at = 0, start
    while at < end:
        count += is_open(hours, at, HOLIDAYS)
        at += timedelta(minutes=1)
    return count


@settings(max_examples=40, deadline=None)
@given(hours=hours_of_opening, start=starts, duration=minutes)
def test_exactly_the_duration_of_opening_time_passes_and_the_deadline_falls_in_opening_hours(
    hours: OpeningHours, start: datetime, duration: int
) -> None:
    due = after_working_time(hours, start, timedelta(minutes=duration), HOLIDAYS)
    assert due >= start
    assert open_minutes(hours, start, due) == duration
    if duration:
        assert is_open(hours, due - timedelta(minutes=1), HOLIDAYS), "the last counted minute is an open one"


@settings(max_examples=60, deadline=None)
@given(hours=hours_of_opening, start=starts, first=minutes, second=minutes)
def test_working_time_adds_up(hours: OpeningHours, start: datetime, first: int, second: int) -> None:
    halfway = after_working_time(hours, start, timedelta(minutes=first), HOLIDAYS)
    assert after_working_time(hours, halfway, timedelta(minutes=second), HOLIDAYS) == after_working_time(
        hours, start, timedelta(minutes=first + second), HOLIDAYS
    )


@settings(max_examples=60, deadline=None)
@given(hours=hours_of_opening, start=starts)
def test_the_next_opening_is_open_and_nothing_before_it_is(hours: OpeningHours, start: datetime) -> None:
    opens = next_opening(hours, start, HOLIDAYS)
    assert opens >= start and is_open(hours, opens, HOLIDAYS)
    if opens > start:
        assert not is_open(hours, opens - timedelta(microseconds=1), HOLIDAYS)
        assert not is_open(hours, start, HOLIDAYS)


# --- the holidays file --------------------------------------------------------------------------------------------


def test_the_holidays_file_covers_this_year_and_the_next() -> None:
    years = {day.year for day in HOLIDAYS}
    assert {2026, 2027} <= years
    assert date(2026, 9, 25) in HOLIDAYS and date(2027, 2, 9) in HOLIDAYS  # Chuseok; Seollal's substitute


def test_a_list_without_next_year_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert lacks_next_year(HOLIDAYS, date(2027, 3, 1))
    assert not lacks_next_year(HOLIDAYS, date(2026, 3, 1))
    path = tmp_path / "holidays.toml"
    path.write_text('holidays = [{ date = 2026-01-01, name_ko = "신정", name_en = "New Year" }]\n', encoding="utf-8")
    assert read_public_holidays(path, date(2026, 5, 1)) == {date(2026, 1, 1)}
    assert "no public holiday in 2027" in caplog.text


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('holidays = [{ date = 2026-13-01, name_ko = "x", name_en = "x" }]', "line"),
        ('holidays = [{ date = "soon", name_ko = "x", name_en = "x" }]', "holidays.0.date"),
        ('holidays = [{ date = 2026-01-01, name_ko = "x" }]', "holidays.0.name_en"),
        (
            'holidays = [{ date = 2026-01-01, name_ko = "x", name_en = "x" },'
            ' { date = 2026-01-01, name_ko = "y", name_en = "y" }]',
            "listed twice",
        ),
    ],
    ids=["bad-toml", "not-a-date", "no-name", "twice"],
)
def test_a_broken_holidays_file_is_named_with_its_field(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "holidays.toml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(CatalogueError) as raised:
        load_holidays(path)
    assert "holidays.toml" in str(raised.value) and named in str(raised.value)
