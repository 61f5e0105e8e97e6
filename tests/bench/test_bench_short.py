"""The benchmark's short run, as CI runs it: it completes, every case reaches its agencies, the results are written.

Its figures are printed for the CI log; nothing here passes or fails on timing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_the_short_benchmark_runs_every_case_through_and_writes_its_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--short", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=840,
        env={**os.environ, "COLUMNS": "160"},  # wide enough for the tables in a CI log
    )
    assert run.returncode == 0, f"the benchmark failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"

    reports = list(tmp_path.glob("bench-*.json"))
    assert len(reports) == 1, f"expected one JSON report in {tmp_path}, found {reports}"
    assert reports[0].with_suffix(".png").stat().st_size > 0
    report = json.loads(reports[0].read_text())
    pipeline = [p for p in report["phases"] if p["system"] == "pipeline"]
    baseline = [p for p in report["phases"] if p["system"] == "baseline"]
    assert {p["mode"] for p in pipeline} == {"rate", "max"}
    assert any(p["replicas"] == 2 for p in pipeline), "the scale-out run is missing"
    assert {p["mode"] for p in baseline} == {"rate", "max"}
    for phase in pipeline:
        assert phase["accepted"] > 0, f"{phase['name']}: intake accepted no case"
        assert phase["rejected"] == {}, f"{phase['name']}: intake refused cases: {phase['rejected']}"
        # Each case goes to three agencies; every one of them must have received its referral.
        assert phase["referrals_expected"] == 3 * phase["accepted"], phase["name"]
        assert phase["referrals_received"] == phase["referrals_expected"], phase["name"]
        assert phase["delivered"] == phase["accepted"], phase["name"]
    for phase in baseline:
        assert phase["acknowledged"] == phase["accepted"] > 0, f"{phase['name']}: cases lost in the bare chain"

    with capsys.disabled():
        print(f"\n--- benchmark, short run (figures only, no pass/fail on timing) ---\n{run.stdout[-12000:]}")
