"""Intake's disclosure endpoints on a socket of their own, for the gateway's unit tests: each request is kept, and
answered by the test's function of its body."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from agency_gateway.personal import IntakeDisclosures
from aiohttp import web

from tests.servers import serving_aiohttp

# The answer to a request's JSON body: (status, JSON body).
Answer = Callable[[dict[str, Any]], tuple[int, Any]]


@dataclass
class Asked:
    """A request intake received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeIntake:
    url: str = ""
    answer: Answer = lambda body: (200, {})
    seen: list[Asked] = field(default_factory=list)
    made: list[IntakeDisclosures] = field(default_factory=list)

    def disclosures(self, answer: Answer, **options: Any) -> IntakeDisclosures:
        """The gateway's client of intake, answered by `answer`."""
        self.answer = answer
        self.made.append(IntakeDisclosures(self.url, "s" * 32, **options))
        return self.made[-1]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append(Asked(request.path, dict(request.headers), body))
        status, answer = self.answer(body)
        return web.json_response(answer, status=status)


@asynccontextmanager
async def serving_intake() -> AsyncIterator[FakeIntake]:
    fake = FakeIntake()
    app = web.Application()
    app.router.add_post("/{path:.*}", fake._handle)
    async with serving_aiohttp(app) as fake.url:
        try:
            yield fake
        finally:
            for disclosures in fake.made:
                await disclosures.close()
