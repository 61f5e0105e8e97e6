"""The simulator's settings, read once from the environment."""

from pathlib import Path
from typing import Annotated

from pydantic import Field, HttpUrl, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .behaviour import Behaviour


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=1, le=65535)] = 8090
    notify_url: HttpUrl = HttpUrl("http://127.0.0.1:8004")
    # JSON: {"default": {"action": "accept", "delay_seconds": 0.5}, "police": {"action": "silent"}, ...}
    simulator_behaviour: dict[str, Behaviour] = {}
    simulator_ack_retry_seconds: Annotated[float, Field(ge=0)] = 300.0
    # Webhook signatures: an agency's secret comes from the variable its catalogue entry names, or from
    # SIMULATOR_WEBHOOK_SECRETS ({"police": "..."}). An agency with a secret gets only correctly signed referrals.
    catalogue_dir: Path | None = None
    simulator_webhook_secrets: dict[str, str] = {}
    # Each agency's bearer token for its acknowledgements to notify: {"police": "<jwt>", ...} (devstack makes them).
    simulator_agency_tokens: dict[str, str] = {}
    # Without a token of its own, an agency's is signed with AUTH_SECRET (docker compose's demo; never in production).
    auth_secret: SecretStr | None = None
