"""Fakes for unit tests of the services' HTTP apps, put in through FastAPI's dependency overrides."""

from typing import Any

from fastapi import FastAPI
from kit import deps


class NoDatabase:
    """The pool of an app run without its lifespan: any use of it fails the request (a 500 the test sees)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the database was used ({name}) where nothing should reach it")


def without_database(app: FastAPI) -> FastAPI:
    """The app with `NoDatabase` as its pool: what it answers, it answers before any database work."""
    app.dependency_overrides[deps.pool] = NoDatabase
    return app
