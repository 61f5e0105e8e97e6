"""`service_app(...)`: the HTTP app every service's `main.py` builds the same way — its runtime's lifespan and its
background rounds, traces, `/metrics` and `/health`, problem responses, request limits, the access log's auditor
routes, and the service's own routers, whose routes take what they need by type (`kit.deps`)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI

from . import access_log_api
from .access_log import AccessLog
from .http import install_problem_handlers
from .limits import install_request_limits
from .runtime import ServiceRuntime


def service_app(
    title: str,
    runtime: ServiceRuntime,
    *routers: APIRouter,
    provides: Iterable[object] = (),
    loops: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
) -> FastAPI:
    """The service's app. `provides`: the objects its routes take with `kit.deps.provided(type)` (one per type);
    `loops`: its background rounds (`lambda: kit.loops.every(...)`), run while the service runs — started once the
    runtime has, cancelled before it stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app):
            tasks = [asyncio.create_task(loop()) for loop in loops]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.access_log = AccessLog.for_service(runtime.settings)
    app.state.provided = provided_by_type(provides)
    runtime.instrument(app)  # traces, /metrics, /health
    install_problem_handlers(app)
    install_request_limits(app, runtime.settings)  # 413 body size, 429 per credential
    for router in routers:
        app.include_router(router)
    app.include_router(access_log_api.router)
    return app


def provided_by_type(objects: Iterable[object]) -> dict[type, Any]:
    by_type: dict[type, Any] = {}
    for obj in objects:
        if type(obj) in by_type:
            raise ValueError(f"two objects of type {type(obj).__name__} provided: routes could not tell them apart")
        by_type[type(obj)] = obj
    return by_type
