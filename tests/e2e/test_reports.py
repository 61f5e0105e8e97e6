"""End to end on the real stack: the supervisors' monitoring report counts what happened. Cases of one crime type
(no other test uses it) go through the stack — accepted, declined and re-routed, completed both ways, closed, one
need nobody offers — and every figure of the report for the period is checked against what the test itself saw."""

import asyncio
import csv
import io
import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest
from devstack.stack import Stack

from tests.e2e.helpers import StackAuth, eventually, referrals_by_agency
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CRIME = "elder_abuse"
# A language code of the test's own: the fuzz test may leave cases of this crime type (with needs still pending) on
# the shared stack, so the unmet-needs rows are told apart by it. It only ranks agencies, all of which lack it alike.
LANGUAGE = "zqx"
CASE = sample_case_json(
    crime_type=CRIME,
    language=LANGUAGE,
    needs=["safety", "legal"],
    urgency="high",  # nothing time-critical: the test does not depend on the time of day
    consents=[{"agency_id": a, "granted": True} for a in ("police", "legal-aid", "legal-home-doctor")],
)
NOBODY = sample_case_json(crime_type=CRIME, language=LANGUAGE, needs=["statement_support"], urgency="high", consents=[])


@pytest.fixture
async def client(stack: Stack) -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c  # type: ignore[misc]


async def test_the_report_of_a_period_counts_what_happened(stack: Stack, client: httpx.AsyncClient) -> None:
    intake, notify, simulator = stack.url("intake"), stack.url("notify"), stack.url("agency-simulator")
    start = datetime.now(UTC) - timedelta(seconds=1)
    declining = await client.put(
        f"{simulator}/behaviour/legal-aid", json={"action": "decline", "reason": "no_capacity"}
    )
    assert declining.status_code == 200, declining.text
    try:
        case_ids = []
        for _ in range(3):
            answer = await client.post(f"{intake}/cases", json=CASE)
            assert answer.status_code == 201, answer.text
            case_ids.append(answer.json()["case_id"])

        async def settled() -> list[dict[str, dict[str, Any]]] | None:
            found = [await referrals_by_agency(client, stack, c) for c in case_ids]
            done = all(
                r.get("police", {}).get("state") == "accepted"
                and r.get("legal-aid", {}).get("state") == "declined"
                and r.get("legal-home-doctor", {}).get("state") == "accepted"
                for r in found
            )
            return found if done else None

        seen = await eventually(settled, 180, "police accepted, legal aid declined, the legal home doctor accepted")
    finally:
        await client.delete(f"{simulator}/behaviour/legal-aid")
    uncovered = await client.post(f"{intake}/cases", json=NOBODY)
    assert uncovered.status_code == 201, uncovered.text

    # The police complete two referrals, one of them without success; the third case is closed (it cancels the
    # referrals still open: the police's and the legal home doctor's).
    first, second, _ = (s["police"]["referral_id"] for s in seen)
    done = {"agency_id": "police", "outcome": "successful"}
    assert (await client.post(f"{notify}/referrals/{first}/complete", json=done)).status_code == 200
    not_done = {"agency_id": "police", "outcome": "not_successful", "reason": "victim_refused_services"}
    assert (await client.post(f"{notify}/referrals/{second}/complete", json=not_done)).status_code == 200
    closed = await client.post(f"{intake}/cases/{case_ids[2]}/close", json={"reason": "moved_away"})
    assert closed.status_code == 200, closed.text

    async def cancelled() -> bool:
        return (await referrals_by_agency(client, stack, case_ids[2]))["legal-home-doctor"]["state"] == "cancelled"

    await eventually(cancelled, 60, "the closed case's open referrals cancelled")

    async def pending() -> bool:
        status = (await client.get(f"{notify}/cases/{uncovered.json()['case_id']}/status")).json()
        return bool(status.get("pending_needs"))

    await eventually(pending, 60, "the need nobody offers held pending")
    end = datetime.now(UTC) + timedelta(seconds=1)

    params = {"start": start.isoformat(), "end": end.isoformat(), "crime_type": CRIME}
    as_caseworker = {"authorization": f"Bearer {stack.token('caseworker')}"}
    assert (await client.get(f"{notify}/reports/referrals", params=params, headers=as_caseworker)).status_code == 403
    answer = await client.get(f"{notify}/reports/referrals", params=params)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    agencies = {a["agency_id"]: a for a in report["agencies"]}
    assert set(agencies) == {"police", "legal-aid", "legal-home-doctor"}
    police, aid, doctor = agencies["police"], agencies["legal-aid"], agencies["legal-home-doctor"]
    assert (police["received"], police["accepted"], police["declined"], police["cancelled"]) == (3, 3, 0, 1)
    assert (police["completed_successful"], police["completed_not_successful"]) == (1, 1)
    assert police["not_successful_by_reason"] == {"victim_refused_services": 1}
    assert (aid["received"], aid["accepted"], aid["declined"]) == (3, 0, 3)
    assert aid["declined_by_reason"] == {"no_capacity": 3} and aid["rerouted_by_cause"] == {"declined": 3}
    assert (doctor["received"], doctor["accepted"], doctor["cancelled"], doctor["rerouted"]) == (3, 3, 1, 0)
    assert all(a["failed"] == a["overdue"] == 0 for a in agencies.values())
    elapsed = (end - start).total_seconds()
    for agency in agencies.values():  # every referral was answered, within the test's own span
        assert 0 < agency["ack_seconds"]["median"] <= agency["ack_seconds"]["p90"] <= elapsed
    [crime] = report["crime_types"]
    assert crime["crime_type"] == CRIME and crime["cases"] == 4
    assert 0 < crime["to_first_acceptance_seconds"]["median"] <= elapsed
    unmet = {"need": "statement_support", "region": "seoul", "language": LANGUAGE}
    assert [u for u in report["uncovered_needs"] if u["language"] == LANGUAGE] == [{**unmet, "times": 1}]
    assert [p for p in report["pending_needs_now"] if p["language"] == LANGUAGE] == [{**unmet, "cases": 1}]
    assert report["cases_closed"] == {"moved_away": 1}

    # The same figures as CSV, and a printable page in Korean and in English; none names the victim.
    sheet = (await client.get(f"{notify}/reports/referrals", params={**params, "format": "csv"})).text
    rows = {(r["section"], r["key"], r["figure"]): r["value"] for r in csv.DictReader(io.StringIO(sheet))}
    assert rows[("agency", "legal-aid", "declined_by_reason.no_capacity")] == "3"
    assert rows[("agency", "police", "received")] == "3"
    for lang, title in (("ko", "의뢰 모니터링 보고서"), ("en", "Referral monitoring report")):
        page = await client.get(f"{notify}/reports/referrals", params={**params, "format": "html", "lang": lang})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert title in page.text and "<svg" in page.text and "legal-home-doctor" in page.text
        assert "Kim" not in page.text
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":  # the README's example: this report's PDF, in English
        pdf_params = {**params, "format": "pdf", "lang": "en"}
        printed = await client.get(f"{notify}/reports/referrals", params=pdf_params, timeout=180)
        document = pdfium.PdfDocument(printed.content)
        for index, name in enumerate(("chart", "tables")):
            image = document[index].render(scale=1.2).to_pil()
            image.save(Path(__file__).resolve().parents[2] / "docs" / "img" / f"report-pdf-{name}.png", optimize=True)
    bad = await client.get(f"{notify}/reports/referrals", params={"month": "2026-13"})
    assert bad.status_code == 422

    # The same report from the operators' command line.
    command = [sys.executable, "-m", "casectl", "report", "--start", start.isoformat(), "--end", end.isoformat()]
    command += ["--crime-type", CRIME, "--format", "json", "--notify-url", notify]
    env = {**os.environ, "AUTH_SECRET": stack.env["AUTH_SECRET"]}
    shown = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60, env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["agencies"] == report["agencies"]


STAGED_CRIME = "homicide_bereaved"  # no other test submits it
STAGED = sample_case_json(
    crime_type=STAGED_CRIME,
    language=LANGUAGE,
    needs=["safety", "legal", "counselling"],
    urgency="high",
    consents=[{"agency_id": a, "granted": True} for a in ("police", "legal-aid", "victim-support-center")],
    staged=True,
)


async def test_the_report_times_each_stage_of_a_plan_and_prints_as_a_pdf(
    stack: Stack, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    intake, routing, notify = stack.url("intake"), stack.url("routing"), stack.url("notify")
    start = datetime.now(UTC) - timedelta(seconds=1)
    case_ids = []
    for _ in range(2):
        answer = await client.post(f"{intake}/cases", json=STAGED)
        assert answer.status_code == 201, answer.text
        case_ids.append(answer.json()["case_id"])

    async def plan_of(case_id: str) -> list[dict[str, Any]] | None:
        answer = await client.get(f"{routing}/cases/{case_id}/plan")
        return answer.json()["stages"] if answer.status_code == 200 else None

    # The first case goes through its whole plan; the second only through crisis, by its rule once the police accept
    # (catalogue/plan.toml), and stays in investigation and legal, which only a caseworker ends.
    for _ in range(4):
        await eventually(lambda: plan_of(case_ids[0]), 60, "the staged case's plan")
        if (await client.post(f"{routing}/cases/{case_ids[0]}/plan/advance")).status_code == 409:
            break  # nothing left to start (the crisis rule may have moved it on too)

    async def settled(case_id: str) -> list[dict[str, Any]] | None:
        stages = await plan_of(case_id)
        moved_on = stages is not None and next(s for s in stages if s["stage"] == "crisis")["state"] == "done"
        return stages if moved_on else None

    plans = {c: await eventually(lambda c=c: settled(c), 120, "crisis ended (the rule)") for c in case_ids}
    assert all(s["state"] == "done" for s in plans[case_ids[0]])
    end = datetime.now(UTC) + timedelta(seconds=1)

    # The figures, computed here from routing's own plans: stages entered and completed, time through each.
    expected: dict[str, dict[str, Any]] = {}
    for stages in plans.values():
        for stage in stages:
            if stage.get("started_at") is None:
                continue
            row = expected.setdefault(stage["stage"], {"entered": 0, "completed": 0, "through": []})
            row["entered"] += 1
            if stage.get("ended_at"):
                row["completed"] += 1
                began, ended = (datetime.fromisoformat(stage[k]) for k in ("started_at", "ended_at"))
                row["through"].append((ended - began).total_seconds())
    assert set(expected) == {"crisis", "investigation_legal", "recovery"} and expected["crisis"]["entered"] == 2
    params = {"start": start.isoformat(), "end": end.isoformat(), "crime_type": STAGED_CRIME}

    async def stage_rows() -> dict[str, dict[str, Any]] | None:  # notify hears of the last change asynchronously
        report = (await client.get(f"{notify}/reports/referrals", params=params)).json()
        rows = {r["stage"]: r for r in report["stages"] if r["crime_type"] == STAGED_CRIME}
        done = {s: (r["entered"], r["completed"]) for s, r in rows.items()}
        return rows if done == {s: (e["entered"], e["completed"]) for s, e in expected.items()} else None

    rows = await eventually(stage_rows, 60, f"the report's stages as routing's plans say: {expected}")
    for stage, row in rows.items():
        through = expected[stage]["through"]
        if through:  # one case completed each stage: its time through it, to the millisecond
            assert row["seconds"]["median"] == pytest.approx(statistics.median(through), abs=0.001), stage
        else:
            assert row["seconds"] == {"median": None, "p90": None}, stage

    # Printed: a PDF with the chart and the tables, in Korean, from the API and from casectl.
    # The first PDF imports matplotlib (seconds of CPU, longer on a loaded machine): a patient client.
    pdf_params = {**params, "format": "pdf", "lang": "ko"}
    answer = await client.get(f"{notify}/reports/referrals", params=pdf_params, timeout=180)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    printed = tmp_path / "report.pdf"
    command = [sys.executable, "-m", "casectl", "report", "--start", start.isoformat(), "--end", end.isoformat()]
    command += ["--crime-type", STAGED_CRIME, "--format", "pdf", "--output", str(printed), "--notify-url", notify]
    env = {**os.environ, "AUTH_SECRET": stack.env["AUTH_SECRET"]}
    made = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=240, env=env)
    assert made.returncode == 0, made.stderr
    for pdf in (pdfium.PdfDocument(answer.content), pdfium.PdfDocument(printed)):
        text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
        assert "의뢰 모니터링 보고서" in text and "investigation_legal" in text and "Kim" not in text
        for index in range(len(pdf)):
            pixels = pdf[index].render(scale=0.5).to_pil().convert("L").histogram()
            assert sum(pixels[:128]) > 150, f"page {index + 1} of the PDF is blank"
