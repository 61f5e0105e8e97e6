"""`./dev bench --statements`: PostgreSQL's statements per delivered case, and how the report shows them."""

from bench.report import statement_tables
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
