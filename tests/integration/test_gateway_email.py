"""The gateway's e-mail channel against a real SMTP server (aiosmtpd) on this machine."""

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any
from uuid import uuid4

import pytest
from agency_gateway.channels import Delivered, Failed
from agency_gateway.channels.email import EmailDelivery
from aiosmtpd.controller import Controller
from schemas.catalogue import EmailChannel
from schemas.events import ReferralCase, ReferralRequested, encode_event
from schemas.vocab import CrimeType, Need, Urgency

pytestmark = pytest.mark.integration


@dataclass
class Mailbox:
    """Keeps every message; answers each DATA with `answer` (a 250 unless a test says otherwise)."""

    answer: str = "250 Message accepted for delivery"
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        if self.answer.startswith("250"):
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return self.answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield mailbox, controller.port
    finally:
        controller.stop()


def channel(port: int) -> EmailDelivery:
    settings = EmailChannel(
        type="email",
        to="referrals@agency.example",
        from_address="gateway@onestop.example",
        smtp_host="127.0.0.1",
        smtp_port=port,
        tls="none",
        timeout_seconds=5,
    )
    return EmailDelivery("microfinance", settings)


def referral() -> ReferralRequested:
    return ReferralRequested(
        case_id=uuid4(),
        producer="routing",
        referral_id=uuid4(),
        agency_id="microfinance",
        case=ReferralCase(
            crime_type=CrimeType.fraud,
            needs=[Need.financial],
            urgency=Urgency.normal,
            victim_name="Kim Example",
            language="ko",
        ),
    )


async def test_a_referral_arrives_as_a_real_message(smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    event = referral()
    outcome = await channel(port).deliver(event, encode_event(event))

    assert isinstance(outcome, Delivered) and outcome.agency_status == 250
    [(sender, recipients, raw)] = mailbox.messages
    assert sender == "gateway@onestop.example" and recipients == ["referrals@agency.example"]
    message = message_from_bytes(raw)
    assert message["Message-ID"] == f"<{event.referral_id}@referrals.onestop>"
    [attachment] = [p for p in message.walk() if p.get_filename() == "referral.json"]
    body = attachment.get_payload(decode=True)
    assert isinstance(body, bytes) and json.loads(body) == json.loads(encode_event(event))


@pytest.mark.parametrize(
    ("answer", "transient"),
    [("451 Try again later", True), ("554 Transaction failed", False)],
)
async def test_the_servers_answer_decides_whether_to_try_again(
    smtp: tuple[Mailbox, int], answer: str, transient: bool
) -> None:
    mailbox, port = smtp
    mailbox.answer = answer
    event = referral()
    outcome = await channel(port).deliver(event, encode_event(event))

    assert isinstance(outcome, Failed) and outcome.transient is transient
    assert outcome.agency_status == int(answer[:3])


async def test_no_mail_server_is_a_failure_worth_retrying() -> None:
    event = referral()
    outcome = await channel(_free_port()).deliver(event, encode_event(event))

    assert isinstance(outcome, Failed) and outcome.transient
