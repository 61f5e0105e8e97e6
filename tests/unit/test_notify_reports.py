"""The monitoring report, pure: figures from timeline events of a period, checked against a hand-made history."""

from datetime import UTC, datetime, timedelta

import pytest
from kit.errors import Invalid
from notify.report_layout import LABELS
from notify.report_pages import as_html, period_of
from notify.report_pdf import as_pdf
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
        Event("case.plan", at(2), "c1", None, None, {"stages": [{"stage": "crisis", "started_at": at(1).isoformat()}]}),
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


def plan(*stages: tuple[str, datetime | None, datetime | None]) -> dict[str, object]:
    return {
        "stages": [
            {"stage": name, "started_at": None if began is None else began.isoformat(),
             "ended_at": None if ended is None else ended.isoformat()}
            for name, began, ended in stages
        ]
    }  # fmt: skip


def test_each_stage_is_counted_when_entered_and_timed_when_completed_in_the_period() -> None:
    submitted = {"crime_type": "stalking"}
    events = [
        Event("case.submitted", at(0), "c1", None, None, submitted),
        Event("case.plan", at(0), "c1", None, None, plan(("crisis", at(0), None), ("recovery", None, None))),
        # The latest plan counts: crisis took 30 minutes, recovery is under way, daily life was passed over.
        Event(
            "case.plan",
            at(30),
            "c1",
            None,
            None,
            plan(("crisis", at(0), at(30)), ("recovery", at(30), None), ("daily_life", None, None)),
        ),
        Event("case.submitted", at(5), "c2", None, None, submitted),
        Event("case.plan", at(65), "c2", None, None, plan(("crisis", at(5), at(65)), ("recovery", at(65), END))),
        # Begun before the period, ended in it: completed and timed, not entered.
        Event("case.submitted", START - timedelta(hours=3), "c3", None, None, {"crime_type": "fraud"}),
        Event("case.plan", at(1), "c3", None, None, plan(("crisis", START - timedelta(hours=2), at(1)))),
    ]
    report = build_report(events, START, END)
    assert report["stages"] == [
        {"crime_type": "fraud", "stage": "crisis", "entered": 0, "completed": 1,
         "seconds": {"median": 97260.0, "p90": 97260.0}},
        {"crime_type": "stalking", "stage": "crisis", "entered": 2, "completed": 2,
         "seconds": {"median": 2700.0, "p90": 3420.0}},
        {"crime_type": "stalking", "stage": "recovery", "entered": 2, "completed": 0,
         "seconds": {"median": None, "p90": None}},
    ]  # fmt: skip
    assert ["stage", "stalking/crisis", "seconds.median", "2700.0"] in as_csv_rows(report)


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


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_the_pdf_renders_pages_with_ink_on_them(lang: str) -> None:
    """Rendered back to pixels (pdfium, as a PDF viewer would): a chart page then a page per table, none blank;
    the report's title is in the document's text (Korean too: the font embedded has Hangul)."""
    pdfium = pytest.importorskip("pypdfium2")
    report = build_report(history(), START, END, pending=[{"need": "housing", "region": "seoul", "language": "ko"}])
    pdf = pdfium.PdfDocument(as_pdf(report, lang))  # type: ignore[arg-type]
    assert len(pdf) in (2, 3), "the chart, then the tables (short ones share a page)"
    for index in range(len(pdf)):
        image = pdf[index].render(scale=0.5).to_pil().convert("L")
        dark = sum(image.histogram()[:128])
        assert dark > 150, f"page {index + 1} is blank"  # a blank page has none
    first_page = pdf[0].get_textpage().get_text_range()
    assert LABELS["title"][lang] in first_page and "police" in first_page
    tables = "".join(pdf[i].get_textpage().get_text_range() for i in range(1, len(pdf)))
    for heading in ("agencies", "crime_types", "stages", "unmet", "pending_now", "closed"):
        assert LABELS[heading][lang] in tables, heading


def test_a_long_table_goes_on_over_pages() -> None:
    pdfium = pytest.importorskip("pypdfium2")
    many = [
        Event(
            "case.routed",
            at(i),
            f"c{i}",
            None,
            None,
            {"referrals": [{"referral_id": f"r{i}", "agency_id": f"a{i:02}"}]},
        )
        for i in range(40)
    ]
    pdf = pdfium.PdfDocument(as_pdf(build_report(many, START, END), "en"))
    pages = [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    assert "By agency (1/2)" in pages[1] and "By agency (2/2)" in pages[2] and "a39" in pages[2]
