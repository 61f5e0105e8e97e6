"""The console's settings, one typed object read from the environment (never printing a value)."""

from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("intake", "routing", "agency-gateway", "notify")


class ConsoleSettings(BaseSettings):
    # Strict and frozen like every service's settings: a typo'd value fails start-up, an error never shows a secret.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    service_name: str = "console"
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=1, le=65535)] = 8005
    log_level: str = "INFO"
    # The services' APIs, called with the signed-in user's own bearer token (not named *_url on purpose: kit's
    # runtime would not read them here, but the names match the variables devstack and compose already give).
    intake_url: str = "http://127.0.0.1:8001"
    routing_url: str = "http://127.0.0.1:8002"
    agency_gateway_url: str = "http://127.0.0.1:8003"
    notify_url: str = "http://127.0.0.1:8004"
    api_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    max_body_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024  # a posted form larger than this is refused (413)
    # The tokens' signing secret: the console checks a token's signature, role and expiry before keeping it (and,
    # on the development stack only, signs the dev identities' tokens with it).
    auth_secret: SecretStr | None = None
    # The development sign-in page, listing the dev identities: only on the development stack (`./dev up`).
    console_dev_sign_in: bool = False
    # Cookies are `Secure` (sent over HTTPS only; browsers treat http://127.0.0.1 and localhost as secure too).
    console_secure_cookies: bool = True
    # How long a sign-in lasts at most (the token's own expiry may end it sooner).
    console_session_hours: Annotated[float, Field(gt=0, le=24)] = 8.0
    # Where operators follow a trace (Jaeger's UI), e.g. http://127.0.0.1:16686; none: trace ids are shown as text.
    console_trace_url: str | None = None
    # Prometheus's HTTP API, for the operator's charts over time (e.g. http://127.0.0.1:9190; `./dev up` and compose
    # set it); none: the operations page shows its numbers since each service started, without history.
    console_prometheus_url: str | None = None
    # The centre's OpenID Connect provider (console/oidc.py): its issuer URL; none, no such sign-in. With it, the
    # client registered there and the console's public callback URL (https://<console>/signin/oidc/callback).
    console_oidc_issuer: str | None = None
    console_oidc_client_id: str | None = None
    console_oidc_client_secret: SecretStr | None = None
    console_oidc_redirect_url: str | None = None
    # The ID token's claims naming the user's role (caseworker, supervisor or agency) and, for an agency, its id.
    console_oidc_role_claim: str = "onestop_role"
    console_oidc_agency_claim: str = "onestop_agency"
    console_oidc_scopes: str = "openid email profile"

    @field_validator("auth_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("AUTH_SECRET must be at least 32 bytes (e.g. `openssl rand -hex 32`)")
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> Self:
        client = (self.console_oidc_client_id, self.console_oidc_client_secret, self.console_oidc_redirect_url)
        if self.console_oidc_issuer is None:
            if any(value is not None for value in client):
                raise ValueError("CONSOLE_OIDC_CLIENT_ID, _CLIENT_SECRET and _REDIRECT_URL need CONSOLE_OIDC_ISSUER")
            return self
        if any(not value for value in client):
            raise ValueError("CONSOLE_OIDC_ISSUER needs CONSOLE_OIDC_CLIENT_ID, _CLIENT_SECRET and _REDIRECT_URL")
        if self.auth_secret is None:
            raise ValueError("CONSOLE_OIDC_ISSUER needs AUTH_SECRET: the console signs the services' tokens with it")
        for name, url in (("ISSUER", self.console_oidc_issuer), ("REDIRECT_URL", self.console_oidc_redirect_url)):
            if not secure_url(url):
                raise ValueError(f"CONSOLE_OIDC_{name} must be an https URL (http only on 127.0.0.1 or localhost)")
        if "openid" not in self.console_oidc_scopes.split():
            raise ValueError("CONSOLE_OIDC_SCOPES must include openid")
        return self

    @property
    def oidc_enabled(self) -> bool:
        return self.console_oidc_issuer is not None

    def service_urls(self) -> dict[str, str]:
        """Each service's base URL, by its name."""
        urls = (self.intake_url, self.routing_url, self.agency_gateway_url, self.notify_url)
        return {name: url.rstrip("/") for name, url in zip(SERVICES, urls, strict=True)}


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def secure_url(url: str | None) -> bool:
    """An https URL, or an http one on this machine's loopback (development and tests)."""
    parts = urlsplit(url or "")
    if not parts.hostname or parts.username is not None or parts.fragment:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)
