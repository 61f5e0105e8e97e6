"""A service's background rounds (deadline timers, notices, pending needs): run one, again at once while it finds
work, else after a pause or as soon as someone wakes it."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


async def every(
    seconds: float, step: Callable[[], Awaitable[Any]], what: str, wake: asyncio.Event | None = None
) -> None:
    """Run `step` again and again, at once while it finds work (a truthy result), else after `seconds` or when
    `wake` is set; a failure is logged, not fatal."""
    while True:
        try:
            busy = await step()
        except Exception:
            log.exception("%s: a round failed; trying again in %.1fs", what, seconds)
            busy = 0
        if busy:
            continue
        if wake is None:
            await asyncio.sleep(seconds)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
        wake.clear()
