"""What notify puts on an agency's own topic about a referral: the same notice, under an id of its own."""

from datetime import UTC, datetime
from uuid import uuid4, uuid5

from notify.commands import agency_copy
from schemas.events import ReferralCancelled, ReferralReminded
from schemas.vocab import CancelReason


def test_the_agencys_copy_of_a_notice_is_the_same_event_under_a_stable_id_of_its_own() -> None:
    reminder = ReferralReminded(
        case_id=uuid4(),
        producer="notify",
        referral_id=uuid4(),
        agency_id="police",
        deadline=datetime(2026, 3, 2, 13, 0, tzinfo=UTC),
    )
    cancelled = ReferralCancelled(
        case_id=reminder.case_id,
        producer="notify",
        referral_id=reminder.referral_id,
        agency_id="police",
        reason=CancelReason.deadline_breached,
    )
    for event in (reminder, cancelled):
        copy = agency_copy(event)
        assert copy.event_id == uuid5(event.event_id, "referrals.police") != event.event_id
        assert agency_copy(event).event_id == copy.event_id, "a retried transaction puts the same id out"
        assert copy.model_dump(exclude={"event_id"}) == event.model_dump(exclude={"event_id"})
    assert agency_copy(reminder).event_id != agency_copy(cancelled).event_id
