"""HTTP plumbing: RFC 9457 problem responses that never echo input. Imports nothing of Kafka, FastStream or
OpenTelemetry (an import-linter contract keeps it so); the health route is in kit/health.py."""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from schemas.locations import error_location
from starlette.exceptions import HTTPException

from .db import UNAVAILABLE_ERRORS
from .errors import Conflict, DependencyUnavailable, DomainError, Gone, Invalid, NotFound, Refused

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# The HTTP edge of the domain's refusals (kit/errors.py): the service layer raises them, knowing nothing of HTTP.
STATUS_OF: dict[type[DomainError], int] = {NotFound: 404, Gone: 410, Refused: 403, Conflict: 409, Invalid: 422}


class Problem(Exception):
    """An error to show the caller: status, a short title and a detail that holds no personal data."""

    def __init__(
        self,
        status: int,
        detail: str,
        title: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.headers: Mapping[str, str] = headers or {}
        self.extra = extra


def problem_response(
    status: int, title: str, detail: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    sent = {"Retry-After": "5"} if status == 503 else {}
    sent.update(headers or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=sent or None)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        # Only where (the contract's own field names) and what kind of error: pydantic's `input` and `ctx`, and a key
        # the sender made up, could echo what was sent.
        errors = [{"loc": error_location(e), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        detail = f"{len(errors)} field(s) are invalid: " + ", ".join(e["loc"] for e in errors)
        return problem_response(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(Problem)
    async def domain_problem(_: Request, error: Problem) -> JSONResponse:
        return problem_response(error.status, error.title, error.detail, headers=error.headers, **error.extra)

    @app.exception_handler(DomainError)
    async def refused_by_the_domain(_: Request, error: DomainError) -> JSONResponse:
        status = next(code for kind, code in STATUS_OF.items() if isinstance(error, kind))
        return problem_response(status, error.title or HTTPStatus(status).phrase, error.detail)

    @app.exception_handler(HTTPException)
    async def http_problem(_: Request, error: HTTPException) -> JSONResponse:
        return problem_response(
            error.status_code, HTTPStatus(error.status_code).phrase, str(error.detail), headers=error.headers
        )

    async def unstorable_text(_: Request, error: Exception) -> JSONResponse:
        # PostgreSQL stores no NUL character in text or JSON; the transaction was rolled back.
        log.warning("refused text PostgreSQL cannot store: %s", type(error).__name__)
        return problem_response(422, "Invalid request", "a text field holds a character that cannot be stored (NUL)")

    for unstorable in (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError):
        app.add_exception_handler(unstorable, unstorable_text)

    @app.exception_handler(DependencyUnavailable)
    async def dependency_unavailable(_: Request, error: DependencyUnavailable) -> JSONResponse:
        log.warning("a dependency is unavailable: %s", error)
        return problem_response(503, "Service unavailable", "a service this one needs is unavailable; retry")

    async def unavailable(_: Request, error: Exception) -> JSONResponse:
        log.warning("storage unavailable: %s", type(error).__name__)
        return problem_response(503, "Service unavailable", "storage is unreachable; nothing was saved, retry")

    # Not left to the catch-all below: Starlette re-raises what reaches that one, and the server then drops the
    # connection, so a client's next request on it would fail instead of getting its own 503.
    for unavailable_error in UNAVAILABLE_ERRORS:
        if issubclass(unavailable_error, Exception):
            app.add_exception_handler(unavailable_error, unavailable)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        if isinstance(error, UNAVAILABLE_ERRORS):
            log.warning("storage unavailable: %s", type(error).__name__)
            return problem_response(503, "Service unavailable", "storage is unreachable; nothing was saved, retry")
        log.error("unexpected error", exc_info=error)
        return problem_response(500, "Internal error", "an unexpected error occurred; nothing was saved")
