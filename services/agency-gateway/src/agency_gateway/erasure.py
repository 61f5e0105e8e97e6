"""Erasure of a case on request (`case.erased`): the gateway forgets the texts of the case's deliveries and notices
and keeps their bare facts (storage.py's docstring lists both). Referrals on Kafka carry no personal values, and
intake refuses the values of an erased case (410), so nothing personal can be sent or stored for it afterwards."""

import asyncpg
from kit.erasure import mark_erased
from kit.unit_of_work import once
from schemas.events import CaseErased

from . import storage

ERASURE_CONSUMER = "agency-gateway.case-erased"


async def on_case_erased(pool: asyncpg.Pool, event: CaseErased) -> None:
    """Purge the case in one transaction, once per event."""
    await once(pool, ERASURE_CONSUMER, event, purge_case)


async def purge_case(conn: asyncpg.Connection, event: CaseErased) -> None:
    await mark_erased(conn, event.case_id, event.erased_at)
    await storage.forget_texts(conn, event.case_id)
