"""The gateway's one question before it calls an agency — delivered already? erased? cancelled? — on a real
PostgreSQL with the gateway's schema: each answer from its own table, and only for its own record."""

from datetime import UTC, datetime
from uuid import UUID, uuid4

import agency_gateway
import asyncpg
import pytest
from agency_gateway import storage
from kit.erasure import mark_erased
from kit.inbox import first_time

SERVICE = agency_gateway  # the module's PostgreSQL holds the gateway's schema (conftest.py)
INBOX = "agency-gateway.police"
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def notice_sent(pool: asyncpg.Pool, referral_id: UUID, case_id: UUID, notice_type: str) -> None:
    await pool.execute(
        "INSERT INTO notices (event_id, referral_id, case_id, agency_id, notice_type, channel, outcome, attempts,"
        " detail) VALUES ($1, $2, $3, 'police', $4, 'webhook', 'delivered', 1, 'HTTP 202')",
        uuid4(),
        referral_id,
        case_id,
        notice_type,
    )


async def test_a_new_referral_is_neither_delivered_erased_nor_cancelled(pool: asyncpg.Pool) -> None:
    known = await storage.standing(pool, INBOX, uuid4(), uuid4(), uuid4())
    assert known == storage.Standing(processed=False, erased=False, cancelled=False)


async def test_each_answer_comes_from_its_own_record(pool: asyncpg.Pool) -> None:
    event_id, case_id, referral_id = uuid4(), uuid4(), uuid4()
    async with pool.acquire() as conn:
        assert await first_time(conn, INBOX, event_id)
    assert (await storage.standing(pool, INBOX, event_id, case_id, referral_id)).processed
    assert not (await storage.standing(pool, "agency-gateway.legal-aid", event_id, case_id, referral_id)).processed

    async with pool.acquire() as conn:
        await mark_erased(conn, case_id, datetime.now(UTC))
    assert (await storage.standing(pool, INBOX, uuid4(), case_id, None)).erased
    assert not (await storage.standing(pool, INBOX, uuid4(), uuid4(), None)).erased


@pytest.mark.parametrize(
    ("how", "cancelled"),
    [
        ("notify's cancellation reached the gateway", True),
        ("a reminder reached the gateway", False),
        ("routing replaced it", True),
        ("cancelled", True),
        ("the agency declined it", False),
    ],
)
async def test_a_referral_is_cancelled_by_notifys_cancellation_or_its_replacement_only(
    pool: asyncpg.Pool, how: str, cancelled: bool
) -> None:
    case_id, referral_id = uuid4(), uuid4()
    if how.startswith("notify"):
        await notice_sent(pool, referral_id, case_id, "referral.cancelled")
    elif how.startswith("a reminder"):
        await notice_sent(pool, referral_id, case_id, "referral.reminded")
    else:
        why = {"routing replaced it": "replaced", "cancelled": "cancelled", "the agency declined it": "declined"}[how]
        await storage.record_ended(pool, referral_id, case_id, why)
    known = await storage.standing(pool, INBOX, uuid4(), case_id, referral_id)
    assert known.cancelled is cancelled
    assert await storage.was_cancelled(pool, referral_id) is cancelled  # the check after a retry's wait agrees
    # A notice is never "cancelled": it carries no referral to ask about.
    assert not (await storage.standing(pool, INBOX, uuid4(), case_id, None)).cancelled
