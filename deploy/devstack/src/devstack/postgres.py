"""A private PostgreSQL cluster for the local stack: initdb once, then pg_ctl, on loopback only."""

import os
import pwd
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from devstack.errors import DevstackError
from devstack.ports import free_ports, port_in_use
from devstack.process import log_tail

SUPERUSER = "onestop"
_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# Unix socket paths are limited to 107 bytes; past that the cluster listens on TCP only.
_MAX_SOCKET_PATH = 100


def postgres_bin_dir() -> Path:
    """Server binaries: `$PG_BIN_DIR`, else `pg_config --bindir`, else `initdb` on PATH, else Debian's layout."""
    candidates: list[Path] = []
    if configured := os.environ.get("PG_BIN_DIR"):
        candidates.append(Path(configured))
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major_version, reverse=True)
    candidates.extend(debian)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise DevstackError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
        "(Debian: apt-get install postgresql) or set PG_BIN_DIR"
    )


def _major_version(bin_dir: Path) -> int:
    name = bin_dir.parent.name
    return int(name) if name.isdigit() else 0


class PostgresServer:
    """One PostgreSQL cluster in `<state_dir>/pg`; `fast=True` trades durability for speed in tests; `settings` are
    more server settings (`{"shared_preload_libraries": "'pg_stat_statements'"}`: values as postgresql.conf has
    them)."""

    def __init__(
        self, state_dir: Path, port: int | None = None, *, fast: bool = False, settings: Mapping[str, str] | None = None
    ) -> None:
        self.root = state_dir.resolve() / "pg"
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log_path = self.root / "postgres.log"
        self.fixed_port = port is not None
        self.port = port if port is not None else free_ports(1)[0]
        self.fast = fast
        self.extra_settings = dict(settings or {})
        self.bin_dir = postgres_bin_dir()
        self._as_root = os.geteuid() == 0

    def dsn(self, database: str = "onestop") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        """Whether a postmaster is running on this data directory (pg_ctl status)."""
        if not (self.data_dir / "PG_VERSION").is_file():
            return False
        status = subprocess.run(
            self._server_cmd("pg_ctl", "status", "-D", str(self.data_dir)),
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
        return status.returncode == 0

    def start(self) -> None:
        """Create the cluster on first use, write its settings and start it (waits until it accepts)."""
        self._prepare_dirs()
        self._init_once()
        if self.running:
            # Left behind by a devstack that did not stop cleanly; it holds the data directory.
            self.stop(mode="immediate")
        if self.fixed_port and port_in_use(self.port):
            raise DevstackError(
                f"port {self.port} is already in use: is another PostgreSQL running? "
                "(set DEVSTACK_POSTGRES_PORT to move it)"
            )
        self._write_settings()
        result = subprocess.run(
            self._server_cmd(
                "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "60", "-s"
            ),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the terminal must not reach the postmaster before the services stop.
            start_new_session=True,
        )
        if result.returncode != 0:
            raise DevstackError(
                f"PostgreSQL did not start (pg_ctl exit {result.returncode}): {result.stdout}{result.stderr}"
                f"end of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once the server accepts connections on its TCP port."""
        deadline = time.monotonic() + timeout
        while True:
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", SUPERUSER, "-d", "postgres"],
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise DevstackError(
                    f"PostgreSQL not ready on 127.0.0.1:{self.port} after {timeout:.0f}s; "
                    f"end of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; `mode` is pg_ctl's: smart, fast or immediate."""
        if not self.running:
            return
        result = subprocess.run(
            self._server_cmd("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "-s"),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise DevstackError(f"PostgreSQL did not stop (pg_ctl exit {result.returncode}): {result.stderr}")

    def kill(self) -> None:
        """Immediate stop: no checkpoint, the next start recovers from the WAL, as after a crash."""
        self.stop(mode="immediate")

    def create_database(self, name: str) -> None:
        """Create database `name` unless it exists."""
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if exists.strip() != "1":
            self._psql(f'CREATE DATABASE "{name}"')

    def _psql(self, sql: str) -> str:
        argv = [
            str(self.bin_dir / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres", "-c", sql,
        ]  # fmt: skip
        env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
        if result.returncode != 0:
            raise DevstackError(f"psql failed on {sql!r}: {result.stderr.strip()}")
        return result.stdout

    def _server_cmd(self, tool: str, *args: str) -> list[str]:
        argv = [str(self.bin_dir / tool), *args]
        # PostgreSQL refuses to run as root; the Debian package's postgres user runs it instead.
        return ["runuser", "-u", "postgres", "--", *argv] if self._as_root else argv

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if not self._as_root:
            return
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise DevstackError(
                "running as root needs a 'postgres' system user to run PostgreSQL (Debian's postgresql package "
                "creates it)"
            ) from exc
        for path in (self.root, self.socket_dir):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        if self.log_path.exists():
            os.chown(self.log_path, owner.pw_uid, owner.pw_gid)
        # The postgres user must be able to reach its folder (e.g. through pytest's 0700 temp dirs).
        for parent in self.root.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)

    def _init_once(self) -> None:
        if (self.data_dir / "PG_VERSION").is_file():
            return
        result = subprocess.run(
            self._server_cmd(
                "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--no-locale"
            ),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise DevstackError(f"initdb failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# devstack rewrites this file at every start\ninclude_if_exists = 'devstack.conf'\n")

    def _write_settings(self) -> None:
        socket_dir = str(self.socket_dir) if len(str(self.socket_dir)) <= _MAX_SOCKET_PATH else ""
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{socket_dir}'",
            "max_connections": "200",
            "fsync": "off" if self.fast else "on",
            "synchronous_commit": "off" if self.fast else "on",
            "full_page_writes": "off" if self.fast else "on",
            **self.extra_settings,
        }
        path = self.data_dir / "devstack.conf"
        path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        if self._as_root:
            owner = pwd.getpwnam("postgres")
            os.chown(path, owner.pw_uid, owner.pw_gid)
