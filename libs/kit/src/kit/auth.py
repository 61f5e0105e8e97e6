"""Who is calling: signed bearer tokens (JWT, HS256) checked on every route but `/health` and `/metrics`.

A route declares who may call it with `Depends(require(Role.caseworker, Role.supervisor))` and gets the caller as a
`Principal`; which object that caller may touch is the service's own rule. The signing secret comes from the
environment (`AUTH_SECRET`, at least 32 bytes), never from the repository. Every refusal is logged by status, reason
and route only: never the token, never a claim's value.
"""

import logging
import math
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .http import Problem

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
ISSUER = "onestop"
AUDIENCE = "onestop"
MIN_SECRET_BYTES = 32


class Role(StrEnum):
    caseworker = "caseworker"  # the centre's staff: cases and their referrals
    supervisor = "supervisor"  # staff, and may also set any agency's capacity
    auditor = "auditor"  # reads the access log, and nothing else
    agency = "agency"  # one receiving agency (claim `agency`): its own referrals only
    service = "service"  # another service of the system calling over HTTP


STAFF = (Role.caseworker, Role.supervisor)


@dataclass(frozen=True)
class Principal:
    """The verified caller: who (`subject`), in which role, for which agency, from where."""

    subject: str
    role: Role
    agency: str | None
    client: str  # the client's address, for the access log
    email: str | None = None  # the token's `email` claim (OpenID Connect's standard one), where it has one

    @property
    def credential(self) -> str:
        """One credential's key (rate limits, the access log's `actor`): `agency:police`, `caseworker:cw-17`."""
        return f"{self.role}:{self.agency if self.role is Role.agency else self.subject}"


def issue_token(
    secret: str,
    role: Role | str,
    subject: str,
    *,
    agency: str | None = None,
    ttl_seconds: float = 3600.0,
    email: str | None = None,
) -> str:
    """A signed token (for devstack's dev tokens, service-to-service calls and tests)."""
    role = Role(role)
    if (role is Role.agency) != (agency is not None):
        raise ValueError("an agency token, and only one, names its agency")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "role": role.value,
        "iat": now,
        "exp": now + math.ceil(ttl_seconds),
    }
    if agency is not None:
        claims["agency"] = agency
    if email is not None:
        claims["email"] = email
    return jwt.encode(claims, _key(secret), algorithm=ALGORITHM)


# Clocks of the services' hosts may differ this much: a token issued "in the future" (`iat`) or just expired by
# another host's clock is still taken, so a skewed clock never stalls the services' calls to one another.
CLOCK_SKEW_SECONDS = 60


class Unauthenticated(Exception):
    """The token is missing, malformed, badly signed or expired; `reason` is a short code safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_token(secret: str, token: str, client: str = "unknown") -> Principal:
    try:
        claims = jwt.decode(
            token,
            _key(secret),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            leeway=CLOCK_SKEW_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("expired") from None
    except jwt.InvalidSignatureError:
        raise Unauthenticated("bad_signature") from None
    except jwt.PyJWTError:
        raise Unauthenticated("invalid") from None
    try:
        role = Role(str(claims.get("role")))
    except ValueError:
        raise Unauthenticated("unknown_role") from None
    agency = claims.get("agency")
    if (role is Role.agency) != isinstance(agency, str) or not isinstance(claims["sub"], str):
        raise Unauthenticated("invalid")
    email = claims.get("email")
    return Principal(
        subject=claims["sub"], role=role, agency=agency, client=client, email=email if isinstance(email, str) else None
    )


def _key(secret: str) -> bytes:
    key = secret.encode()
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"the signing secret must be at least {MIN_SECRET_BYTES} bytes")
    return key


_bearer = HTTPBearer(auto_error=False, description="A token from `casectl token` or `.state/tokens/` (./dev up)")


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def refuse(
    request: Request,
    status: int,
    reason: str,
    detail: str,
    principal: Principal | None = None,
    challenge: str | None = None,
) -> Problem:
    """Log a refusal (no token, no claim values but the role) and make its problem response."""
    route: Any = request.scope.get("route")
    log.warning(
        "access refused: %d %s on %s %s (role %s)",
        status,
        reason,
        request.method,
        getattr(route, "path", "unmatched"),
        principal.role if principal is not None else "none",
    )
    challenge = challenge or f'Bearer error="invalid_token", error_description="{reason}"'
    return Problem(status, detail, headers={"WWW-Authenticate": challenge} if status == 401 else {})


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    settings = request.app.state.runtime.settings
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise refuse(request, 401, "missing_token", "a bearer token is required", challenge='Bearer realm="onestop"')
    if settings.auth_secret is None:
        raise refuse(request, 401, "not_configured", "this service has no signing secret configured (AUTH_SECRET)")
    try:
        return verify_token(settings.auth_secret.get_secret_value(), credentials.credentials, client_address(request))
    except Unauthenticated as error:
        raise refuse(request, 401, error.reason, "the bearer token is invalid or expired") from None


def require(*roles: Role) -> Any:
    """A FastAPI dependency: the caller, if its token is valid and its role one of `roles` (401 / 403 otherwise),
    within its credential's rate limit (429)."""
    allowed = frozenset(roles)

    async def principal(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        caller = authenticate(request, credentials)
        if caller.role not in allowed:
            raise refuse(request, 403, "wrong_role", f"the {caller.role} role may not do this", caller)
        limiter = getattr(request.app.state, "rate_limiter", None)
        # A service's calls come from requests already limited where they entered (intake's preview from staff's).
        if limiter is not None and caller.role is not Role.service:
            wait = limiter.wait_needed(caller.credential)
            if wait > 0:
                raise _too_many(request, caller, wait)
        return caller

    return principal


def _too_many(request: Request, caller: Principal, wait: float) -> Problem:
    log.warning("rate limit reached: 429 for role %s on %s", caller.role, request.method)
    retry_after = str(max(1, math.ceil(wait)))
    return Problem(429, "too many requests for this credential; retry later", headers={"Retry-After": retry_after})
