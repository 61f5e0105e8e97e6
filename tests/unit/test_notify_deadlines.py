"""Acknowledgement deadlines: from the urgency and the agency's SLA, shortened only when asked."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from notify.deadlines import ack_deadline, ack_hours, reminder_still_useful
from schemas.catalogue import OpeningHours, load_catalogue
from schemas.vocab import DEFAULT_ACK_HOURS, Urgency

REQUESTED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("urgency", "hours"), [(Urgency.urgent, 2), (Urgency.high, 6), (Urgency.normal, 24)])
def test_without_an_agency_sla_the_centres_default_per_urgency_applies(urgency: Urgency, hours: int) -> None:
    assert DEFAULT_ACK_HOURS[urgency] == hours
    deadline = ack_deadline(REQUESTED, urgency, {})
    assert deadline.due_at == REQUESTED + timedelta(hours=hours)


def test_an_agencys_own_sla_overrides_the_default_for_the_urgencies_it_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENCY_SIMULATOR_URL", "http://127.0.0.1:9")
    police = load_catalogue(Path("catalogue/agencies"))["police"]
    assert ack_hours(Urgency.high, police.ack_hours) == 4
    assert ack_hours(Urgency.urgent, police.ack_hours) == 1
    assert ack_hours(Urgency.high, {Urgency.normal: 48}) == 6  # not named: the default


def test_the_reminder_comes_before_the_deadline_at_the_chosen_fraction_of_the_window() -> None:
    deadline = ack_deadline(REQUESTED, Urgency.urgent, {}, remind_at_fraction=0.75)
    assert deadline.remind_at == REQUESTED + timedelta(minutes=90)
    assert deadline.remind_at < deadline.due_at


def test_a_shortened_hour_shortens_every_deadline_in_proportion() -> None:
    deadline = ack_deadline(REQUESTED, Urgency.urgent, {Urgency.urgent: 2}, hour_seconds=15)
    assert deadline.due_at == REQUESTED + timedelta(seconds=30)
    assert deadline.remind_at == REQUESTED + timedelta(seconds=22.5)


def test_a_reminder_found_due_only_after_the_deadline_is_not_worth_sending() -> None:
    due = REQUESTED + timedelta(hours=2)
    assert reminder_still_useful(due - timedelta(seconds=1), due)
    assert not reminder_still_useful(due, due)
    assert not reminder_still_useful(due + timedelta(minutes=5), due)


def test_a_weekday_agencys_deadline_counts_its_opening_hours_and_skips_holidays() -> None:
    office = OpeningHours()  # Monday to Friday, 09:00–18:00 Asia/Seoul
    saturday_1645 = datetime(2026, 12, 5, 7, 45, tzinfo=UTC)
    deadline = ack_deadline(saturday_1645, Urgency.urgent, {Urgency.urgent: 2}, opening=office)
    assert deadline.due_at == datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # Monday 11:00 in Seoul
    assert deadline.remind_at == datetime(2026, 12, 7, 1, 30, tzinfo=UTC)  # 90 working minutes: Monday 10:30
    christmas_eve_1700 = datetime(2026, 12, 24, 8, 0, tzinfo=UTC)
    over_christmas = ack_deadline(
        christmas_eve_1700, Urgency.urgent, {}, opening=office, holidays=frozenset({date(2026, 12, 25)})
    )
    assert over_christmas.due_at == datetime(2026, 12, 28, 1, 0, tzinfo=UTC)  # Monday 10:00: Friday was Christmas


def test_an_around_the_clock_agency_and_a_shortened_hour_count_clock_time() -> None:
    saturday_1645 = datetime(2026, 12, 5, 7, 45, tzinfo=UTC)
    always = ack_deadline(saturday_1645, Urgency.urgent, {}, opening=OpeningHours(always_open=True))
    assert always.due_at == saturday_1645 + timedelta(hours=2)
    demo = ack_deadline(saturday_1645, Urgency.urgent, {}, opening=OpeningHours(), hour_seconds=15)
    assert demo.due_at == saturday_1645 + timedelta(seconds=30), "a demo's shortened deadline does not wait for Monday"
