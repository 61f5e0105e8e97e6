"""Notification channels: one interface, e-mail over SMTP built in, SMS through a provider interface.

Addresses and texts are personal data: a channel never logs them.
"""

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from kit.smtp import SmtpServer, SmtpTls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    notice_id: int  # to name the message in logs instead of its address
    to: str
    subject: str
    body: str


class ChannelNotConfigured(Exception):
    """The channel cannot send at all in this deployment: retrying will not help."""


class Channel(Protocol):
    async def send(self, message: Message) -> None:
        """Hand the message over, or raise: ChannelNotConfigured, or any other error for a retry later."""
        ...


class EmailChannel:
    def __init__(
        self,
        host: str | None,
        port: int,
        sender: str,
        *,
        tls: SmtpTls = "auto",
        username: str | None = None,
        password: str | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.sender = sender
        self.server = None if host is None else SmtpServer(host, port, tls, username, password, timeout_seconds)

    async def send(self, message: Message) -> None:
        if self.server is None:
            raise ChannelNotConfigured("no SMTP server is configured (SMTP_HOST)")
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email.set_content(message.body)
        await self.server.send(email)


class SmsProvider(Protocol):
    """A text-message gateway; a real one is an adapter implementing this."""

    async def send_sms(self, phone: str, text: str) -> None: ...


class LogOnlySms:
    """The development adapter: sends nothing, logs that it would have (never the number or the text)."""

    async def send_sms(self, phone: str, text: str) -> None:
        log.info("SMS not sent (log-only development adapter): %d characters", len(text))


class SmsChannel:
    def __init__(self, provider: SmsProvider) -> None:
        self.provider = provider

    async def send(self, message: Message) -> None:
        await self.provider.send_sms(message.to, message.body)
