"""Who is signed in, and forms that only this site's pages can post.

The user's bearer token is the session: kept in an HTTP-only, Secure, SameSite=Strict cookie, checked (signature,
role, expiry) on every request and sent on to the APIs. Every form carries a CSRF token that must equal the one in
the console's own cookie (double submit): another site can neither read that cookie nor set it."""

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request, Response
from kit.auth import Principal, Role, Unauthenticated, issue_token, verify_token

from .forms import Form
from .settings import ConsoleSettings

SESSION_COOKIE = "console_session"
CSRF_COOKIE = "console_csrf"
LANGUAGE_COOKIE = "console_lang"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class User:
    """The signed-in user: their token (sent to the APIs) and what it says about them."""

    token: str
    principal: Principal

    @property
    def role(self) -> Role:
        return self.principal.role

    @property
    def agency(self) -> str | None:
        return self.principal.agency

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.caseworker, Role.supervisor)

    @property
    def is_operator(self) -> bool:
        return self.role is Role.supervisor


def signed_in(request: Request, settings: ConsoleSettings) -> User | None:
    """The user of the session cookie, if its token is valid now (else nobody: they sign in again)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or settings.auth_secret is None:
        return None
    try:
        principal = verify_token(settings.auth_secret.get_secret_value(), token)
    except Unauthenticated:
        return None
    return User(token, principal) if principal.role is not Role.service else None


def keep_session(response: Response, token: str, settings: ConsoleSettings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.console_session_hours * 3600),
        httponly=True,
        secure=settings.console_secure_cookies,
        samesite="strict",
    )


def end_session(response: Response, settings: ConsoleSettings) -> None:
    response.delete_cookie(SESSION_COOKIE, httponly=True, secure=settings.console_secure_cookies, samesite="strict")


# The identities `./dev up` writes tokens for (.state/tokens/): staff roles, then one login per agency.
DEV_STAFF = (Role.caseworker, Role.supervisor)


def dev_token(settings: ConsoleSettings, identity: str, agencies: list[str]) -> str | None:
    """A development token for `caseworker`, `supervisor` or `agency-<id>`, signed as devstack signs its own;
    None for anything else, or when the development sign-in is off."""
    if not settings.console_dev_sign_in or settings.auth_secret is None:
        return None
    secret = settings.auth_secret.get_secret_value()
    hours = settings.console_session_hours * 3600
    for role in DEV_STAFF:
        if identity == role.value:
            subject = f"dev-{role.value}"
            return issue_token(secret, role, subject, ttl_seconds=hours, email=f"{subject}@centre.example")
    agency = identity.removeprefix("agency-")
    if identity.startswith("agency-") and agency in agencies:
        return issue_token(secret, Role.agency, identity, agency=agency, ttl_seconds=hours)
    return None


class CsrfRefused(Exception):
    """A form posted without the token of this browser's CSRF cookie."""


def csrf_token(request: Request) -> str:
    """This browser's CSRF token: its cookie's, or a new one (set by `csrf_cookie` on the way out)."""
    token: str | None = getattr(request.state, "csrf", None)
    if token is None:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        request.state.csrf = token
    return token


async def csrf_cookie(
    request: Request, call_next: Callable[[Request], Awaitable[Response]], settings: ConsoleSettings
) -> Response:
    """Middleware: every page's response sets the CSRF cookie if the browser has none yet."""
    response = await call_next(request)
    token = getattr(request.state, "csrf", None)
    if token is not None and request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, secure=settings.console_secure_cookies, samesite="strict"
        )
    return response


async def posted_form(request: Request) -> Form:
    """The posted form, if it carries this browser's CSRF token; CsrfRefused otherwise."""
    data = await request.form()
    sent = data.get(CSRF_FIELD)
    expected = request.cookies.get(CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused
    return Form((key, value) for key, value in data.multi_items() if isinstance(value, str))
