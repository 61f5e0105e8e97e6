from pathlib import Path
from typing import Literal

from kit.settings import ServiceSettings
from pydantic import Field, SecretStr


class NotifySettings(ServiceSettings):
    service_name: str = "notify"
    db_schema: str = "notify"
    http_port: int = 8004
    catalogue_dir: Path = Path("catalogue/agencies")
    # Where staff reach notify, for the links in caseworkers' e-mails (not named *_url: that would make it a
    # dependency in /health, and notify would check itself).
    staff_link_base: str = "http://127.0.0.1:8004"
    # Intake, asked for a victim's address at each send (notify keeps only the contact rules); also in /health.
    intake_url: str = "http://127.0.0.1:8001"

    # Acknowledgement deadlines: hours from the urgency and the agency's SLA. How long one of those hours lasts
    # can be shortened for demos and tests (ACK_DEADLINE_HOUR_SECONDS=15: a 2-hour deadline passes in 30 s).
    ack_deadline_hour_seconds: float = Field(default=3600.0, gt=0)
    reminder_at_fraction: float = Field(default=0.75, gt=0, lt=1)  # of the deadline's window, then remind
    timer_poll_seconds: float = Field(default=1.0, gt=0)
    # A completed referral opens a follow-up task for the caseworker, due this long after the completion (then at
    # the victim's next safe hour): check with the victim whether the help arrived.
    follow_up_after_seconds: float = Field(default=2 * 86400.0, ge=0)
    # A timer that has fired (or was skipped, or failed) is never armed again; its row is purged after this long.
    # What it did stays in the timeline (referral.reminded, referral.overdue), which is not purged.
    timer_retention_days: float = Field(default=30.0, gt=0)

    # Notifications. Without SMTP_HOST e-mails are recorded as undeliverable; SMS goes to a provider adapter.
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = "notify@onestop.invalid"
    smtp_tls: Literal["auto", "starttls", "implicit", "none"] = "auto"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    sms_provider: Literal["log"] = "log"
    notification_attempts: int = Field(default=6, ge=1)
    notification_retry_seconds: float = Field(default=5.0, gt=0)
    notification_poll_seconds: float = Field(default=1.0, gt=0)
