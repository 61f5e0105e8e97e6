"""Erasure of a case on request (`case.erased`): what routing forgets of it.

Routing drops the case's facts (consents, contact rules, caseworker) and, in its decisions, re-routings and outbox,
the one free text staff wrote — the reason of a consent override — and any personal field a referral carried (a
referral of `referral.requested` before personal items stayed in intake). It keeps which agencies were chosen or
skipped, for which needs, why (the rules' wording) and on which legal basis: the accountability of the routing,
without anything about the victim. Events of the case that come later (a late `case.submitted`, a re-routing
request) are ignored.
"""

from typing import Any, TypeVar

import asyncpg
from kit.erasure import mark_erased
from kit.outbox import rewrite_case_events
from kit.unit_of_work import once
from schemas.events import CaseErased, CaseRouted, Envelope, ReferralRequested

from . import storage

ERASURE_CONSUMER = "routing.case-erased"
ERASED_TEXT = "(erased on request)"  # stands in for free text a contract requires
E = TypeVar("E", bound=Envelope)


def decisions_without_free_text(decisions: list[Any]) -> list[Any]:
    """Routing decisions (as JSON) with each consent override's reason replaced; the legal basis and who recorded
    it stay."""
    return [
        {**d, "override": {**d["override"], "reason": ERASED_TEXT}}
        if isinstance(d, dict) and isinstance(d.get("override"), dict)
        else d
        for d in decisions
    ]


def without_personal_data(event: E) -> E:
    """The event without the victim's personal fields or staff's free text; ids, needs and codes stay."""
    if isinstance(event, CaseRouted):
        decisions = decisions_without_free_text([d.model_dump(mode="json") for d in event.decisions])
        return event.model_validate({**event.model_dump(mode="json"), "decisions": decisions})
    if isinstance(event, ReferralRequested):
        personal = {"victim_name": None, "victim_phone": None, "victim_email": None, "summary": None}
        return event.model_copy(update={"case": event.case.model_copy(update=personal)})
    return event


async def on_case_erased(pool: asyncpg.Pool, event: CaseErased) -> None:
    """Purge the case in one transaction, once per event."""
    await once(pool, ERASURE_CONSUMER, event, purge_case)


async def purge_case(conn: asyncpg.Connection, event: CaseErased) -> None:
    case_id = event.case_id
    await mark_erased(conn, case_id, event.erased_at)
    await storage.forget_case(conn, case_id)
    decisions = await storage.decision_of_case(conn, case_id)
    if decisions is not None:
        await storage.set_decision(conn, case_id, decisions_without_free_text(decisions))
    for rerouting in await storage.reroutings_of_case(conn, case_id):
        kept = decisions_without_free_text(rerouting["decisions"])
        await storage.set_rerouting(conn, rerouting["rerouted_from"], kept)
    await rewrite_case_events(conn, case_id, without_personal_data)
