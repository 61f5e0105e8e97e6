from pathlib import Path

from kit.settings import ServiceSettings
from pydantic import Field


class GatewaySettings(ServiceSettings):
    service_name: str = "agency-gateway"
    db_schema: str = "gateway"
    http_port: int = 8003
    catalogue_dir: Path = Path("catalogue/agencies")
    # Where the victims' personal items are fetched from, just before a referral leaves (never carried on Kafka).
    intake_url: str = "http://127.0.0.1:8001"
    # Attempts per referral (the first included) before it goes to the agency's DLQ.
    delivery_attempts: int = Field(default=6, ge=1)
    # Backoff between attempts: base × 2^(n-1), spread 50–150%, at most retry_max_seconds. A consumer waits out
    # one record's delay while holding the poll, so the cap stays well under Kafka's max.poll.interval (300 s).
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=60.0, gt=0, le=120)
    # Circuit breaker per agency: after this many transient failures in a row, no calls for breaker_open_seconds.
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_open_seconds: float = Field(default=30.0, gt=0, le=120)
    # How long an ask for a case's personal items waits for its other agencies' asks, to fetch them in one call.
    disclosure_window_seconds: float = Field(default=0.02, ge=0, le=1)
