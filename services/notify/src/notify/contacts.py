"""The victim's address, asked of intake at the moment a notice is sent: notify never stores it.

`GET {INTAKE_URL}/cases/{case_id}/contact` with notify's own short-lived service token answers the victim's current
contact rules and the safe channel's address (200), or that the case is unknown (404) or was erased (410).
"""

from typing import Literal
from uuid import UUID

import httpx
from kit.auth import Role, issue_token
from pydantic import BaseModel, ConfigDict, ValidationError
from schemas.events import SafeHours

from .notices import ERASED, VictimAddress

TOKEN_SECONDS = 60


class _ContactAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    do_not_contact: bool
    channel: Literal["email", "sms"] | None
    address: str | None
    safe_hours: SafeHours | None = None


class CaseGone(Exception):
    """Intake has no contact for the case, and never will: the notice is withheld with `reason`, not retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IntakeUnavailable(Exception):
    """Intake could not answer now (down, refused the credential, answered nonsense): the send is retried later.

    The message names the status or the error's type only, never anything intake sent back.
    """


class IntakeContacts:
    """Intake's contact endpoint, with a fresh token per request (`auth_secret` None: a stack without auth)."""

    def __init__(
        self,
        base_url: str,
        auth_secret: str | None,
        *,
        timeout_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.auth_secret = auth_secret
        self.timeout_seconds = timeout_seconds
        self.transport = transport  # tests give an httpx.MockTransport

    def _headers(self) -> dict[str, str]:
        if self.auth_secret is None:
            return {}
        token = issue_token(self.auth_secret, Role.service, "notify", ttl_seconds=TOKEN_SECONDS)
        return {"authorization": f"Bearer {token}"}

    async def victim_address(self, case_id: UUID) -> VictimAddress:
        """The victim's contact now; raises CaseGone (404, 410) or IntakeUnavailable (anything else)."""
        try:
            async with httpx.AsyncClient(
                base_url=self.base_url, timeout=self.timeout_seconds, transport=self.transport
            ) as client:
                answer = await client.get(f"/cases/{case_id}/contact", headers=self._headers())
        except httpx.HTTPError as error:
            raise IntakeUnavailable(f"intake could not be reached ({type(error).__name__})") from None
        if answer.status_code == 410:
            raise CaseGone(ERASED)
        if answer.status_code == 404:
            raise CaseGone("case_unknown")
        if answer.status_code != 200:
            raise IntakeUnavailable(f"intake answered {answer.status_code}")
        try:
            contact = _ContactAnswer.model_validate_json(answer.content)
        except ValidationError:
            raise IntakeUnavailable("intake's contact answer is not valid") from None
        return VictimAddress(contact.do_not_contact, contact.channel, contact.address, contact.safe_hours)
