"""The monitoring report as supervisors read it: JSON, CSV, or a printable HTML page with charts (inline SVG, drawn
here: no script, no CDN), in Korean or English. Routes: `GET /reports/referrals`; supervisors only, access-logged."""

import asyncio
import csv
import io
from datetime import UTC, date, datetime, time
from html import escape
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Query, Response
from kit.access_log import Access, Instant
from kit.deps import AccessLogDep, PoolDep, SupervisorDep
from kit.errors import Invalid

from .report_layout import CHART_COLOURS, SEOUL, Lang, Section, chart_rows, label, period_shown, sections
from .report_pdf import as_pdf
from .reports import Event, as_csv_rows, build_report

Month = Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="a month in Asia/Seoul, like 2026-11")]


def period_of(month: str | None, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """A month in Asia/Seoul, or `start`/`end`; Invalid (422) for anything else."""
    if month is not None and start is None and end is None:
        year, number = map(int, month.split("-"))
        try:
            first = datetime.combine(date(year, number, 1), time(0), SEOUL).astimezone(UTC)
            following = datetime.combine(date(year + number // 12, number % 12 + 1, 1), time(0), SEOUL)
        except (ValueError, OverflowError):
            raise Invalid(f"no such month: {month}", reason="invalid_period", title="Invalid period") from None
        return first, following.astimezone(UTC)
    if month is None and start is not None and end is not None and start < end:
        return start, end
    raise Invalid(
        "give a month (month=2026-11), or a start and an end, the start first",
        reason="invalid_period",
        title="Invalid period",
    )


async def report_events(
    pool: asyncpg.Pool, start: datetime, end: datetime, crime_type: str | None
) -> tuple[list[Event], list[dict[str, Any]]]:
    """Every timeline event, up to the period's end, of the cases with an event in the period (of `crime_type`),
    and the needs pending now with their case's region and language."""
    rows = await pool.fetch(
        "WITH concerned AS (SELECT DISTINCT case_id FROM timeline WHERE occurred_at >= $1 AND occurred_at < $2),"
        " chosen AS (SELECT case_id FROM concerned WHERE $3::text IS NULL OR case_id IN (SELECT case_id FROM"
        " timeline WHERE event_type = 'case.submitted' AND detail->>'crime_type' = $3))"
        " SELECT case_id, event_type, occurred_at, referral_id, agency_id, detail FROM timeline"
        " WHERE case_id IN (SELECT case_id FROM chosen) AND occurred_at < $2 ORDER BY occurred_at, id",
        start,
        end,
        crime_type,
    )
    events = [
        Event(
            r["event_type"],
            r["occurred_at"],
            str(r["case_id"]),
            None if r["referral_id"] is None else str(r["referral_id"]),
            r["agency_id"],
            r["detail"] or {},
        )
        for r in rows
    ]
    pending = await pool.fetch(
        "SELECT p.need, t.detail->>'region' AS region, t.detail->>'language' AS language FROM pending_needs p"
        " LEFT JOIN timeline t ON t.case_id = p.case_id AND t.event_type = 'case.submitted'"
        " WHERE $1::text IS NULL OR t.detail->>'crime_type' = $1",
        crime_type,
    )
    return events, [dict(r) for r in pending]


def as_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(as_csv_rows(report))
    return out.getvalue()


def bar_chart(rows: list[tuple[str, list[int]]], series: list[str], colours: list[str]) -> str:
    """Grouped horizontal bars as inline SVG: one group per row label, one bar per series."""
    top = max([max(values, default=0) for _, values in rows] + [1])
    bar, gap, label_width, width = 10, 8, 190, 360
    group = bar * len(series) + gap
    height = group * len(rows) + 30
    parts = [
        f'<svg role="img" xmlns="http://www.w3.org/2000/svg" width="{label_width + width + 60}" height="{height}">'
    ]
    for index, (name, values) in enumerate(rows):
        y = index * group
        parts.append(f'<text x="0" y="{y + bar * len(series) / 2 + 4}" font-size="11">{escape(name)}</text>')
        for offset, (value, colour) in enumerate(zip(values, colours, strict=True)):
            length = width * value / top
            by = y + offset * bar
            parts.append(f'<rect x="{label_width}" y="{by}" width="{length:.1f}" height="{bar - 1}" fill="{colour}"/>')
            parts.append(f'<text x="{label_width + length + 3:.1f}" y="{by + bar - 2}" font-size="9">{value}</text>')
    legend_y = height - 10
    for offset, (name, colour) in enumerate(zip(series, colours, strict=True)):
        x = label_width + offset * 110
        parts.append(f'<rect x="{x}" y="{legend_y - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{legend_y + 1}" font-size="10">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def as_html(report: dict[str, Any], lang: Lang) -> str:
    t = label(lang)

    def table(section: Section) -> str:
        if not section.rows:
            return f"<p>{t('none')}</p>"
        head = "".join(f"<th scope='col'>{escape(h)}</th>" for h in section.headers)
        body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in section.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    chart = bar_chart(*chart_rows(report, lang), CHART_COLOURS)
    parts = []
    for index, section in enumerate(sections(report, lang)):
        parts.append(f"<h{section.level}>{escape(section.heading)}</h{section.level}>")
        if index == 0:  # the agencies: their chart first
            parts.append(f"<figure><figcaption>{t('chart')}</figcaption>{chart}</figure>")
        parts.append(table(section))
    body = "\n".join(parts)
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{t("title")}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:"Noto Sans CJK KR","Noto Sans KR",sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #999;padding:.2em .5em;text-align:right}}
td:first-child,th:first-child{{text-align:left}}@media print{{body{{margin:0}}}}</style></head>
<body><h1>{t("title")}</h1><p>{t("period")}: {escape(period_shown(report))}</p>
{body}
<p><small>{t("no_personal_data")}</small></p></body></html>
"""


report_router = APIRouter(tags=["reports"])


@report_router.get("/reports/referrals")
async def referrals_report(
    who: SupervisorDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    month: Month | None = None,
    start: Instant | None = None,
    end: Instant | None = None,
    crime_type: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    format: Literal["json", "csv", "html", "pdf"] = "json",
    lang: Lang = "ko",
) -> Any:
    """Per agency: referrals received, accepted, declined (by reason), failed, overdue, re-routed, completed (by
    outcome), time to answer; per crime type: cases and time to first acceptance; unmet needs by need, region
    and language; closings by reason. For a month (Asia/Seoul) or from start to end. No personal data."""
    first, last = period_of(month, start, end)
    events, pending = await report_events(pool, first, last, crime_type)
    report = build_report(events, first, last, pending=pending)
    await access_log.record_now(pool, who, Access("report.read"))
    if format == "csv":
        return Response(as_csv(report), media_type="text/csv; charset=utf-8")
    if format == "html":
        return Response(as_html(report, lang), media_type="text/html; charset=utf-8")
    if format == "pdf":
        headers = {"content-disposition": 'attachment; filename="referrals-report.pdf"'}
        return Response(await asyncio.to_thread(as_pdf, report, lang), media_type="application/pdf", headers=headers)
    return report
