"""HTTP routes: the routing preview staff see before asking consent, recorded decisions, the catalogue."""

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from kit.http import Problem
from schemas.catalogue import Catalogue
from schemas.events import CaseDetails

from . import storage
from .domain import route_case


def routes(catalogue: Catalogue) -> APIRouter:
    router = APIRouter()

    @router.post("/preview", tags=["routing"])
    async def preview(case: CaseDetails) -> dict[str, Any]:
        """Which agencies this case would reach if the victim consents, why, and what each would be told."""
        plan = route_case(case, catalogue, assume_consent=True)
        consented = {c.agency_id for c in case.consents if c.granted}
        return {
            "agencies": [
                {
                    "agency_id": r.agency.id,
                    "name_ko": r.agency.name_ko,
                    "name_en": r.agency.name_en,
                    "needs": r.needs,
                    "consent_recorded": r.agency.id in consented,
                    "fields_shared": r.agency.allowed_fields,
                    "consent_notice": r.agency.consent_notice.model_dump(mode="json"),
                }
                for r in plan.referrals
            ],
            "decisions": [d.model_dump(mode="json") for d in plan.decisions],
            "uncovered_needs": plan.uncovered_needs,
        }

    @router.get("/cases/{case_id}/decision", tags=["routing"])
    async def decision(case_id: UUID, request: Request) -> dict[str, Any]:
        found = await storage.load_decision(request.app.state.runtime.pool, case_id)
        if found is None:
            raise Problem(404, f"no routing decision for case {case_id} (yet)")
        return found

    @router.get("/agencies", tags=["catalogue"])
    async def agencies() -> list[dict[str, Any]]:
        return [
            {
                "id": a.id,
                "name_ko": a.name_ko,
                "name_en": a.name_en,
                "services": a.services,
                "channel": a.channel.type,
            }
            for a in catalogue
        ]

    return router
