"""HTTP errors as application/problem+json (RFC 9457), naming field paths and never echoing input values.

A local stand-in until the runtime kit (libs/kit) ships the shared helper; `problem` is the one to swap.
"""

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type_: str = "about:blank",
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """One problem response; `errors` lists {"loc": "body.x.y", "msg": ...} for validation problems."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


def field_errors(errors: Iterable[Mapping[str, Any]], prefix: tuple[str | int, ...] = ()) -> list[dict[str, str]]:
    """Pydantic errors as loc/msg pairs, dropping `input` and `ctx` so no submitted value is echoed."""
    result = []
    for error in errors:
        loc = ".".join(str(part) for part in (*prefix, *error["loc"]))
        # Some messages quote the value after a colon (e-mail addresses, UUIDs): keep only what precedes it.
        message = str(error["msg"]).split(": ", 1)[0]
        result.append({"loc": loc, "msg": message})
    return result


def install_problem_handlers(app: FastAPI) -> None:
    """Answer framework errors (bad path or body, unknown route, crash) as problems too."""

    async def validation_failed(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return problem(422, "the request is not valid", errors=field_errors(error.errors()))

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        return problem(error.status_code, str(error.detail), headers=error.headers)

    async def crashed(request: Request, error: Exception) -> JSONResponse:
        return problem(500, "the simulator failed to handle the request")

    app.add_exception_handler(RequestValidationError, validation_failed)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, crashed)
