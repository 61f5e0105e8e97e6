"""The services' HTTP APIs, called with the signed-in user's own bearer token: the console holds no data and has
no rights of its own, so every page shows exactly what the API lets that user see."""

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)


@dataclass
class ApiError(Exception):
    """An API's refusal or failure, as its problem+json says (never a stack trace, never the input)."""

    status: int
    detail: str
    errors: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}"


class Apis:
    """One HTTP client for every service; each call carries the caller's token."""

    def __init__(self, urls: dict[str, str], timeout: float) -> None:
        self.urls = urls
        self.client = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self.client.aclose()

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        token: str | None,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The answer's JSON; an ApiError for anything but 2xx (503 when the service cannot be reached)."""
        sent = dict(headers or {})
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        try:
            answer = await self.client.request(method, self.urls[service] + path, json=body, headers=sent)
        except httpx.HTTPError as error:
            # The path may name a case or referral (ids, not personal data); the body is never logged.
            log.warning("%s unreachable for %s: %s", service, method, type(error).__name__)
            raise ApiError(503, f"{service} cannot be reached now; try again") from None
        if answer.status_code >= 400:
            raise _problem(answer)
        if answer.status_code == 204 or not answer.content:
            return None
        return answer.json()

    async def health(self, service: str) -> tuple[int | None, dict[str, Any]]:
        """A service's own health report (no token needed), or None when it does not answer."""
        try:
            answer = await self.client.get(self.urls[service] + "/health")
            report = answer.json()
        except (httpx.HTTPError, ValueError):
            return None, {}
        return answer.status_code, report if isinstance(report, dict) else {}

    async def document(self, service: str, path: str, token: str, params: dict[str, str]) -> tuple[bytes, str]:
        """A document the API renders itself (a report as CSV or HTML): its bytes and media type."""
        try:
            answer = await self.client.get(
                self.urls[service] + path, params=params, headers={"authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as error:
            log.warning("%s unreachable for a document: %s", service, type(error).__name__)
            raise ApiError(503, f"{service} cannot be reached now; try again") from None
        if answer.status_code >= 400:
            raise _problem(answer)
        return answer.content, answer.headers.get("content-type", "application/octet-stream")

    async def metrics(self, service: str) -> str | None:
        """A service's Prometheus text (no token needed), or None when it does not answer."""
        try:
            answer = await self.client.get(self.urls[service] + "/metrics")
        except httpx.HTTPError:
            return None
        return answer.text if answer.status_code == 200 else None


def _problem(answer: httpx.Response) -> ApiError:
    try:
        problem = answer.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    errors = problem.get("errors")
    return ApiError(
        answer.status_code,
        str(problem.get("detail") or answer.reason_phrase),
        [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else [],
    )
