"""Every service's command line: `python -m <service> migrate` (`--status`: what is applied and pending),
`python -m <service> serve`, and any sub-command the service adds of its own (`python -m routing validate-catalogue
DIR`, say)."""

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from .db import MigrationChanged, migrate, migration_status
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


def print_migration_status(settings: ServiceSettings, directory: Path) -> int:
    """`migrate --status`: each migration applied (when, and whether its file has changed since) and each pending;
    1 when a file has changed (`migrate` would refuse), else 0."""
    status = asyncio.run(migration_status(settings.database_url, settings.db_schema, directory))
    print(f"{settings.service_name}: migrations of schema {settings.db_schema!r}")
    for a in status.applied:
        note = (
            "  CHANGED since applied: migrate refuses"
            if a.name in status.changed
            else "  (its file is gone)"
            if a.name in status.missing
            else "  (checksum recorded at the next migrate)"
            if a.checksum is None
            else ""
        )
        print(f"  applied  {a.applied_at.isoformat(timespec='seconds')}  {a.name}{note}")
    for m in status.pending:
        print(f"  pending  {'':25}  {m.name}")
    counts = f"{len(status.applied)} applied, {len(status.pending)} pending"
    print(counts + (f", {len(status.changed)} changed" if status.changed else ""))
    return 1 if status.changed else 0


def service_main(
    settings: ServiceSettings,
    create_app: Callable[[ServiceSettings], FastAPI],
    migrations: Path,
    commands: Sequence[Command] = (),
    argv: Sequence[str] | None = None,
) -> None:
    parser = argparse.ArgumentParser(prog=settings.service_name)
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="command")
    migrate_parser = subcommands.add_parser("migrate", help="apply database migrations")
    migrate_parser.add_argument(
        "--status", action="store_true", help="list the migrations applied (with when) and pending; apply nothing"
    )
    subcommands.add_parser("serve", help="run the service")
    own = {command.name: command for command in commands}
    for command in commands:
        command.arguments(subcommands.add_parser(command.name, help=command.help, description=command.help))
    args = parser.parse_args(argv)
    configure_logging(settings.service_name, settings.log_level)
    if args.command in own:
        raise SystemExit(own[args.command].run(args))
    if args.command == "migrate":
        if args.status:
            raise SystemExit(print_migration_status(settings, migrations))
        try:
            applied = asyncio.run(migrate(settings.database_url, settings.db_schema, migrations))
        except MigrationChanged as refused:
            print(f"{settings.service_name}: {refused}", file=sys.stderr)
            raise SystemExit(1) from None
        print(f"{settings.service_name}: {len(applied)} migration(s) applied {applied}")
        return
    configure_tracing(settings.service_name)
    serve_http(create_app(settings), settings.http_host, settings.http_port)


def serve_http(app: FastAPI, host: str, port: int) -> None:
    """Serve until stopped: no access log (paths name cases; the app logs what matters), logging as configured."""
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=10)
