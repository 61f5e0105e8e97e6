"""The agencies' own record of what they received and how they acknowledged it: in memory, asyncio-safe."""

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field
from schemas.events import ReferralCancelled, ReferralReminded, ReferralRequested
from schemas.vocab import DeclineReason

from .behaviour import Answer, Behaviour, answer

AttemptOutcome = Literal["ok", "conflict", "retry", "rejected"]
# not_planned: silent or not taken yet; pending: waiting for the delay or retrying; the rest are final.
AckStatus = Literal["not_planned", "pending", "sent", "already_done", "rejected", "gave_up", "cancelled"]


def _now() -> datetime:
    return datetime.now(UTC)


class AckAttempt(BaseModel):
    at: datetime = Field(default_factory=_now)
    outcome: AttemptOutcome
    status_code: int | None = None  # None: notify could not be reached
    error: str | None = None  # the transport error's class name, never a body


class Ack(BaseModel):
    action: Literal["accept", "decline"] | None = None
    reason: DeclineReason | None = None
    status: AckStatus = "not_planned"
    attempts: list[AckAttempt] = Field(default_factory=list)


class Receipt(BaseModel):
    """One delivery of a referral as it arrived, with how the agency answered it."""

    agency_id: str
    referral_id: UUID
    idempotency_key: str
    received_at: datetime
    status: int
    duplicate: bool
    fields: list[str]  # the case fields present in the delivery, by name only
    signature: Literal["valid", "unchecked"] = "unchecked"  # unchecked: no secret known for the agency


class ReferralRecord(BaseModel):
    agency_id: str
    referral_id: UUID
    case_id: UUID
    first_received_at: datetime
    deliveries: int = 0  # every delivery, failed and duplicate ones included
    failed_deliveries: int = 0
    duplicates: int = 0
    decision: Literal["accept", "decline", "silent"] | None = None  # None until a delivery is taken
    fields: list[str] = []
    ack: Ack = Field(default_factory=Ack)


class NoticeRecord(BaseModel):
    """A reminder or cancellation about a referral, as the agency received it: never a new referral to act on."""

    agency_id: str
    event_id: UUID
    type: Literal["referral.reminded", "referral.cancelled"]
    referral_id: UUID
    case_id: UUID
    first_received_at: datetime
    deliveries: int = 0  # a redelivery of the same notice (same idempotency key) counts here, once recorded
    signature: Literal["valid", "unchecked"] = "unchecked"
    known_referral: bool  # whether the agency had received the referral the notice is about
    deadline: datetime | None = None  # a reminder's acknowledgement deadline
    reason: str | None = None  # a cancellation's reason


Notice = ReferralReminded | ReferralCancelled


class Records:
    """Every receipt and every referral by (agency, idempotency key); one lock orders all changes."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._referrals: dict[tuple[str, str], ReferralRecord] = {}
        self._receipts: list[Receipt] = []
        self._notices: dict[tuple[str, UUID], NoticeRecord] = {}

    async def notice(self, event: Notice, signature: Literal["valid", "unchecked"] = "unchecked") -> bool:
        """Record one delivery of a notice; True when it was a duplicate (the same event id seen before)."""
        async with self._lock:
            key = (event.agency_id, event.event_id)
            record = self._notices.get(key)
            duplicate = record is not None
            if record is None:
                record = NoticeRecord(
                    agency_id=event.agency_id,
                    event_id=event.event_id,
                    type=event.type,
                    referral_id=event.referral_id,
                    case_id=event.case_id,
                    first_received_at=_now(),
                    signature=signature,
                    known_referral=(event.agency_id, str(event.referral_id)) in self._referrals,
                    deadline=event.deadline if isinstance(event, ReferralReminded) else None,
                    reason=str(event.reason) if isinstance(event, ReferralCancelled) else None,
                )
                self._notices[key] = record
            record.deliveries += 1
            return duplicate

    async def receive(
        self,
        event: ReferralRequested,
        idempotency_key: str,
        behaviour: Behaviour,
        signature: Literal["valid", "unchecked"] = "unchecked",
    ) -> Answer:
        """Record one delivery and decide it, atomically, so two concurrent copies are acted on once."""
        now = _now()
        fields = sorted(name for name, value in event.case if value is not None)
        async with self._lock:
            key = (event.agency_id, idempotency_key)
            record = self._referrals.get(key)
            if record is None:
                record = ReferralRecord(
                    agency_id=event.agency_id,
                    referral_id=event.referral_id,
                    case_id=event.case_id,
                    first_received_at=now,
                )
                self._referrals[key] = record
            result = answer(
                behaviour, taken_before=record.decision is not None, failures_before=record.failed_deliveries
            )
            record.deliveries += 1
            record.duplicates += int(result.duplicate)
            record.failed_deliveries += int(result.status >= 400)
            if result.decision is not None:
                record.decision = result.decision
                record.fields = fields
            if result.ack is not None:
                record.ack = Ack(action=result.ack.action, reason=result.ack.reason, status="pending")
            self._receipts.append(
                Receipt(
                    agency_id=event.agency_id,
                    referral_id=event.referral_id,
                    idempotency_key=idempotency_key,
                    received_at=now,
                    status=result.status,
                    duplicate=result.duplicate,
                    fields=fields,
                    signature=signature,
                )
            )
            return result

    async def ack_attempted(self, agency_id: str, idempotency_key: str, attempt: AckAttempt, status: AckStatus) -> None:
        async with self._lock:
            record = self._referrals.get((agency_id, idempotency_key))
            if record is not None:  # gone if the record was reset meanwhile
                record.ack.attempts.append(attempt)
                record.ack.status = status

    async def ack_ended(self, agency_id: str, idempotency_key: str, status: AckStatus) -> None:
        async with self._lock:
            record = self._referrals.get((agency_id, idempotency_key))
            if record is not None:
                record.ack.status = status

    async def snapshot(self, agency_id: str | None = None) -> dict[str, Any]:
        """What was received, as JSON-ready data: all agencies, or one."""
        async with self._lock:
            referrals = [r for r in self._referrals.values() if agency_id in (None, r.agency_id)]
            receipts = [r for r in self._receipts if agency_id in (None, r.agency_id)]
            notices = [n for n in self._notices.values() if agency_id in (None, n.agency_id)]
            return {
                "agency_id": agency_id,
                "deliveries": len(receipts),
                "failed_deliveries": sum(r.status >= 400 for r in receipts),
                "duplicates": sum(r.duplicate for r in receipts),
                "referrals": [r.model_dump(mode="json") for r in referrals],
                "receipts": [r.model_dump(mode="json") for r in receipts],
                "notices": [n.model_dump(mode="json") for n in notices],
            }

    async def reset(self) -> None:
        async with self._lock:
            self._referrals.clear()
            self._receipts.clear()
            self._notices.clear()
