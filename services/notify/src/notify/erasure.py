"""Erasure of a case on request (`case.erased`): what notify forgets of it, and keeps forgetting.

notify holds no victim address (intake gives it at each send). Of an erased case it purges the victim's contact
rules, every notice's address and text (those not sent yet are withheld as `case_erased`), and the free text of the
events it keeps — agencies' and staff's notes, and the reason of a consent override in routing's decisions — in the
timeline, in its outbox and among parked acknowledgements. It keeps the ids, states, codes and times, which say
what was done for the case without saying anything about the victim. Events of the case that come later are kept
without their free text, and no notice about the case is sent any more.
"""

from typing import Any, TypeVar

import asyncpg
from kit.erasure import mark_erased
from kit.outbox import rewrite_case_events
from kit.unit_of_work import once
from schemas.events import CaseErased, CaseRouted, Envelope, RoutingDecision, decode_event, encode_event

from . import storage

ERASURE_CONSUMER = "notify.case-erased"
E = TypeVar("E", bound=Envelope)
ERASED_TEXT = "(erased on request)"  # stands in for free text a contract requires


def _decision_without_free_text(decision: RoutingDecision) -> RoutingDecision:
    if decision.override is None:
        return decision
    return decision.model_copy(update={"override": decision.override.model_copy(update={"reason": ERASED_TEXT})})


def without_free_text(event: E) -> E:
    """The event without the free text people wrote into it (notes, an override's reason): ids and codes stay."""
    if isinstance(event, CaseRouted):
        return event.model_copy(update={"decisions": [_decision_without_free_text(d) for d in event.decisions]})
    if getattr(event, "note", None) is not None:
        return event.model_copy(update={"note": None})
    return event


def without_note_text(event: E) -> E:
    """The event as it goes on Kafka: a note's text stays in notify (the timeline); the event says one exists."""
    if getattr(event, "note", None) is not None:
        return event.model_copy(update={"note": None, "has_note": True})
    return event


def detail_without_free_text(detail: dict[str, Any]) -> dict[str, Any]:
    """A timeline entry's detail (an event's fields as JSON) without the free text `without_free_text` removes."""
    kept = {key: value for key, value in detail.items() if key != "note"}
    if isinstance(kept.get("decisions"), list):
        kept["decisions"] = [
            {**d, "override": {**d["override"], "reason": ERASED_TEXT}}
            if isinstance(d, dict) and isinstance(d.get("override"), dict)
            else d
            for d in kept["decisions"]
        ]
    return kept


async def on_case_erased(pool: asyncpg.Pool, event: CaseErased) -> None:
    """Purge the case in one transaction, once per event."""
    await once(pool, ERASURE_CONSUMER, event, purge_case)


async def purge_case(conn: asyncpg.Connection, event: CaseErased) -> None:
    await mark_erased(conn, event.case_id, event.erased_at)
    await storage.forget_contact_rules(conn, event.case_id)
    await storage.forget_notices(conn, event.case_id)
    for entry in await storage.timeline_details(conn, event.case_id):
        detail = detail_without_free_text(entry["detail"])
        if detail != entry["detail"]:
            await storage.set_timeline_detail(conn, entry["id"], detail)
    await rewrite_case_events(conn, event.case_id, without_free_text)
    for row in await storage.parked_acks_of_case(conn, event.case_id):
        if (kept := _kept(bytes(row["payload"]))) is not None:
            await storage.set_parked_payload(conn, row["event_id"], kept)


def _kept(payload: bytes) -> bytes | None:
    """A stored event's payload without its free text, or None when it has none to lose."""
    kept = encode_event(without_free_text(decode_event(payload)))
    return None if kept == payload else kept
