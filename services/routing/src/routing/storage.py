"""SQL for routing decisions, the referrals they create, the cases they concern and the places agencies report."""

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from schemas.events import CaseFacts, CaseRouted, Consent, PlanStage, ReroutingRequested
from schemas.vocab import REFERRAL_STATE_RANK, CompletionOutcome, Need, ReferralState, WithdrawalScope

from .plan import ReferralStanding


async def save_case(conn: asyncpg.Connection, case_id: UUID, received_at: datetime, case: CaseFacts) -> None:
    await conn.execute(
        "INSERT INTO cases (case_id, received_at, details) VALUES ($1, $2, $3) ON CONFLICT (case_id) DO NOTHING",
        case_id,
        received_at,
        case.model_dump(mode="json"),
    )


async def load_case(conn: asyncpg.Connection, case_id: UUID) -> CaseFacts | None:
    """The case's facts, its row locked to the end of the transaction: one routing of a case at a time (a re-routing,
    a retry of its pending needs), so two cannot both choose the same agency."""
    details = await conn.fetchval("SELECT details FROM cases WHERE case_id = $1 FOR UPDATE", case_id)
    return None if details is None else CaseFacts.model_validate(details)


async def decided_already(conn: asyncpg.Connection, case_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM decisions WHERE case_id = $1", case_id))


async def save_decision(conn: asyncpg.Connection, routed: CaseRouted) -> None:
    await conn.execute(
        "INSERT INTO decisions (case_id, decided_at, decisions, uncovered_needs) VALUES ($1, $2, $3, $4)",
        routed.case_id,
        routed.occurred_at,
        [d.model_dump(mode="json") for d in routed.decisions],
        list(routed.uncovered_needs),
    )
    await save_referrals(conn, routed)


async def save_referrals(conn: asyncpg.Connection, routed: CaseRouted) -> None:
    await conn.executemany(
        "INSERT INTO referrals (referral_id, case_id, agency_id, needs, routed_at, rerouted_from)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (r.referral_id, routed.case_id, r.agency_id, list(r.needs), routed.occurred_at, routed.rerouted_from)
            for r in routed.referrals
        ],
    )


async def save_rerouting(conn: asyncpg.Connection, request: ReroutingRequested, routed: CaseRouted) -> None:
    await conn.execute(
        "INSERT INTO reroutings (rerouted_from, case_id, agency_id, cause, needs, decided_at, decisions,"
        " uncovered_needs) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        request.referral_id,
        request.case_id,
        request.agency_id,
        request.cause,
        list(request.needs),
        routed.occurred_at,
        [d.model_dump(mode="json") for d in routed.decisions],
        list(routed.uncovered_needs),
    )
    await save_referrals(conn, routed)


async def rerouted_already(conn: asyncpg.Connection, referral_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM reroutings WHERE rerouted_from = $1", referral_id))


async def referred_agencies(conn: asyncpg.Connection, case_id: UUID) -> list[str]:
    """Every agency that has (had) a referral for the case."""
    rows = await conn.fetch("SELECT agency_id FROM referrals WHERE case_id = $1 ORDER BY agency_id", case_id)
    return [r["agency_id"] for r in rows]


async def ended_referrals(conn: asyncpg.Connection, case_id: UUID) -> dict[str, str]:
    """Agencies whose referral for the case ended without help (declined, failed, overdue): id → cause."""
    rows = await conn.fetch("SELECT agency_id, cause FROM reroutings WHERE case_id = $1", case_id)
    return {r["agency_id"]: r["cause"] for r in rows}


# --- capacity ---------------------------------------------------------------------------------------


async def remaining_places(conn: asyncpg.Connection | asyncpg.Pool, *, lock: bool = False) -> dict[str, int]:
    """Places left per agency that reported; `lock` holds the rows until the transaction ends, so two
    concurrent routings cannot both take an agency's last place."""
    rows = await conn.fetch(
        "SELECT agency_id, remaining FROM agency_capacity ORDER BY agency_id" + (" FOR UPDATE" if lock else "")
    )
    return {r["agency_id"]: r["remaining"] for r in rows}


async def take_places(conn: asyncpg.Connection, agency_ids: Iterable[str]) -> None:
    await conn.execute(
        "UPDATE agency_capacity SET remaining = GREATEST(remaining - 1, 0) WHERE agency_id = ANY($1::text[])",
        list(agency_ids),
    )


async def report_capacity(
    conn: asyncpg.Connection | asyncpg.Pool, agency_id: str, available: int, at: datetime
) -> dict[str, Any]:
    row = await conn.fetchrow(
        "INSERT INTO agency_capacity (agency_id, reported, remaining, reported_at) VALUES ($1, $2, $2, $3)"
        " ON CONFLICT (agency_id) DO UPDATE SET reported = $2, remaining = $2, reported_at = $3"
        " RETURNING agency_id, reported, remaining, reported_at",
        agency_id,
        available,
        at,
    )
    assert row is not None
    return _capacity(row)


async def clear_capacity(conn: asyncpg.Connection | asyncpg.Pool, agency_id: str) -> bool:
    return bool(await conn.fetchval("DELETE FROM agency_capacity WHERE agency_id = $1 RETURNING true", agency_id))


async def capacity_reports(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch("SELECT agency_id, reported, remaining, reported_at FROM agency_capacity")
    return {r["agency_id"]: _capacity(r) for r in rows}


def _capacity(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "agency_id": row["agency_id"],
        "reported": row["reported"],
        "remaining": row["remaining"],
        "reported_at": row["reported_at"].isoformat(),
    }


# --- reading a decision -----------------------------------------------------------------------------


async def load_decision(pool: asyncpg.Pool, case_id: UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow("SELECT * FROM decisions WHERE case_id = $1", case_id)
    if row is None:
        return None
    referrals = await pool.fetch(
        "SELECT referral_id, agency_id, needs, routed_at, rerouted_from, state, outcome FROM referrals"
        " WHERE case_id = $1"
        " ORDER BY routed_at, agency_id",
        case_id,
    )
    reroutings = await pool.fetch(
        "SELECT * FROM reroutings WHERE case_id = $1 ORDER BY decided_at, rerouted_from", case_id
    )
    return {
        "case_id": str(case_id),
        "decided_at": row["decided_at"].isoformat(),
        "referrals": [
            {
                "referral_id": str(r["referral_id"]),
                "agency_id": r["agency_id"],
                "needs": r["needs"],
                "routed_at": r["routed_at"].isoformat(),
                "rerouted_from": None if r["rerouted_from"] is None else str(r["rerouted_from"]),
                "state": r["state"],  # as routing last heard on referral.events (the plan's rules go by it)
                "outcome": r["outcome"],
            }
            for r in referrals
        ],
        "decisions": row["decisions"],
        "uncovered_needs": row["uncovered_needs"],
        "reroutings": [
            {
                "rerouted_from": str(r["rerouted_from"]),
                "agency_id": r["agency_id"],
                "cause": r["cause"],
                "needs": r["needs"],
                "decided_at": r["decided_at"].isoformat(),
                "decisions": r["decisions"],
                "uncovered_needs": r["uncovered_needs"],
            }
            for r in reroutings
        ],
    }


# --- erasure ----------------------------------------------------------------------------------------


async def forget_case(conn: asyncpg.Connection, case_id: UUID) -> None:
    """Drop the case's facts: its consents (with any override's reason), contact rules and caseworker."""
    await conn.execute("DELETE FROM cases WHERE case_id = $1", case_id)
    await conn.execute("DELETE FROM consents_recorded WHERE case_id = $1", case_id)
    await conn.execute("DELETE FROM pending_needs WHERE case_id = $1", case_id)  # no agency is looked for any more


async def decision_of_case(conn: asyncpg.Connection, case_id: UUID) -> list[Any] | None:
    decisions: list[Any] | None = await conn.fetchval(
        "SELECT decisions FROM decisions WHERE case_id = $1 FOR UPDATE", case_id
    )
    return decisions


async def set_decision(conn: asyncpg.Connection, case_id: UUID, decisions: list[Any]) -> None:
    await conn.execute("UPDATE decisions SET decisions = $2 WHERE case_id = $1", case_id, decisions)


async def reroutings_of_case(conn: asyncpg.Connection, case_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT rerouted_from, decisions FROM reroutings WHERE case_id = $1 ORDER BY rerouted_from FOR UPDATE",
        case_id,
    )
    return rows


async def set_rerouting(conn: asyncpg.Connection, rerouted_from: UUID, decisions: list[Any]) -> None:
    await conn.execute("UPDATE reroutings SET decisions = $2 WHERE rerouted_from = $1", rerouted_from, decisions)


# --- consents withdrawn -----------------------------------------------------------------------------


async def save_withdrawal(
    conn: asyncpg.Connection, case_id: UUID, agency_id: str, scope: WithdrawalScope, at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO consent_withdrawals (case_id, agency_id, scope, withdrawn_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING",
        case_id,
        agency_id,
        scope.value,
        at,
    )


async def withdrawals(conn: asyncpg.Connection, case_id: UUID) -> dict[str, WithdrawalScope]:
    """What the victim withdrew per agency of the case: `all` where they withdrew the whole consent."""
    rows = await conn.fetch(
        "SELECT agency_id, bool_or(scope = 'all') AS everything FROM consent_withdrawals WHERE case_id = $1"
        " GROUP BY agency_id",
        case_id,
    )
    return {r["agency_id"]: WithdrawalScope.all if r["everything"] else WithdrawalScope.sensitive for r in rows}


async def save_recorded_consent(conn: asyncpg.Connection, case_id: UUID, consent: Consent, at: datetime) -> None:
    """Where the agency's consent stands since `at`; an older record that comes late changes nothing."""
    await conn.execute(
        "INSERT INTO consents_recorded (case_id, agency_id, consent, recorded_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (case_id, agency_id) DO UPDATE SET consent = EXCLUDED.consent, recorded_at = EXCLUDED.recorded_at"
        " WHERE consents_recorded.recorded_at <= EXCLUDED.recorded_at",
        case_id,
        consent.agency_id,
        consent.model_dump(mode="json"),
        at,
    )


async def recorded_consents(conn: asyncpg.Connection, case_id: UUID) -> list[Consent]:
    """The consents recorded since the case was submitted, one per agency."""
    rows = await conn.fetch("SELECT consent FROM consents_recorded WHERE case_id = $1 ORDER BY agency_id", case_id)
    return [Consent.model_validate(r["consent"]) for r in rows]


async def pending_needs_of(conn: asyncpg.Connection, case_id: UUID) -> list[str]:
    """The case's pending needs, locked for this transaction; those a retry round holds are left out (it tries them
    now, and reads the case after the caller's commit: it waits for the case's row, which the caller holds)."""
    rows = await conn.fetch(
        "SELECT need FROM pending_needs WHERE case_id = $1 ORDER BY need FOR UPDATE SKIP LOCKED", case_id
    )
    return [r["need"] for r in rows]


# --- pending needs ----------------------------------------------------------------------------------


async def hold_pending(conn: asyncpg.Connection, case_id: UUID, reasons: Mapping[str, str], at: datetime) -> None:
    """Keep these needs open with why no agency took them; a need held already counts one more attempt."""
    await conn.executemany(
        "INSERT INTO pending_needs (case_id, need, reason, since, last_tried_at) VALUES ($1, $2, $3, $4, $4)"
        " ON CONFLICT (case_id, need) DO UPDATE SET reason = EXCLUDED.reason, last_tried_at = EXCLUDED.last_tried_at,"
        " attempts = pending_needs.attempts + 1",
        [(case_id, need, reason, at) for need, reason in reasons.items()],
    )


async def release_pending(conn: asyncpg.Connection, case_id: UUID, needs: Iterable[str]) -> list[str]:
    """These needs are pending no more (routed, or closed by a caseworker): the ones that were."""
    rows = await conn.fetch(
        "DELETE FROM pending_needs WHERE case_id = $1 AND need = ANY($2::text[]) RETURNING need", case_id, list(needs)
    )
    return [r["need"] for r in rows]


async def pending_due(conn: asyncpg.Connection, tried_before: datetime, limit: int) -> dict[UUID, list[str]]:
    """Pending needs last tried before `tried_before`, by case, locked for this transaction (another replica skips
    them)."""
    rows = await conn.fetch(
        "SELECT case_id, need FROM pending_needs WHERE last_tried_at < $1 ORDER BY last_tried_at, case_id, need"
        " LIMIT $2 FOR UPDATE SKIP LOCKED",
        tried_before,
        limit,
    )
    due: dict[UUID, list[str]] = {}
    for row in rows:
        due.setdefault(row["case_id"], []).append(row["need"])
    return due


async def pending_of_case(conn: asyncpg.Connection | asyncpg.Pool, case_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT need, reason, since, last_tried_at, attempts FROM pending_needs WHERE case_id = $1"
        " ORDER BY since, need",
        case_id,
    )
    return [
        {
            "need": r["need"],
            "reason": r["reason"],
            "since": r["since"].isoformat(),
            "last_tried_at": r["last_tried_at"].isoformat(),
            "attempts": r["attempts"],
        }
        for r in rows
    ]


async def close_case(conn: asyncpg.Connection, case_id: UUID, closed_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO closed_cases (case_id, closed_at) VALUES ($1, $2) ON CONFLICT (case_id) DO NOTHING",
        case_id,
        closed_at,
    )
    await conn.execute("DELETE FROM pending_needs WHERE case_id = $1", case_id)


async def is_closed(conn: asyncpg.Connection, case_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM closed_cases WHERE case_id = $1", case_id))


# --- case plans -------------------------------------------------------------------------------------


async def save_plan(conn: asyncpg.Connection, case_id: UUID, stages: Sequence[PlanStage], at: datetime) -> None:
    await conn.execute(
        "INSERT INTO case_plans (case_id, stages, updated_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (case_id) DO UPDATE SET stages = EXCLUDED.stages, updated_at = EXCLUDED.updated_at",
        case_id,
        [s.model_dump(mode="json") for s in stages],
        at,
    )


async def plan_of(conn: asyncpg.Connection | asyncpg.Pool, case_id: UUID) -> list[PlanStage] | None:
    stages = await conn.fetchval("SELECT stages FROM case_plans WHERE case_id = $1", case_id)
    return None if stages is None else [PlanStage.model_validate(s) for s in stages]


# --- referral states --------------------------------------------------------------------------------

_BY_RANK = sorted(REFERRAL_STATE_RANK, key=REFERRAL_STATE_RANK.__getitem__)


async def record_state(
    conn: asyncpg.Connection, referral_id: UUID, state: ReferralState, outcome: CompletionOutcome | None
) -> bool:
    """Keep a referral's state if it outranks the one held (a late or repeated event changes nothing): whether it
    did. A referral routing did not make is not recorded."""
    changed = await conn.fetchval(
        "UPDATE referrals SET state = $2, outcome = $3 WHERE referral_id = $1"
        " AND array_position($4::text[], state) < array_position($4::text[], $2) RETURNING true",
        referral_id,
        state.value,
        None if outcome is None else outcome.value,
        [s.value for s in _BY_RANK],
    )
    return bool(changed)


async def standings(conn: asyncpg.Connection, case_id: UUID) -> list[ReferralStanding]:
    """Every referral of the case as a stage's rule sees it: needs, state, outcome, and whether it was re-routed."""
    rows = await conn.fetch(
        "SELECT r.needs, r.state, r.outcome, EXISTS (SELECT 1 FROM reroutings x WHERE x.rerouted_from = r.referral_id)"
        " AS rerouted FROM referrals r WHERE r.case_id = $1",
        case_id,
    )
    return [
        ReferralStanding(
            needs=frozenset(Need(n) for n in r["needs"]),
            state=ReferralState(r["state"]),
            outcome=None if r["outcome"] is None else CompletionOutcome(r["outcome"]),
            rerouted=r["rerouted"],
        )
        for r in rows
    ]
