"""The e-mail channel: the referral as a short text and a `referral.json` attachment, sent over SMTP.

The Message-ID is derived from the referral id, so a retried message is recognisable as the same referral.
The subject names the referral, never the victim.
"""

import os
from datetime import UTC
from email.message import EmailMessage

import aiosmtplib
from kit.smtp import SmtpServer
from schemas.catalogue import EmailChannel
from schemas.events import ReferralCancelled, ReferralRequested

from . import ChannelSetupError, Delivered, DeliveryChannel, Failed, Notice, Outcome

_LABELS = {
    "crime_type": "Crime type",
    "needs": "Needs",
    "urgency": "Urgency",
    "region": "Region",
    "language": "Language",
    "victim_name": "Victim's name",
    "victim_phone": "Victim's phone",
    "victim_email": "Victim's e-mail",
    "summary": "Summary",
}


def referral_email(referral: ReferralRequested, body: bytes, sender: str, to: str) -> EmailMessage:
    """The message for one referral: only what the referral holds, which is only what the agency may see."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"Referral {referral.referral_id} ({referral.case.urgency} urgency)"
    message["Message-ID"] = f"<{referral.referral_id}@referrals.onestop>"
    message["Idempotency-Key"] = str(referral.referral_id)
    lines = [
        "A referral from the crime-victim one-stop centre.",
        "",
        f"Referral: {referral.referral_id}",
        f"Case: {referral.case_id}",
    ]
    for name, value in referral.case:
        if value is not None:
            shown = ", ".join(value) if isinstance(value, list) else str(value)
            lines.append(f"{_LABELS.get(name, name)}: {shown}")
    lines += ["", "Please accept or decline it through the centre's acknowledgement API with the referral id above."]
    message.set_content("\n".join(lines) + "\n")
    message.add_attachment(body, maintype="application", subtype="json", filename="referral.json")
    return message


def notice_email(notice: Notice, body: bytes, sender: str, to: str) -> EmailMessage:
    """A short message about a referral the agency has: ids, the deadline or the cancellation's reason; nothing of
    the victim (the referral's own message has what the agency may see). It threads under the referral's message."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Message-ID"] = f"<{notice.event_id}@notices.onestop>"
    message["In-Reply-To"] = message["References"] = f"<{notice.referral_id}@referrals.onestop>"
    message["Idempotency-Key"] = str(notice.event_id)
    message["X-Onestop-Event-Type"] = notice.type
    if isinstance(notice, ReferralCancelled):
        message["Subject"] = f"Cancelled: referral {notice.referral_id}"
        lines = [
            f"The crime-victim one-stop centre has cancelled referral {notice.referral_id} (reason: {notice.reason}).",
            "Please do not act on it any more; an acceptance sent now is refused.",
        ]
    else:
        deadline = notice.deadline.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        message["Subject"] = f"Reminder: referral {notice.referral_id} awaits your answer by {deadline}"
        lines = [
            f"Referral {notice.referral_id} from the crime-victim one-stop centre has not been answered yet.",
            f"Please accept or decline it through the centre's acknowledgement API by {deadline}; after that the",
            "centre looks for another agency.",
        ]
    message.set_content("\n".join([*lines, "", f"Referral: {notice.referral_id}", f"Case: {notice.case_id}"]) + "\n")
    message.add_attachment(body, maintype="application", subtype="json", filename="notice.json")
    return message


class EmailDelivery(DeliveryChannel[EmailChannel]):
    settings_model = EmailChannel

    def __init__(self, agency_id: str, settings: EmailChannel) -> None:
        super().__init__(agency_id, settings)
        self._server = SmtpServer(
            settings.smtp_host,
            settings.smtp_port,
            settings.tls,
            self._secret(settings.username_env),
            self._secret(settings.password_env),
            settings.timeout_seconds,
        )

    @staticmethod
    def _secret(variable: str | None) -> str | None:
        if variable is None:
            return None
        if not os.environ.get(variable):
            raise ChannelSetupError(f"the SMTP credential variable {variable} is not set")
        return os.environ[variable]

    async def deliver(self, referral: ReferralRequested, body: bytes) -> Outcome:
        s = self.settings
        return await self._send(referral_email(referral, body, str(s.from_address), str(s.to)))

    async def deliver_notice(self, notice: Notice, body: bytes) -> Outcome:
        s = self.settings
        return await self._send(notice_email(notice, body, str(s.from_address), str(s.to)))

    async def _send(self, message: EmailMessage) -> Outcome:
        try:
            await self._server.send(message)
        except aiosmtplib.SMTPRecipientsRefused as refused:
            codes = [r.code for r in refused.recipients]
            return Failed(f"the mail server refused the recipient ({codes})", all(400 <= c < 500 for c in codes))
        except aiosmtplib.SMTPResponseException as error:
            return Failed(f"the mail server answered {error.code}", 400 <= error.code < 500, error.code)
        except (aiosmtplib.SMTPException, OSError) as error:
            return Failed(f"the mail server could not be reached ({type(error).__name__})", True)
        return Delivered(f"accepted by the mail server for {self.settings.to}", 250)
