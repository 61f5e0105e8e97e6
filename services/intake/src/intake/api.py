"""HTTP routes for staff: submit a case, read it back, preview which agencies it would reach."""

from typing import Annotated, Any
from uuid import UUID

import httpx
from fastapi import APIRouter, Header, Request, Response, status
from kit.http import Problem
from schemas.events import CaseDetails

from . import storage
from .cases import submit_case
from .settings import IntakeSettings


def routes(settings: IntakeSettings) -> APIRouter:
    router = APIRouter(tags=["cases"])

    @router.post("/cases", status_code=status.HTTP_201_CREATED)
    async def submit(
        details: CaseDetails,
        request: Request,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> dict[str, Any]:
        """Record a case once; it is routed to agencies in the background. Safe to retry with an Idempotency-Key."""
        submission = await submit_case(request.app.state.runtime.pool, details, idempotency_key)
        if submission.replayed:
            response.status_code = status.HTTP_200_OK
            response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = f"/cases/{submission.case_id}"
        return {
            "case_id": str(submission.case_id),
            "status": "submitted",
            "links": {
                "self": f"/cases/{submission.case_id}",
                "timeline": f"/cases/{submission.case_id}/timeline",
            },
        }

    @router.get("/cases/{case_id}")
    async def read(case_id: UUID, request: Request) -> dict[str, Any]:
        case = await storage.load_case(request.app.state.runtime.pool, case_id)
        if case is None:
            raise Problem(404, f"no case {case_id}")
        return {
            "case_id": str(case["case_id"]),
            "submitted_at": case["submitted_at"],
            **case["case"].model_dump(mode="json"),
        }

    @router.post("/cases/preview")
    async def preview(details: CaseDetails) -> Any:
        """The agencies routing would choose for this case, why, and each one's consent notice — before submitting."""
        try:
            async with httpx.AsyncClient(base_url=settings.routing_url, timeout=5.0) as client:
                answer = await client.post(
                    "/preview",
                    content=details.model_dump_json(),
                    headers={"content-type": "application/json"},
                )
        except httpx.HTTPError:
            raise Problem(503, "routing cannot be reached for a preview; the case can still be submitted") from None
        if answer.status_code != 200:
            raise Problem(502, f"routing answered the preview with status {answer.status_code}")
        return answer.json()

    return router
