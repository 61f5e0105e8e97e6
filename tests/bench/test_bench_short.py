"""The benchmark's short run, as CI runs it: it completes, every case reaches its agencies (those queued while the
consumers were stopped too), the results are written with the CPU and the PostgreSQL statements each case cost.

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
        [sys.executable, "-m", "bench", "--short", "--statements", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=840,
        env={**os.environ, "COLUMNS": "160"},  # wide enough for the tables in a CI log
    )
    assert run.returncode == 0, f"the benchmark failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"

    reports = list(tmp_path.glob("bench-*.json"))
    assert len(reports) == 1, f"expected one JSON report in {tmp_path}, found {reports}"
    assert reports[0].with_suffix(".png").stat().st_size > 0
    assert "PostgreSQL statements per delivered case" in reports[0].with_suffix(".md").read_text()
    report = json.loads(reports[0].read_text())
    pipeline = [p for p in report["phases"] if p["system"] == "pipeline"]
    baseline = [p for p in report["phases"] if p["system"] == "baseline"]
    assert {p["mode"] for p in pipeline} == {"rate", "max", "catch-up"}
    assert any(p["replicas"] == 2 for p in pipeline), "the scale-out run is missing"
    assert {p["mode"] for p in baseline} == {"rate", "max"}
    for phase in pipeline:
        assert phase["accepted"] > 0, f"{phase['name']}: intake accepted no case"
        assert phase["rejected"] == {}, f"{phase['name']}: intake refused cases: {phase['rejected']}"
        # Each case goes to three agencies; every one of them must have received its referral.
        assert phase["referrals_expected"] == 3 * phase["accepted"], phase["name"]
        assert phase["referrals_received"] == phase["referrals_expected"], phase["name"]
        assert phase["delivered"] == phase["accepted"], phase["name"]
        cpu = phase["cpu_ms_per_case"]
        assert {"intake", "routing", "agency-gateway", "notify", "kafka", "postgres"} <= set(cpu["system_processes"])
        assert cpu["system"] > 0 and cpu["agency_simulator"] is not None and cpu["load_generator"] > 0, cpu
        assert set(cpu["per_process"]) == set(phase["processes"]), phase["name"]
        statements = phase["statements"]  # `--statements`: pg_stat_statements, from zero at the phase's start
        assert statements["calls_per_case"] > 0 and statements["top"], phase["name"]
        assert any("INSERT INTO outbox" in t["query"] for t in statements["top"]), statements["top"]
    caught_up = next(p for p in pipeline if p["mode"] == "catch-up")
    assert caught_up["accepted"] == caught_up["submitted"] == 100, "the short catch-up queues 100 cases"
    assert caught_up["acknowledged"] == caught_up["accepted"], "a queued case was never acknowledged"
    figures = caught_up["catch_up"]
    assert figures["to_deliver_all_s"] is not None and figures["to_acknowledge_all_s"] is not None, figures
    for service in ("routing", "agency-gateway", "notify"):
        assert service in caught_up["processes"], f"{service} restarted but not measured"
    for phase in baseline:
        assert phase["acknowledged"] == phase["accepted"] > 0, f"{phase['name']}: cases lost in the bare chain"
        assert phase["cpu_ms_per_case"]["system_processes"] == ["kafka"], phase["name"]

    with capsys.disabled():
        print(f"\n--- benchmark, short run (figures only, no pass/fail on timing) ---\n{run.stdout[-12000:]}")
