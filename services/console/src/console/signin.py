"""Signing in and out, the language switch, and the home page each role starts from.

Development: the sign-in page lists the identities `./dev up` has tokens for, when CONSOLE_DEV_SIGN_IN is set (the
development stack only). Anywhere: a bearer token issued to the user (`casectl token`) may be pasted. With the
centre's OpenID Connect provider configured, a link to it (console/oidc.py). Each keeps the token the services
accept with `keep_session`."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from kit.auth import Role, Unauthenticated, verify_token

from .i18n import LANGUAGES
from .labels import N_
from .pages import AnyPage, Page
from .session import DEV_STAFF, LANGUAGE_COOKIE, dev_token, end_session, keep_session, posted_form

router = APIRouter()


def home_of(p: Page) -> str:
    if p.user is None:
        return "/signin"
    if p.user.agency is not None:
        return "/inbox"
    if p.user.is_staff:
        return "/cases"
    return "/signin"


@router.get("/")
async def home(p: AnyPage) -> Response:
    return RedirectResponse(home_of(p), status_code=303)


async def dev_identities(p: Page) -> list[str]:
    """`caseworker`, `supervisor`, then `agency-<id>` for each agency of the catalogue (asked of routing)."""
    if not p.settings.console_dev_sign_in:
        return []
    staff_token = dev_token(p.settings, Role.caseworker.value, [])
    agencies = await p.apis.call("routing", "GET", "/agencies", staff_token)
    return [r.value for r in DEV_STAFF] + [f"agency-{a['id']}" for a in agencies]


REFUSED = N_("That sign-in was refused.")


async def sign_in_page(p: Page, http_status: int = 200, refusal: str | None = None) -> Response:
    """The sign-in page: the ways in this console offers, and why the last attempt was refused (an English label)."""
    return p.render(
        "signin.html",
        http_status,
        identities=await dev_identities(p),
        oidc=p.settings.oidc_enabled,
        refusal=p.t.gettext(refusal) if refusal else None,
    )


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(p: AnyPage) -> Response:
    return await sign_in_page(p)


@router.post("/signin/dev")
async def signin_dev(request: Request, p: AnyPage) -> Response:
    form = await posted_form(request)
    identities = await dev_identities(p)
    chosen = form.get("identity")
    agencies = [i.removeprefix("agency-") for i in identities if i.startswith("agency-")]
    token = dev_token(p.settings, chosen, agencies) if chosen in identities else None
    if token is None:
        return await sign_in_page(p, 403, REFUSED)
    response = RedirectResponse("/", status_code=303)
    keep_session(response, token, p.settings)
    return response


@router.post("/signin/token")
async def signin_token(request: Request, p: AnyPage) -> Response:
    form = await posted_form(request)
    token = form.get("token")
    try:
        if p.settings.auth_secret is None:
            raise Unauthenticated("not_configured")
        principal = verify_token(p.settings.auth_secret.get_secret_value(), token)
        if principal.role in (Role.service, Role.auditor):
            raise Unauthenticated("wrong_role")
    except Unauthenticated:
        return await sign_in_page(p, 401, REFUSED)
    response = RedirectResponse("/", status_code=303)
    keep_session(response, token, p.settings)
    return response


@router.post("/signout")
async def signout(request: Request, p: AnyPage) -> Response:
    await posted_form(request)
    response = RedirectResponse("/signin", status_code=303)
    end_session(response, p.settings)
    return response


@router.get("/language/{language}")
async def switch_language(language: str, request: Request, p: AnyPage) -> Response:
    """Remember the language and go back where the switch was pressed (a page of this site only)."""
    back = request.query_params.get("back", "/")
    if not back.startswith("/") or back.startswith("//"):
        back = "/"
    response = RedirectResponse(back, status_code=303)
    if language in LANGUAGES:
        response.set_cookie(
            LANGUAGE_COOKIE, language, max_age=365 * 86400, secure=p.settings.console_secure_cookies, samesite="lax"
        )
    return response
