"""The benchmark's report: PostgreSQL's statements per delivered case (`--statements`), and issue #15's targets."""

import pytest
from bench.cli import parse
from bench.report import statement_tables, targets
from bench.statements import SHOWN, per_case


def rows(*counts: tuple[str, int, float]) -> list[dict[str, object]]:
    return [{"query": q, "calls": c, "exec_ms": ms} for q, c, ms in counts]


def test_per_case_divides_by_the_delivered_cases_and_ranks_by_calls() -> None:
    figures = per_case(rows(("COMMIT", 40, 1.0), ("SELECT\n  *  FROM referrals", 60, 3.0), ("BEGIN", 40, 1.0)), 20)
    assert figures["calls_per_case"] == 7.0 and figures["exec_ms_per_case"] == 0.25 and figures["distinct"] == 3
    assert [t["query"] for t in figures["top"]] == ["SELECT * FROM referrals", "COMMIT", "BEGIN"], "whitespace folded"
    assert figures["top"][0]["calls_per_case"] == 3.0
    assert per_case(rows(("COMMIT", 1, 0.1)), 0) == {}, "no case delivered: nothing to divide by"


def test_the_report_lists_each_phase_and_the_most_called_statements_with_pipes_escaped() -> None:
    many = rows(*((f"SELECT {i} || 'x'", 100 - i, 0.5) for i in range(SHOWN + 5)))
    phases = [
        {"name": "pipeline at 10 cases/s", "statements": per_case(many, 10)},
        {"name": "bare Kafka chain at 10 cases/s"},  # counted nothing: no row
    ]
    (title, _, each_phase), (top_title, _, top) = statement_tables(phases)
    assert "per delivered case" in title and "pipeline at 10 cases/s" in top_title
    calls = sum(100 - i for i in range(SHOWN + 5)) / 10
    exec_ms = round(0.5 * (SHOWN + 5) / 10, 2)
    assert each_phase == [["pipeline at 10 cases/s", str(round(calls, 1)), str(exec_ms), str(SHOWN + 5)]]
    assert len(top) == SHOWN, "the report shows the first SHOWN; the JSON has them all"
    assert top[0] == ["10.0", "0.05", "SELECT 0 \\|\\| 'x'"]
    assert statement_tables([{"name": "no counts"}]) == []


def test_the_targets_are_issue_15s_each_against_what_was_measured() -> None:
    def phase(mode: str, **more: object) -> dict[str, object]:
        return {"system": "pipeline", "mode": mode, "replicas": 1, "offered_rate": None, "processes": {}, **more}

    phases = [
        phase(
            "rate",
            offered_rate=20,
            latency_ms={"delivered_all": {"p50": 40.0, "p99": 300.0}},
            processes={"notify": {"peak_rss_mb": 120.0}, "kafka": {"peak_rss_mb": 500.0}},
        ),
        phase("max", cpu_ms_per_case={"system": 19.5}, sustained_cases_per_s=85.0),
        phase("catch-up", catch_up={"queued": 3000, "to_acknowledge_all_s": 61.0}),
    ]
    compared = {"at_rate": 10, "p50_ratio": {"case.submitted": 2.5, "referrals.<agency>": 9.0}}
    met = {row["target"]: row["met"] for row in targets(phases, compared)}
    assert met == {
        "system CPU per case at maximum rate (services, Kafka, PostgreSQL) ≤ 20 ms": True,
        "sustained cases/s at maximum (3 agencies each) ≥ 80": True,
        "at 20 cases/s, accepted → all delivered p50 ≤ 50 ms": True,
        "at 20 cases/s, accepted → all delivered p99 ≤ 250 ms": False,
        "hop case.submitted at 10 cases/s ≤ 3× the bare chain's p50": True,
        "hop referrals.<agency> at 10 cases/s ≤ 8× the bare chain's p50": False,
        "catch-up of 3000 queued cases, delivered and acknowledged, ≤ 60 s": False,
        "peak RSS per Python service ≤ 150 MB": True,  # Kafka's JVM is not a Python service
    }


def test_statements_are_refused_with_a_running_stack_whose_postgresql_the_bench_cannot_set_up() -> None:
    running = ["--intake-url", "http://a", "--notify-url", "http://b", "--simulator-url", "http://c", "--kafka", "k:1"]
    assert parse(running).statements is False
    with pytest.raises(SystemExit):
        parse([*running, "--statements"])
