"""The e-mail channel: the referral as a short text and a `referral.json` attachment, sent over SMTP.

The Message-ID is derived from the referral id, so a retried message is recognisable as the same referral.
The subject names the referral, never the victim.
"""

import os
from email.message import EmailMessage

import aiosmtplib
from schemas.catalogue import EmailChannel
from schemas.events import ReferralRequested

from . import ChannelSetupError, Delivered, DeliveryChannel, Failed, Outcome

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


class EmailDelivery(DeliveryChannel[EmailChannel]):
    settings_model = EmailChannel

    def __init__(self, agency_id: str, settings: EmailChannel) -> None:
        super().__init__(agency_id, settings)
        self._username = self._secret(settings.username_env)
        self._password = self._secret(settings.password_env)

    @staticmethod
    def _secret(variable: str | None) -> str | None:
        if variable is None:
            return None
        if not os.environ.get(variable):
            raise ChannelSetupError(f"the SMTP credential variable {variable} is not set")
        return os.environ[variable]

    async def deliver(self, referral: ReferralRequested, body: bytes) -> Outcome:
        s = self.settings
        message = referral_email(referral, body, str(s.from_address), str(s.to))
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=self._username,
                password=self._password,
                use_tls=s.tls == "implicit",
                start_tls=s.tls == "starttls",
                timeout=s.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as refused:
            codes = [r.code for r in refused.recipients]
            return Failed(f"the mail server refused the recipient ({codes})", all(400 <= c < 500 for c in codes))
        except aiosmtplib.SMTPResponseException as error:
            return Failed(f"the mail server answered {error.code}", 400 <= error.code < 500, error.code)
        except (aiosmtplib.SMTPException, OSError) as error:
            return Failed(f"the mail server could not be reached ({type(error).__name__})", True)
        return Delivered(f"accepted by the mail server for {s.to}", 250)
