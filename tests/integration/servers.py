"""Servers of a test module's own."""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack import PostgresServer


@contextmanager
def postgres_database(prefix: str, database: str) -> Iterator[str]:
    """A PostgreSQL server in a temporary folder with one database; its DSN. Stopped and removed afterwards."""
    # Not pytest's tmp_path: its parent is private to root, and PostgreSQL runs as its own user.
    state = Path(tempfile.mkdtemp(prefix=prefix))
    state.chmod(0o755)
    server = PostgresServer(state, fast=True)
    try:
        server.start()
        server.wait_ready()
        server.create_database(database)
        yield server.dsn(database)
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)
