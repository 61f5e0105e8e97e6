"""The supervisor's capacity page: every agency's places (the catalogue's, and what it last reported to routing),
set on an agency's behalf or forgotten, so routing counts the catalogue's again. Routing's own API decides: it lets
supervisors set any agency's capacity and records who did."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from schemas.events import AgencyId

from .apis import ApiError
from .pages import OperatorPage
from .session import posted_form

router = APIRouter()


@router.get("/capacities", response_class=HTMLResponse)
async def capacities(p: OperatorPage) -> Response:
    agencies: list[dict[str, Any]] = await p.api("routing", "GET", "/agencies")
    return p.render("capacities.html", agencies=agencies)


@router.post("/capacities/{agency_id}")
async def set_capacity(agency_id: AgencyId, request: Request, p: OperatorPage) -> Response:
    """The places an agency has free now, as the supervisor heard it (`available`), or `forget` its last report."""
    form = await posted_form(request)
    if form.get("forget"):
        await p.api("routing", "DELETE", f"/agencies/{agency_id}/capacity")
    else:
        try:
            available = int(form.get("available"))
        except ValueError:
            raise ApiError(422, "the places free must be a whole number") from None
        await p.api("routing", "PUT", f"/agencies/{agency_id}/capacity", body={"available": available})
    return RedirectResponse(f"/capacities#agency-{agency_id}", status_code=303)
