"""Every service's command line: `python -m <service> migrate` and `python -m <service> serve`."""

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from .db import migrate
from .logs import configure_logging
from .settings import ServiceSettings
from .telemetry import configure_tracing


def service_main(settings: ServiceSettings, create_app: Callable[[ServiceSettings], FastAPI], migrations: Path) -> None:
    parser = argparse.ArgumentParser(prog=settings.service_name)
    parser.add_argument("command", choices=["migrate", "serve"], help="apply database migrations, or run")
    args = parser.parse_args()
    configure_logging(settings.service_name, settings.log_level)
    if args.command == "migrate":
        applied = asyncio.run(migrate(settings.database_url, settings.db_schema, migrations))
        print(f"{settings.service_name}: {len(applied)} migration(s) applied {applied}")
        return
    configure_tracing(settings.service_name)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
