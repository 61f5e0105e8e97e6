"""HTTP routes: agencies answer referrals, staff cancel them; staff and ops read states, case status and timelines."""

from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from kit.access_log import Access, AccessLog
from kit.auth import STAFF, Principal, Role, refuse, require
from kit.deps import AccessLogDep, AgencyDep, PoolDep, StaffDep, provided
from kit.errors import NotFound
from kit.http import Problem
from kit.telemetry import continue_trace
from pydantic import Field, model_validator
from schemas.events import (
    AgencyId,
    Contract,
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralDeclined,
    ReferralStarted,
    utc_now,
)
from schemas.vocab import (
    CancelReason,
    CompletionOutcome,
    DeclineReason,
    FollowUpOutcome,
    NotSuccessfulReason,
    ReferralState,
)

from . import follow_ups, pending, plans, storage
from .commands import act
from .context import Command, Context
from .domain import Attention, ReferralSummary, case_status
from .follow_up_actions import Also, close_task, reroute
from .follow_up_rules import TaskState

Note = Annotated[str, Field(min_length=1, max_length=500)]


class Body(Contract):
    """A request body: no field beyond the contract's, and no NUL in any text (422 at the edge)."""


class Acceptance(Body):
    agency_id: AgencyId | None = None  # the token says which agency answers; if given, it must be that one
    note: Note | None = None


class Refusal(Body):
    agency_id: AgencyId | None = None
    reason: DeclineReason
    note: Note | None = None


class Start(Body):
    agency_id: AgencyId | None = None
    note: Note | None = None


class Completion(Body):
    agency_id: AgencyId | None = None
    outcome: CompletionOutcome
    reason: NotSuccessfulReason | None = None
    note: Note | None = None

    @model_validator(mode="after")
    def _reason_when_not_successful(self) -> "Completion":
        if (self.outcome is CompletionOutcome.not_successful) != (self.reason is not None):
            raise ValueError("a reason is required when, and only when, the outcome is not_successful")
        return self


class Cancellation(Body):
    reason: CancelReason
    note: Note | None = None


Build = Callable[[asyncpg.Record], Command]
ContextDep = Annotated[Context, Depends(provided(Context))]
StaffOrAgency = Annotated[Principal, Depends(require(*STAFF, Role.agency))]

# Agencies answer their own referrals (the agency comes from the token); staff read and cancel the centre's; each
# read or change of a case's data is written to the access log (auditors read it: kit.access_log_api).
router = APIRouter()


@dataclass(frozen=True)
class Commands:
    """Commands over HTTP — an agency's answer, a staff cancel — by the caller, applied with notify's context and
    access-logged."""

    request: Request
    who: Principal
    pool: asyncpg.Pool
    ctx: Context
    access_log: AccessLog

    async def answer(self, referral_id: UUID, named: str | None, build: Build) -> dict[str, Any]:
        """The calling agency's answer (the body may name the agency only if it is the token's)."""
        assert self.who.agency is not None  # an agency token always names its agency
        if named is not None and named != self.who.agency:
            raise refuse(
                self.request, 403, "agency_mismatch", "the body names another agency than the token's", self.who
            )
        return await self.run(referral_id, self.who.agency, build)

    async def run(self, referral_id: UUID, by_agency: str | None, build: Build) -> dict[str, Any]:
        request, who = self.request, self.who
        action = request.url.path.rsplit("/", 1)[-1]

        async def access_logged(conn: asyncpg.Connection, event: Command) -> None:
            await self.access_log.record(conn, who, Access(f"referral.{action}", event.case_id, referral_id))

        # The agency's call comes without the case's trace context: the answer joins the case's trace all the same.
        with continue_trace(await storage.trace_of_referral(self.pool, referral_id), "referral acknowledgement"):
            try:
                # Changed, recorded, published and access-logged in one transaction, or refused with nothing changed
                # (a refusal is answered by its problem: kit/http.py).
                outcome, state = await act(self.pool, self.ctx, referral_id, by_agency, build, also=access_logged)
            except NotFound as unknown:
                if unknown.reason == "wrong_agency":  # logged as a refusal; answered as an unknown referral
                    raise refuse(request, 404, "wrong_agency", unknown.detail, who) from None
                raise
        return {"referral_id": str(referral_id), "state": state, "changed": outcome == "applied"}


async def agency_commands(
    request: Request, who: AgencyDep, pool: PoolDep, ctx: ContextDep, access_log: AccessLogDep
) -> Commands:
    return Commands(request, who, pool, ctx, access_log)


async def staff_commands(
    request: Request, who: StaffDep, pool: PoolDep, ctx: ContextDep, access_log: AccessLogDep
) -> Commands:
    return Commands(request, who, pool, ctx, access_log)


AgencyCommands = Annotated[Commands, Depends(agency_commands)]
StaffCommands = Annotated[Commands, Depends(staff_commands)]


def envelope(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "case_id": row["case_id"],
        "producer": "notify",
        "referral_id": row["referral_id"],
        "agency_id": row["agency_id"],
    }


@router.post("/referrals/{referral_id}/accept", tags=["acknowledgements"])
async def accept(referral_id: UUID, body: Acceptance, agency: AgencyCommands) -> dict[str, Any]:
    """The agency takes the referral. Repeating it changes nothing; after a decline it is refused (409)."""
    return await agency.answer(
        referral_id, body.agency_id, lambda row: ReferralAccepted(**envelope(row), note=body.note)
    )


@router.post("/referrals/{referral_id}/decline", tags=["acknowledgements"])
async def decline(referral_id: UUID, body: Refusal, agency: AgencyCommands) -> dict[str, Any]:
    """The agency cannot help, with a reason from the decline vocabulary; routing looks for another agency."""
    return await agency.answer(
        referral_id, body.agency_id, lambda row: ReferralDeclined(**envelope(row), reason=body.reason, note=body.note)
    )


@router.post("/referrals/{referral_id}/start", tags=["acknowledgements"])
async def start(referral_id: UUID, body: Start, agency: AgencyCommands) -> dict[str, Any]:
    """The agency has begun working with the victim (after accepting)."""
    return await agency.answer(
        referral_id, body.agency_id, lambda row: ReferralStarted(**envelope(row), note=body.note)
    )


@router.post("/referrals/{referral_id}/complete", tags=["acknowledgements"])
async def complete(referral_id: UUID, body: Completion, agency: AgencyCommands) -> dict[str, Any]:
    """The agency's work ended: successful, or not_successful with a reason. The caseworker is told."""

    def completed(row: asyncpg.Record) -> Command:
        return ReferralCompleted(**envelope(row), outcome=body.outcome, reason=body.reason, note=body.note)

    return await agency.answer(referral_id, body.agency_id, completed)


@router.post("/referrals/{referral_id}/cancel", tags=["staff"])
async def cancel(referral_id: UUID, body: Cancellation, staff: StaffCommands) -> dict[str, Any]:
    """Staff end an open referral (consent withdrawn, case closed…); an ended one cannot be cancelled (409)."""
    return await staff.run(
        referral_id, None, lambda row: ReferralCancelled(**envelope(row), reason=body.reason, note=body.note)
    )


@router.get("/referrals", tags=["referrals"])
async def agency_referrals(
    who: AgencyDep, pool: PoolDep, access_log: AccessLogDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[dict[str, Any]]:
    """The calling agency's own open referrals (awaiting its answer, accepted or in progress), nearest deadline
    first: its inbox. Never another agency's."""
    assert who.agency is not None  # an agency token always names its agency
    referrals = await storage.open_referrals_of_agency(pool, who.agency, limit)
    reads = [Access("referral.read", UUID(r["case_id"]), UUID(r["referral_id"])) for r in referrals]
    await access_log.record_now(pool, who, *reads)
    return referrals


@router.get("/referrals/{referral_id}", tags=["referrals"])
async def referral(
    referral_id: UUID, request: Request, who: StaffOrAgency, pool: PoolDep, access_log: AccessLogDep
) -> dict[str, Any]:
    """One referral's state and history; an agency sees only its own (another's is 404: existence does not leak)."""
    found = await storage.load_referral(pool, referral_id)
    if found is not None and who.role is Role.agency and found["agency_id"] != who.agency:
        refuse(request, 404, "wrong_agency", "", who)  # logged; answered as if unknown
        found = None
    if found is None:
        raise Problem(404, f"no referral {referral_id}")
    await access_log.record_now(pool, who, Access("referral.read", UUID(str(found["case_id"])), referral_id))
    return found


@router.get("/cases/needing-attention", tags=["staff"])
async def needing_attention(
    who: StaffDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """Cases where staff must act: a referral overdue, declined or failed with no new agency for its needs, a
    need no agency could take yet, or a follow-up task still open (`attention` says which)."""
    rows = await storage.referrals_of_cases_needing_attention(pool, limit)
    by_case = {case_id: list(referrals) for case_id, referrals in groupby(rows, key=lambda r: r["case_id"])}
    for case_id in [
        *await pending.cases_with_pending_needs(pool, limit),
        *await follow_ups.cases_with_open_tasks(pool, limit),
    ]:
        if str(case_id) not in by_case:
            by_case[str(case_id)] = await storage.referrals_of_case(pool, case_id)
    waiting = await pending.pending_of_cases(pool, [UUID(c) for c in by_case])
    tasks = await follow_ups.of_cases(pool, [UUID(c) for c in by_case])
    cases = []
    for case_id, referrals in sorted(by_case.items())[:limit]:
        status = _status(case_id, referrals, waiting.get(case_id, []), tasks.get(case_id, []))
        if status["status"] == "needs_attention":
            cases.append(status)
    reads = [Access("case.status.read", UUID(str(c["case_id"]))) for c in cases]
    await access_log.record_now(pool, who, *reads)
    return cases


@router.get("/cases/{case_id}/status", tags=["staff"])
async def status(case_id: UUID, who: StaffDep, pool: PoolDep, access_log: AccessLogDep) -> dict[str, Any]:
    """The case's overall state from its referrals: open, all_accepted, needs_attention or closed."""
    referrals = await storage.referrals_of_case(pool, case_id)
    if not referrals and not await storage.case_is_known(pool, case_id):
        raise Problem(404, f"no case {case_id}")
    waiting = (await pending.pending_of_cases(pool, [case_id])).get(str(case_id), [])
    tasks = (await follow_ups.of_cases(pool, [case_id])).get(str(case_id), [])
    closing = await pending.closing_of(pool, case_id)
    stages = await plans.plan_of(pool, case_id)
    await access_log.record_now(pool, who, Access("case.status.read", case_id))
    plan = None if stages is None else plans.shown(stages, referrals, utc_now())
    return {**_status(str(case_id), referrals, waiting, tasks), **closed_status(closing), "plan": plan}


@router.get("/cases/{case_id}/referrals", tags=["referrals"])
async def case_referrals(case_id: UUID, who: StaffDep, pool: PoolDep, access_log: AccessLogDep) -> list[dict[str, Any]]:
    referrals = await storage.referrals_of_case(pool, case_id)
    if referrals:
        await access_log.record_now(pool, who, Access("case.referrals.read", case_id))
    return referrals


@router.get("/cases/{case_id}/notifications", tags=["staff"])
async def notifications(case_id: UUID, who: StaffDep, pool: PoolDep, access_log: AccessLogDep) -> list[dict[str, Any]]:
    """Who was told what, when, by which channel, and which messages were withheld and why (never addresses)."""
    notices = await storage.notices_of_case(pool, case_id)
    if notices:
        await access_log.record_now(pool, who, Access("case.notifications.read", case_id))
    return notices


@router.get("/cases/{case_id}/timeline", tags=["timeline"])
async def timeline(case_id: UUID, who: StaffDep, pool: PoolDep, access_log: AccessLogDep) -> dict[str, Any]:
    """Every event of the case in the order it happened, with times."""
    events = await storage.timeline_of_case(pool, case_id)
    if not events:
        raise Problem(404, f"no events for case {case_id} (yet)")
    await access_log.record_now(pool, who, Access("case.timeline.read", case_id))
    return {"case_id": str(case_id), "events": events}


# --- follow-ups: a completed referral's task for the caseworker (follow_up_rules.py) ----------------------------


class FollowUpDone(Body):
    outcome: FollowUpOutcome  # from the caseworker's vocabulary (FOLLOW_UP_CLOSINGS); who closes it is the token's


class RerouteAcceptance(Body):
    """Accepting the proposal says nothing more: the needs are the completed referral's, who accepts is the token's."""


def _logged(access_log: AccessLog, who: Principal, action: str) -> Also:
    async def record(conn: asyncpg.Connection, task: asyncpg.Record) -> None:
        await access_log.record(conn, who, Access(action, task["case_id"], task["referral_id"]))

    return record


@router.get("/follow-ups", tags=["staff"])
async def follow_up_list(
    who: StaffDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    state: Literal["open", "done", "all"] = "open",
    caseworker: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    mine: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """Follow-up tasks, the soonest due first — the caseworker's home: `?state=open&mine=true` (the cases whose
    caseworker id is the token's subject) or `?caseworker=<id>`. Staff only; each case listed is access-logged."""
    if mine:
        caseworker = who.subject
    tasks = await follow_ups.listed(pool, None if state == "all" else TaskState(state), caseworker, limit)
    reads = [Access("case.follow_ups.read", UUID(case_id)) for case_id in dict.fromkeys(t["case_id"] for t in tasks)]
    await access_log.record_now(pool, who, *reads)
    return tasks


@router.post("/cases/{case_id}/follow-ups/{task_id}/done", tags=["staff"])
async def follow_up_done(
    case_id: UUID, task_id: UUID, body: FollowUpDone, who: StaffDep, pool: PoolDep, access_log: AccessLogDep
) -> dict[str, Any]:
    """Close an open follow-up with an outcome code (needs_met, needs_remain, victim_not_reached,
    victim_declined_further_help, reviewed_without_contact); a re-routing it proposed is thereby declined. Another
    code is 422, a task done already 409, an unknown one (or another case's) 404: nothing changes."""
    logged = _logged(access_log, who, "case.follow_up.done")
    return await close_task(pool, case_id, task_id, body.outcome, who.credential, logged)


@router.post("/cases/{case_id}/follow-ups/{task_id}/reroute", tags=["staff"])
async def follow_up_reroute(
    case_id: UUID,
    task_id: UUID,
    who: StaffDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    body: RerouteAcceptance | None = None,
) -> dict[str, Any]:
    """Accept the follow-up's proposal: routing is asked for another agency for the completed referral's needs (the
    agency that completed it is never chosen again), and the task is done (`rerouted`). 409 for a task that proposes
    nothing, is done already, or whose case is closed."""
    return await reroute(pool, case_id, task_id, who.credential, _logged(access_log, who, "case.follow_up.reroute"))


def closed_status(closing: dict[str, Any] | None) -> dict[str, Any]:
    """A closed case is `closed` whatever its referrals say (notify cancels the open ones), with when and why."""
    return {"closing": None} if closing is None else {"status": "closed", "closing": closing}


def _status(
    case_id: str, referrals: list[dict[str, Any]], pending_needs: list[dict[str, Any]], tasks: list[dict[str, Any]]
) -> dict[str, Any]:
    summaries = [
        ReferralSummary(ReferralState(r["state"]), r["overdue_at"] is not None, bool(r["replaced_by"]))
        for r in referrals
    ]
    still_open = [t for t in tasks if t["state"] == TaskState.open]
    return {
        "case_id": case_id,
        "status": case_status(summaries, len(pending_needs), len(still_open)),
        "pending_needs": pending_needs,  # needs no agency could take yet: routing keeps trying (GET its pending-needs)
        "attention": [
            {"referral_id": r["referral_id"], "agency_id": r["agency_id"], "reason": r["attention"]}
            for r in referrals
            if r["attention"] is not None
        ]
        + [
            {
                "referral_id": t["referral_id"],
                "agency_id": t["agency_id"],
                "reason": Attention.reroute_proposed if t["proposal"] else Attention.follow_up_open,
                "task_id": t["task_id"],
                "due_at": t["due_at"],
            }
            for t in still_open
        ],
        "follow_ups": tasks,  # a completed referral's task for the caseworker, open or done (GET /follow-ups)
        "referrals": referrals,
    }
