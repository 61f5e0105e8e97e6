"""What each delivered case costs PostgreSQL, statement by statement (`./dev bench --statements`).

The benchmark's own PostgreSQL then loads `pg_stat_statements`; each phase starts from zeroed counters and ends by
reading them, so a phase's figures are its statements (BEGIN and COMMIT included: each is a round trip) divided by
its delivered cases. Every statement is counted, those a rolled-back transaction ran too.
"""

from dataclasses import dataclass
from typing import Any

import asyncpg

# Added to the PostgreSQL settings of the benchmark's own stack.
SETTINGS = {
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "'top'",  # what the services send: each a round trip (no triggers' own)
    "pg_stat_statements.max": "5000",
}
SHOWN = 15  # the statements the report lists, by calls per case (the JSON has them all)


@dataclass
class Statements:
    """`pg_stat_statements` of a PostgreSQL server the benchmark may reset (its own)."""

    dsn: str  # a database of that server: the extension's view lives there and shows every database's statements

    async def reset(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.execute("SELECT pg_stat_statements_reset()")
        finally:
            await conn.close()

    async def read(self) -> list[dict[str, Any]]:
        """Each statement of the services' database (normalised text), with its calls and execution time."""
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                "SELECT s.query, s.calls, s.total_exec_time FROM pg_stat_statements s"
                " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname <> current_database()"
            )
        finally:
            await conn.close()
        return [{"query": r["query"], "calls": int(r["calls"]), "exec_ms": float(r["total_exec_time"])} for r in rows]


def per_case(rows: list[dict[str, Any]], cases: int) -> dict[str, Any]:
    """Calls and execution time per delivered case, in all and for each statement (the most called first)."""
    if cases <= 0:
        return {}
    ranked = sorted(rows, key=lambda r: r["calls"], reverse=True)
    return {
        "calls_per_case": round(sum(r["calls"] for r in rows) / cases, 1),
        "exec_ms_per_case": round(sum(r["exec_ms"] for r in rows) / cases, 2),
        "distinct": len(rows),
        "top": [
            {
                "query": " ".join(r["query"].split())[:160],
                "calls_per_case": round(r["calls"] / cases, 2),
                "exec_ms_per_case": round(r["exec_ms"] / cases, 3),
            }
            for r in ranked
        ],
    }
