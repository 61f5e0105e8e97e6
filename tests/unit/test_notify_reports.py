"""The monitoring report, pure: figures from timeline events of a period, checked against a hand-made history."""

from datetime import UTC, datetime, timedelta

import pytest
from kit.errors import Invalid
from notify.report_pages import LABELS, as_html, period_of
from notify.reports import Event, as_csv_rows, build_report

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def history() -> list[Event]:
    submitted = {"crime_type": "stalking", "region": "seoul", "language": "ko", "needs": ["safety", "legal"]}
    routed = {"referrals": [{"referral_id": "r1", "agency_id": "police"}, {"referral_id": "r2", "agency_id": "aid"}]}
    return [
        Event("case.submitted", at(0), "c1", None, None, submitted),
        Event("case.routed", at(1), "c1", None, None, {**routed, "uncovered_needs": ["housing"]}),
        Event("referral.accepted", at(3), "c1", "r1", "police", {"state_change": "applied"}),
        Event("referral.accepted", at(4), "c1", "r1", "police", {"state_change": "duplicate"}),  # changes nothing
        Event("referral.declined", at(11), "c1", "r2", "aid", {"reason": "no_capacity", "state_change": "applied"}),
        Event("referral.rerouting", at(11), "c1", "r2", "aid", {"cause": "declined", "needs": ["legal"]}),
        Event("referral.completed", at(60), "c1", "r1", "police", {"outcome": "successful"}),
        # Before the period: a case whose referral is answered in it — answered counts, received does not.
        Event("case.submitted", START - timedelta(hours=2), "c0", None, None, {"crime_type": "fraud"}),
        Event(
            "case.routed",
            START - timedelta(hours=1),
            "c0",
            None,
            None,
            {"referrals": [{"referral_id": "r0", "agency_id": "aid"}]},
        ),
        Event("referral.accepted", START + timedelta(hours=1), "c0", "r0", "aid", {"state_change": "applied"}),
        Event("case.closed", at(90), "c1", None, None, {"reason": "back_to_daily_life"}),
        Event("referral.accepted", END, "c1", "r9", "police", {}),  # at the end: outside
    ]


def test_each_figure_counts_what_happened_in_the_period() -> None:
    report = build_report(history(), START, END, pending=[{"need": "housing", "region": "seoul", "language": "ko"}])
    police, aid = report["agencies"][1], report["agencies"][0]
    assert police["agency_id"] == "police" and aid["agency_id"] == "aid"
    assert (police["received"], police["accepted"], police["completed_successful"]) == (1, 1, 1)
    assert police["ack_seconds"] == {"median": 120.0, "p90": 120.0}
    assert (aid["received"], aid["accepted"], aid["declined"], aid["rerouted"]) == (1, 1, 1, 1)
    assert aid["declined_by_reason"] == {"no_capacity": 1} and aid["rerouted_by_cause"] == {"declined": 1}
    assert aid["ack_seconds"]["median"] == 600.0, "only the referral received in the period is timed"
    assert report["crime_types"] == [
        {"crime_type": "stalking", "cases": 1, "to_first_acceptance_seconds": {"median": 180.0, "p90": 180.0}}
    ]
    assert report["uncovered_needs"] == [{"need": "housing", "region": "seoul", "language": "ko", "times": 1}]
    assert report["pending_needs_now"] == [{"need": "housing", "region": "seoul", "language": "ko", "cases": 1}]
    assert report["cases_closed"] == {"back_to_daily_life": 1}
    rows = as_csv_rows(report)
    assert rows[0] == ["section", "key", "figure", "value"]
    assert ["agency", "aid", "declined_by_reason.no_capacity", "1"] in rows


def test_a_month_is_read_in_seoul_and_a_bad_period_is_refused() -> None:
    first, last = period_of("2026-12", None, None)
    assert first == datetime(2026, 11, 30, 15, 0, tzinfo=UTC) and last == datetime(2026, 12, 31, 15, 0, tzinfo=UTC)
    for bad in (("2026-11", START, END), (None, END, START), (None, None, END), ("0000-05", None, None)):
        with pytest.raises(Invalid):
            period_of(*bad)


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_the_page_has_every_label_in_its_language(lang: str) -> None:
    page = as_html(build_report(history(), START, END), lang)  # type: ignore[arg-type]
    for key, text in LABELS.items():
        if key != "none":
            assert text[lang] in page, key
    assert "<svg" in page and "<script" not in page
