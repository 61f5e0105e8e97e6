"""Request limits: a cap on body size (413) for every request, and a rate limit per credential (429, checked by
`kit.auth.require` once it knows who calls). Field lengths are the pydantic models' own (422)."""

import time
from collections import OrderedDict

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .http import problem_response
from .settings import ServiceSettings


def install_request_limits(app: FastAPI, settings: ServiceSettings) -> None:
    """One call in a service's `main.py`: the body-size cap and the per-credential rate limiter."""
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)


class BodySizeLimit:
    """Refuses a body larger than `max_bytes` with 413: at once when Content-Length says so, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status = 413 if declared.isdigit() else 400
            detail = f"the body is larger than {self.max_bytes} bytes" if status == 413 else "bad Content-Length"
            response = problem_response(status, "Content too large" if status == 413 else "Bad request", detail)
            await response(scope, receive, send)
            return
        received = 0

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the app, so its problem handler answers 413 (chunked bodies have no length).
                    raise HTTPException(413, f"the body is larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, counting, send)


class RateLimiter:
    """A token bucket per credential: `burst` requests at once, then `per_second` on average.

    In memory, per process: each replica limits on its own, which bounds the total by the replica count.
    """

    def __init__(self, per_second: float, burst: int, max_credentials: int = 10_000) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.max_credentials = max_credentials
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # credential -> (tokens, at)

    def wait_needed(self, credential: str, now: float | None = None) -> float:
        """0 and one token taken if the credential may go on now, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(credential, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_second)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.per_second
        self._buckets[credential] = (tokens, now)
        while len(self._buckets) > self.max_credentials:
            self._buckets.popitem(last=False)
        return wait
