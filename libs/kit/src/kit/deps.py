"""What a route takes by type (as full-stack-fastapi-template's `deps.py`): the database pool, the access log, the
caller in a role, and the service's own objects, each an `Annotated[..., Depends(...)]` read from the app that
`kit.app.service_app` built. A route declares `pool: PoolDep, who: StaffDep` and never reaches into `app.state`;
a test puts fakes on the app (or in `app.dependency_overrides`).

Every dependency is `async def`, though none awaits anything: FastAPI runs a plain `def` dependency in a worker
thread, a thread hop per dependency per request (py-spy showed them in every request's profile)."""

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar, cast

import asyncpg
from fastapi import Depends, Request

from .access_log import AccessLog
from .auth import STAFF, Principal, Role, require

T = TypeVar("T")


async def pool(request: Request) -> asyncpg.Pool:
    """The service's PostgreSQL pool (its runtime's, once started)."""
    return cast(asyncpg.Pool, request.app.state.runtime.pool)


async def access_log(request: Request) -> AccessLog:
    """The service's access log: every read and change of a case's data is recorded in it."""
    return cast(AccessLog, request.app.state.access_log)


def provided(kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency on the object of type `kind` the service's `main.py` gave `service_app(..., provides=[...])`:
    the catalogue and rules routing's routes read, notify's `Context`…"""

    async def get(request: Request) -> T:
        return cast(T, request.app.state.provided[kind])

    get.__name__ = f"provided_{kind.__name__}"
    return get


PoolDep = Annotated[asyncpg.Pool, Depends(pool)]
AccessLogDep = Annotated[AccessLog, Depends(access_log)]

# The caller, if its token is valid and its role one of these (401, 403 otherwise; 429 past its rate limit).
StaffDep = Annotated[Principal, Depends(require(*STAFF))]
SupervisorDep = Annotated[Principal, Depends(require(Role.supervisor))]
AgencyDep = Annotated[Principal, Depends(require(Role.agency))]
ServiceDep = Annotated[Principal, Depends(require(Role.service))]
AuditorDep = Annotated[Principal, Depends(require(Role.auditor))]
