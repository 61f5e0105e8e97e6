"""The console: pages for caseworkers, agencies and operators over the services' HTTP APIs. No database, no Kafka."""

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from kit.cli import serve_http
from kit.health import Dependency, install_health_route
from kit.limits import BodySizeLimit
from kit.logs import configure_logging

from . import agency, case_actions, caseworker, oidc, operator, signin, supervisor
from .apis import ApiError, Apis
from .pages import NotForThisRole, SignInNeeded, page
from .session import CsrfRefused, csrf_cookie, end_session
from .settings import ConsoleSettings

log = logging.getLogger(__name__)


class ServicesHealth:
    """/health of the console: the services it calls, each answering or not (none of them is needed to start)."""

    def __init__(self, settings: ConsoleSettings, apis: Apis) -> None:
        self.settings = settings
        self.apis = apis

    async def dependencies(self) -> list[Dependency]:
        checked = []
        for name, url in self.settings.service_urls().items():
            parts = urlsplit(url)
            dependency = Dependency(name, "http", f"{parts.scheme}://{parts.hostname}:{parts.port}", required=False)
            began = time.monotonic()
            status, _ = await self.apis.health(name)
            dependency.reachable = status is not None
            dependency.latency_ms = round((time.monotonic() - began) * 1000, 1)
            checked.append(dependency)
        return checked

    def topology(self) -> dict[str, Any]:
        return {}


def create_app(settings: ConsoleSettings) -> FastAPI:
    apis = Apis(settings.service_urls(), settings.api_timeout_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await apis.close()

    app = FastAPI(title="onestop console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.apis = apis
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    routers = (signin, oidc, caseworker, case_actions, agency, operator, supervisor)
    for router in (module.router for module in routers):
        app.include_router(router)
    install_health_route(app, ServicesHealth(settings, apis))
    install_error_pages(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await csrf_cookie(request, call_next, settings)
        # Scripts and styles from this site only (htmx is a file of ours), no framing, no referrer leaving the site.
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def install_error_pages(app: FastAPI) -> None:
    """An API's refusal, a missing session or a forged form as a readable page; never a stack trace."""

    @app.exception_handler(SignInNeeded)
    async def sign_in(request: Request, _: SignInNeeded) -> Response:
        return RedirectResponse("/signin", status_code=303)

    @app.exception_handler(NotForThisRole)
    async def not_for_role(request: Request, _: NotForThisRole) -> Response:
        p = page(request)
        return p.render(
            "error.html", http_status=403, status_code=403, detail=p.t.gettext("This page is not for your role.")
        )

    @app.exception_handler(CsrfRefused)
    async def forged(request: Request, _: CsrfRefused) -> Response:
        p = page(request)
        detail = p.t.gettext("The form was not sent from this page; open the page again and resend it.")
        return p.render("error.html", http_status=403, status_code=403, detail=detail)

    @app.exception_handler(ApiError)
    async def refused(request: Request, error: ApiError) -> Response:
        p = page(request)
        if error.status == 401:  # the token expired or was revoked: sign in again
            response = RedirectResponse("/signin", status_code=303)
            end_session(response, p.settings)
            return response
        log.info("a service refused the console's call: %d", error.status)
        shown = error.status if error.status in (403, 404, 409, 410, 422, 503) else 502
        return p.render("error.html", http_status=shown, status_code=error.status, detail=error.detail)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.error("unexpected error", exc_info=error)
        p = page(request)
        return p.render(
            "error.html", status=500, status_code=500, detail=p.t.gettext("Something went wrong; try again.")
        )


def run() -> None:
    settings = ConsoleSettings()
    configure_logging(settings.service_name, settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per call to the services says nothing new
    serve_http(create_app(settings), settings.http_host, settings.http_port)
