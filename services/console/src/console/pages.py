"""What every page shares: the signed-in user, the language, the CSRF token, and rendering a template with them."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from kit.auth import Role

from .apis import Apis
from .i18n import Translator, language_of
from .labels import ROLES
from .session import CSRF_FIELD, LANGUAGE_COOKIE, User, csrf_token, signed_in
from .settings import ConsoleSettings

HTMX = "htmx-2.0.11.min.js"
templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        extensions=["jinja2.ext.i18n"],
        autoescape=True,
    )
)


class SignInNeeded(Exception):
    """No valid session: the user is sent to the sign-in page."""


class NotForThisRole(Exception):
    """A page of another role's: refused as the API would refuse it."""


@dataclass(frozen=True)
class Page:
    """One request's page context: who, in which language, with which services."""

    request: Request
    settings: ConsoleSettings
    apis: Apis
    user: User | None
    t: Translator

    def render(self, template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
        shown = {
            "user": self.user,
            "lang": self.t.language,
            "csrf_field": CSRF_FIELD,
            "csrf": csrf_token(self.request),
            "htmx": HTMX,
            "path": self.request.url.path,
            "role_names": ROLES,
            **self.t.functions(),
            **context,
        }
        return templates.TemplateResponse(self.request, template, shown, status_code=http_status)

    @property
    def subject(self) -> str:
        """Who is signed in: their token's subject (a staff page only)."""
        assert self.user is not None
        return self.user.principal.subject

    @property
    def role(self) -> Role:
        assert self.user is not None
        return self.user.role

    @property
    def user_agency(self) -> str:
        """The signed-in agency's id (an agency page only)."""
        assert self.user is not None and self.user.agency is not None
        return self.user.agency

    async def api(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        token = self.user.token if self.user is not None else None
        return await self.apis.call(service, method, path, token, **kwargs)


def page(request: Request) -> Page:
    settings: ConsoleSettings = request.app.state.settings
    return Page(
        request,
        settings,
        request.app.state.apis,
        signed_in(request, settings),
        Translator(language_of(request.cookies.get(LANGUAGE_COOKIE))),
    )


async def page_of(request: Request) -> Page:
    """`page` as a dependency: `async`, or FastAPI would run it in a worker thread on every request."""
    return page(request)


AnyPage = Annotated[Page, Depends(page_of)]


def requiring(allowed: Callable[[User], bool]) -> Any:
    """A dependency: the page of a signed-in user that `allowed` admits."""

    async def check(p: AnyPage) -> Page:
        if p.user is None:
            raise SignInNeeded
        if not allowed(p.user):
            raise NotForThisRole
        return p

    return Depends(check)


StaffPage = Annotated[Page, requiring(lambda u: u.is_staff)]
AgencyPage = Annotated[Page, requiring(lambda u: u.agency is not None)]
OperatorPage = Annotated[Page, requiring(lambda u: u.is_operator)]
