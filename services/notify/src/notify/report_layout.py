"""What the monitoring report shows in every printed form (the HTML page, the PDF): its labels in Korean and
English, its tables and its chart's figures, from the report's JSON."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

SEOUL = ZoneInfo("Asia/Seoul")  # the centre's months and dates

LABELS: dict[str, dict[str, str]] = {
    "title": {"ko": "의뢰 모니터링 보고서", "en": "Referral monitoring report"},
    "period": {"ko": "기간", "en": "Period"},
    "agencies": {"ko": "기관별", "en": "By agency"},
    "agency": {"ko": "기관", "en": "Agency"},
    "received": {"ko": "접수", "en": "Received"},
    "accepted": {"ko": "수락", "en": "Accepted"},
    "declined": {"ko": "거절", "en": "Declined"},
    "failed": {"ko": "전달 실패", "en": "Failed"},
    "overdue": {"ko": "기한 초과", "en": "Overdue"},
    "rerouted": {"ko": "재배정", "en": "Re-routed"},
    "completed_successful": {"ko": "지원 완료(성공)", "en": "Completed (successful)"},
    "completed_not_successful": {"ko": "지원 완료(미성공)", "en": "Completed (not successful)"},
    "ack_median": {"ko": "응답 시간 중앙값(초)", "en": "Median time to answer (s)"},
    "ack_p90": {"ko": "응답 시간 90%(초)", "en": "90th percentile time to answer (s)"},
    "crime_types": {"ko": "범죄 유형별", "en": "By crime type"},
    "crime_type": {"ko": "범죄 유형", "en": "Crime type"},
    "cases": {"ko": "사건 수", "en": "Cases"},
    "to_acceptance": {"ko": "첫 수락까지 중앙값(초)", "en": "Median time to first acceptance (s)"},
    "stages": {"ko": "단계별 (범죄 유형·사례 계획 단계)", "en": "By stage (crime type and case-plan stage)"},
    "stage": {"ko": "단계", "en": "Stage"},
    "entered": {"ko": "시작", "en": "Entered"},
    "completed": {"ko": "완료", "en": "Completed"},
    "stage_median": {"ko": "단계 소요 중앙값(초)", "en": "Median time through the stage (s)"},
    "stage_p90": {"ko": "단계 소요 90%(초)", "en": "90th percentile time through the stage (s)"},
    "unmet": {"ko": "충족되지 않은 지원 욕구 (지역·언어별)", "en": "Unmet needs (by region and language)"},
    "need": {"ko": "지원 욕구", "en": "Need"},
    "region": {"ko": "지역", "en": "Region"},
    "language": {"ko": "언어", "en": "Language"},
    "times": {"ko": "미배정 횟수", "en": "Times left uncovered"},
    "pending_now": {"ko": "현재 대기 중", "en": "Pending now"},
    "closed": {"ko": "종결 사건 (사유별)", "en": "Cases closed (by reason)"},
    "none": {"ko": "없음", "en": "none"},
    "chart": {"ko": "기관별 접수·수락·거절", "en": "Received, accepted and declined per agency"},
    "no_personal_data": {
        "ko": "이 보고서에는 개인정보가 포함되어 있지 않습니다.",
        "en": "This report holds no personal data.",
    },
}


Lang = Literal["ko", "en"]
CHART_COLOURS = ["#4c78a8", "#54a24b", "#e45756"]


@dataclass(frozen=True)
class Section:
    """One table of the report, as every format shows it: its heading (level 2 or 3), headers and rows."""

    heading: str
    level: int
    headers: list[str]
    rows: list[list[Any]]


def label(lang: Lang) -> Callable[[str], str]:
    return lambda key: LABELS[key][lang]


def chart_rows(report: dict[str, Any], lang: Lang) -> tuple[list[tuple[str, list[int]]], list[str]]:
    """The chart's groups (one per agency: received, accepted, declined) and its series' names."""
    t = label(lang)
    rows = [(a["agency_id"], [a["received"], a["accepted"], a["declined"]]) for a in report["agencies"]]
    return rows, [t("received"), t("accepted"), t("declined")]


def sections(report: dict[str, Any], lang: Lang) -> list[Section]:
    t = label(lang)
    columns = ["received", "accepted", "declined", "failed", "overdue", "rerouted"]
    columns += ["completed_successful", "completed_not_successful"]
    where = [t("need"), t("region"), t("language")]
    return [
        Section(
            t("agencies"),
            2,
            [t("agency"), *(t(c) for c in columns), t("ack_median"), t("ack_p90")],
            [
                [a["agency_id"], *(a[c] for c in columns), a["ack_seconds"]["median"], a["ack_seconds"]["p90"]]
                for a in report["agencies"]
            ],
        ),
        Section(
            t("crime_types"),
            2,
            [t("crime_type"), t("cases"), t("to_acceptance")],
            [[c["crime_type"], c["cases"], c["to_first_acceptance_seconds"]["median"]] for c in report["crime_types"]],
        ),
        Section(
            t("stages"),
            2,
            [t("crime_type"), t("stage"), t("entered"), t("completed"), t("stage_median"), t("stage_p90")],
            [
                [s["crime_type"], s["stage"], s["entered"], s["completed"], s["seconds"]["median"], s["seconds"]["p90"]]
                for s in report["stages"]
            ],
        ),
        Section(
            t("unmet"),
            2,
            [*where, t("times")],
            [[u["need"], u["region"], u["language"], u["times"]] for u in report["uncovered_needs"]],
        ),
        Section(
            t("pending_now"),
            3,
            [*where, t("cases")],
            [[p["need"], p["region"], p["language"], p["cases"]] for p in report["pending_needs_now"]],
        ),
        Section(t("closed"), 2, ["", t("cases")], [[r, count] for r, count in report["cases_closed"].items()]),
    ]


def period_shown(report: dict[str, Any]) -> str:
    period = report["period"]
    return f"{local_time(period['start'])} – {local_time(period['end'])} (Asia/Seoul)"


def local_time(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(SEOUL).strftime("%Y-%m-%d %H:%M")
