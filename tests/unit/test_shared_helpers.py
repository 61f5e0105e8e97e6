"""The small helpers several services share: the backoff formula, the "listed once" validator and the SMTP sender
(against an SMTP server in this process)."""

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Annotated, Any

import pytest
from aiosmtpd.controller import Controller
from kit.backoff import backoff
from kit.smtp import SmtpServer
from pydantic import BaseModel, Field, ValidationError
from schemas.validators import listed_once


def test_backoff_doubles_from_the_first_wait_up_to_the_cap() -> None:
    assert [backoff(n, 5.0, 3600.0) for n in range(12)] == [5, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
    assert [backoff(n, 1.0, 5.0, jitter=0.5) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def test_backoff_jitter_spreads_the_wait_from_half_to_one_and_a_half_before_the_cap() -> None:
    assert backoff(3, 1.0, 100.0, jitter=0.0) == 2.0
    assert backoff(3, 1.0, 100.0, jitter=0.999) == pytest.approx(5.996)
    assert backoff(3, 1.0, 5.0, jitter=0.999) == 5.0


class Listing(BaseModel):
    colours: Annotated[list[str], Field(min_length=1), listed_once("colour")]


def test_listed_once_refuses_an_item_listed_twice_naming_what() -> None:
    assert Listing(colours=["red", "blue"]).colours == ["red", "blue"]
    with pytest.raises(ValidationError) as refused:
        Listing(colours=["red", "blue", "red"])
    [error] = refused.value.errors()
    assert error["loc"] == ("colours",) and error["msg"] == "Value error, each colour may be listed once"
    with pytest.raises(ValidationError, match="at least 1 item"):
        Listing(colours=[])


@dataclass
class Mailbox:
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@pytest.mark.parametrize("tls", ["auto", "none"])
async def test_the_smtp_sender_hands_the_message_over(smtp: tuple[Mailbox, int], tls: Any) -> None:
    mailbox, port = smtp
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@onestop.example", "b@agency.example", "hello"
    message.set_content("body\n")
    await SmtpServer("127.0.0.1", port, tls, timeout_seconds=5).send(message)
    [(sender, recipients, content)] = mailbox.messages
    assert (sender, recipients) == ("a@onestop.example", ["b@agency.example"]) and b"Subject: hello" in content


async def test_the_smtp_sender_raises_what_the_connection_raises() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    message = EmailMessage()
    message["From"], message["To"] = "a@onestop.example", "b@agency.example"
    with pytest.raises(OSError):
        await SmtpServer("127.0.0.1", closed, "none", timeout_seconds=2).send(message)


def test_the_smtp_password_is_not_in_the_repr() -> None:
    assert "hunter2" not in repr(SmtpServer("mail", 25, password="hunter2"))
