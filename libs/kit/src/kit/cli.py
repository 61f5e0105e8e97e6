"""Every service's command line: `python -m <service> migrate`, `python -m <service> serve`, and any sub-command
the service adds of its own (`python -m routing validate-catalogue DIR`, say)."""

import argparse
import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from .db import migrate
from .logs import configure_logging
from .settings import ServiceSettings
from .telemetry import configure_tracing


@dataclass(frozen=True)
class Command:
    """A service's own sub-command, beside `migrate` and `serve`.

    `arguments` declares its options on its parser; `run` gets the parsed arguments and returns the exit status.
    """

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None


def service_main(
    settings: ServiceSettings,
    create_app: Callable[[ServiceSettings], FastAPI],
    migrations: Path,
    commands: Sequence[Command] = (),
    argv: Sequence[str] | None = None,
) -> None:
    parser = argparse.ArgumentParser(prog=settings.service_name)
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="command")
    subcommands.add_parser("migrate", help="apply database migrations")
    subcommands.add_parser("serve", help="run the service")
    own = {command.name: command for command in commands}
    for command in commands:
        command.arguments(subcommands.add_parser(command.name, help=command.help, description=command.help))
    args = parser.parse_args(argv)
    configure_logging(settings.service_name, settings.log_level)
    if args.command in own:
        raise SystemExit(own[args.command].run(args))
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
