"""Sending e-mail over SMTP: the one sender of the gateway's e-mail channel and notify's notices. It sends what it is
given and raises what aiosmtplib raises; what a failure means is the caller's to say."""

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal

import aiosmtplib

# auto: STARTTLS when the server offers it; starttls: required; implicit: TLS from the first byte (port 465); none:
# plain text, only for a relay on the same host.
SmtpTls = Literal["auto", "starttls", "implicit", "none"]


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    tls: SmtpTls = "auto"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 10.0

    async def send(self, message: EmailMessage) -> None:
        await aiosmtplib.send(
            message,
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.tls == "implicit",
            start_tls={"auto": None, "starttls": True}.get(self.tls, False),
            timeout=self.timeout_seconds,
        )
