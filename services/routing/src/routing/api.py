"""HTTP routes: the routing preview staff see before asking consent, recorded decisions, the catalogue and the
places agencies report."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Path, Request, Response, status
from kit.access_log import Access, AccessLog
from kit.auth import STAFF, Principal, Role, refuse, require
from kit.deps import AccessLogDep, PoolDep, StaffDep, provided
from kit.http import Problem
from kit.outbox import add_to_outbox
from pydantic import BaseModel, ConfigDict, Field
from schemas.calendar import is_open, next_opening
from schemas.catalogue import SENSITIVE_FIELDS, Agency, Catalogue
from schemas.events import AgencyId, CaseDetails, NeedClosed, PlanStage
from schemas.topics import REFERRAL_EVENTS
from schemas.validators import listed_once
from schemas.vocab import Need, NeedClosedReason

from . import storage
from .domain import ConsentBasis, route_case, shared_fields
from .handlers import Clock, change_plan
from .plan import PlanRefused, advanced, with_needs
from .rules import Rules

AgencyPath = Annotated[str, Path(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]


class CapacityReport(BaseModel):
    """Places an agency has free now; each referral routing makes afterwards takes one, until the next report."""

    model_config = ConfigDict(extra="forbid")

    available: Annotated[int, Field(ge=0, le=100_000)]


class StageNeeds(BaseModel):
    """A waiting stage's needs, in the order the caseworker wants them; a need listed here leaves its old stage."""

    model_config = ConfigDict(extra="forbid")

    needs: Annotated[list[Need], Field(max_length=len(Need)), listed_once("need")]


class ClosingNeed(BaseModel):
    """Why the caseworker ends a pending need: a code; who closes it comes from the credential."""

    model_config = ConfigDict(extra="forbid")

    reason: NeedClosedReason


@dataclass(frozen=True)
class Routing:
    """What routing's routes read besides the database: the catalogue, the rules, the clock, and whom to tell when an
    agency reports places (pending needs are tried again at once), from main.py."""

    catalogue: Catalogue
    rules: Rules
    clock: Clock
    on_capacity: Callable[[], None] = lambda: None


RoutingDep = Annotated[Routing, Depends(provided(Routing))]
StaffOrService = Annotated[Principal, Depends(require(*STAFF, Role.service))]
AnyoneButAuditor = Annotated[Principal, Depends(require(*STAFF, Role.service, Role.agency))]
CapacitySetter = Annotated[Principal, Depends(require(Role.supervisor, Role.agency))]

# Staff and services (intake's preview) read decisions and previews; agencies read the catalogue and report their own
# capacity (supervisors may set any agency's). A decision's read is access-logged: it says which agencies hold the
# victim's data and why (an override's reason is staff's free text); auditors read the log (kit.access_log_api).
router = APIRouter()


def may_set_capacity(request: Request, who: Principal, agency_id: str) -> None:
    if who.role is Role.agency and who.agency != agency_id:
        raise refuse(request, 403, "wrong_agency", "an agency may report only its own capacity", who)


def known(catalogue: Catalogue, agency_id: AgencyId) -> Agency:
    if agency_id not in catalogue:
        raise Problem(404, f"no agency {agency_id} in the catalogue")
    return catalogue[agency_id]


@router.post("/preview", tags=["routing"])
async def preview(case: CaseDetails, who: StaffOrService, pool: PoolDep, routing: RoutingDep) -> dict[str, Any]:
    """Which agencies this case would reach now, why each candidate was chosen or skipped, and what each
    would be told: its consent notice, and the fields it would receive given the consents recorded so far."""
    now = routing.clock()
    remaining = await storage.remaining_places(pool)
    plan = route_case(case.facts(), routing.catalogue, routing.rules, now, remaining=remaining, assume_consent=True)
    consents = {c.agency_id: c for c in case.consents}
    return {
        "decided_at": now.isoformat(),
        "agencies": [
            {
                "agency_id": r.agency.id,
                "name_ko": r.agency.name_ko,
                "name_en": r.agency.name_en,
                "needs": r.needs,
                "consent": r.consent.value,
                "consent_recorded": r.consent is ConsentBasis.recorded,
                "override": None if r.override is None else r.override.model_dump(mode="json"),
                "fields_shared": shared_fields(r.agency, consents.get(r.agency.id)),
                "sensitive_fields_need_separate_consent": sorted(SENSITIVE_FIELDS & set(r.agency.allowed_fields)),
                "consent_notice": r.agency.consent_notice.model_dump(mode="json"),
                "open_now": is_open(r.agency.hours, now, routing.rules.public_holidays),
                "opens_at": next_opening(r.agency.hours, now, routing.rules.public_holidays).isoformat(),
            }
            for r in plan.referrals
        ],
        "consent_to_ask": [r.agency.id for r in plan.referrals if r.consent is ConsentBasis.to_ask],
        "decisions": [d.model_dump(mode="json") for d in plan.decisions],
        "uncovered_needs": plan.uncovered_needs,
    }


@router.get("/cases/{case_id}/decision", tags=["routing"])
async def decision(case_id: UUID, who: StaffOrService, pool: PoolDep, access_log: AccessLogDep) -> dict[str, Any]:
    """Why each agency was chosen or skipped for the case, and every re-routing since."""
    found = await storage.load_decision(pool, case_id)
    if found is None:
        raise Problem(404, f"no routing decision for case {case_id} (yet)")
    await access_log.record_now(pool, who, Access("case.decision.read", case_id))
    return found


@router.get("/cases/{case_id}/pending-needs", tags=["routing"])
async def pending_needs(case_id: UUID, who: StaffOrService, pool: PoolDep, access_log: AccessLogDep) -> dict[str, Any]:
    """The case's needs no agency could take yet, with why, since when and how often routing tried again."""
    pending = await storage.pending_of_case(pool, case_id)
    await access_log.record_now(pool, who, Access("case.pending_needs.read", case_id))
    return {"case_id": str(case_id), "pending_needs": pending}


@router.post("/cases/{case_id}/pending-needs/{need}/close", tags=["routing"])
async def close_pending_need(
    case_id: UUID, need: Need, closing: ClosingNeed, who: StaffDep, pool: PoolDep, access_log: AccessLogDep
) -> dict[str, Any]:
    """End a pending need (the victim no longer needs it, help was arranged elsewhere...): routing stops looking
    for an agency for it and the case's status no longer lists it (need.closed on referral.events)."""
    async with pool.acquire() as conn, conn.transaction():
        if not await storage.release_pending(conn, case_id, [need]):
            raise Problem(404, f"no pending need {need} for case {case_id}")
        closed = NeedClosed(
            case_id=case_id, producer="routing", need=need, reason=closing.reason, closed_by=who.credential
        )
        await add_to_outbox(conn, REFERRAL_EVENTS, closed)
        await access_log.record(conn, who, Access("case.pending_need.close", case_id))
    return {"case_id": str(case_id), "need": need, "closed": closing.reason, "closed_by": who.credential}


def shown_plan(routing: Routing, case_id: UUID, stages: list[PlanStage]) -> dict[str, Any]:
    """The plan with each stage's name in Korean and English, from the centre's stages."""
    plan = routing.rules.plan
    names = {} if plan is None else {s.id: (s.name_ko, s.name_en) for s in plan.stages}
    shown = []
    for stage in stages:
        name_ko, name_en = names.get(stage.stage, (stage.stage, stage.stage))
        shown.append({**stage.model_dump(mode="json"), "name_ko": name_ko, "name_en": name_en})
    return {"case_id": str(case_id), "stages": shown}


async def changed_plan(
    routing: Routing,
    who: Principal,
    pool: asyncpg.Pool,
    access_log: AccessLog,
    case_id: UUID,
    change: Callable[[list[PlanStage]], tuple[list[PlanStage], list[Need]]],
) -> dict[str, Any]:
    try:
        async with pool.acquire() as conn, conn.transaction():
            now = routing.clock()
            stages = await change_plan(conn, routing.catalogue, routing.rules, now, case_id, who.credential, change)
            await access_log.record(conn, who, Access("case.plan.change", case_id))
    except LookupError as error:
        raise Problem(404, str(error)) from None
    except PlanRefused as error:
        raise Problem(409, str(error), title="Plan refused") from None
    return shown_plan(routing, case_id, stages)


@router.get("/cases/{case_id}/plan", tags=["plan"])
async def read_plan(
    case_id: UUID, who: StaffOrService, pool: PoolDep, access_log: AccessLogDep, routing: RoutingDep
) -> dict[str, Any]:
    """A staged case's plan: its stages in order, each one's needs, state and when it started and ended."""
    stages = await storage.plan_of(pool, case_id)
    if stages is None:
        raise Problem(404, f"no staged case {case_id}")
    await access_log.record_now(pool, who, Access("case.plan.read", case_id))
    return shown_plan(routing, case_id, stages)


@router.post("/cases/{case_id}/plan/advance", tags=["plan"])
async def advance_plan(
    case_id: UUID, who: StaffDep, pool: PoolDep, access_log: AccessLogDep, routing: RoutingDep
) -> dict[str, Any]:
    """The stage under way is done; the next stage with needs starts and its needs are routed now. 409 when nothing
    is left to start."""
    return await changed_plan(routing, who, pool, access_log, case_id, lambda s: advanced(s, routing.clock()))


@router.put("/cases/{case_id}/plan/stages/{stage}", tags=["plan"])
async def set_stage_needs(
    case_id: UUID,
    stage: Annotated[str, Path(pattern=r"^[a-z_]{1,40}$")],
    body: StageNeeds,
    who: StaffDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    routing: RoutingDep,
) -> dict[str, Any]:
    """Set a waiting stage's needs: add one, remove one, reorder, or move one from another waiting stage."""
    return await changed_plan(routing, who, pool, access_log, case_id, lambda s: (with_needs(s, stage, body.needs), []))


@router.get("/agencies", tags=["catalogue"])
async def agencies(who: AnyoneButAuditor, pool: PoolDep, routing: RoutingDep) -> list[dict[str, Any]]:
    now = routing.clock()
    reports = await storage.capacity_reports(pool)
    return [
        {
            "id": a.id,
            "name_ko": a.name_ko,
            "name_en": a.name_en,
            "services": a.services,
            "specialties": a.specialties,
            "only_specialties": a.only_specialties,
            "regions": a.regions,
            "languages": a.languages,
            "channel": a.channel.type,
            "capacity": a.capacity,
            "capacity_report": reports.get(a.id),
            "always_open": a.hours.always_open,
            "open_now": is_open(a.hours, now, routing.rules.public_holidays),
            "opens_at": next_opening(a.hours, now, routing.rules.public_holidays).isoformat(),
        }
        for a in routing.catalogue
    ]


@router.get("/agencies/{agency_id}/capacity", tags=["capacity"])
async def capacity(agency_id: AgencyPath, who: AnyoneButAuditor, pool: PoolDep, routing: RoutingDep) -> dict[str, Any]:
    agency = known(routing.catalogue, agency_id)
    report = (await storage.capacity_reports(pool)).get(agency.id)
    return {"agency_id": agency.id, "catalogue_capacity": agency.capacity, "report": report}


@router.put("/agencies/{agency_id}/capacity", tags=["capacity"])
async def report_capacity(
    agency_id: AgencyPath,
    report: CapacityReport,
    request: Request,
    who: CapacitySetter,
    pool: PoolDep,
    routing: RoutingDep,
) -> dict[str, Any]:
    """An agency reports how many places it has free; at 0 routing skips it for the next candidate."""
    may_set_capacity(request, who, agency_id)
    agency = known(routing.catalogue, agency_id)
    reported = await storage.report_capacity(pool, agency.id, report.available, routing.clock())
    routing.on_capacity()  # pending needs are tried again at once: the places may be what they were waiting for
    return reported


@router.delete("/agencies/{agency_id}/capacity", tags=["capacity"], status_code=status.HTTP_204_NO_CONTENT)
async def clear_capacity(
    agency_id: AgencyPath, request: Request, who: CapacitySetter, pool: PoolDep, routing: RoutingDep
) -> Response:
    """Forget the agency's report: its catalogue capacity applies again."""
    may_set_capacity(request, who, agency_id)
    agency = known(routing.catalogue, agency_id)
    await storage.clear_capacity(pool, agency.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
