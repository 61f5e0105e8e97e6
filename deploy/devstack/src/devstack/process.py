"""One child process of the stack: started in its own process group, health-checked, stopped politely."""

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from devstack.errors import DevstackError

# Health checks go straight to loopback, never through an HTTP proxy from the environment.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def describe_exit(returncode: int | None) -> str:
    """`exit code 3`, or `killed by SIGTERM` for a negative Popen return code."""
    if returncode is not None and returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file, or a note that it is missing."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            data = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


class ManagedProcess:
    """A long-running child whose output goes to `log_path` and whose pid is kept beside it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        health_url: str | None = None,
        *,
        cwd: Path | None = None,
        grace: float = 15.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.health_url = health_url
        self.cwd = cwd
        self.grace = grace
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._meant_to_run = False

    @property
    def pid_path(self) -> Path:
        return self.log_path.with_suffix(".pid")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    @property
    def crashed(self) -> bool:
        """Exited although nobody stopped or killed it."""
        return self._meant_to_run and not self.alive

    def start(self) -> None:
        if self.alive:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._end_leftover()
        self._close_log()
        self._log = self.log_path.open("ab")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._log.write(f"\n=== {stamp} devstack starts {self.name}: {' '.join(self.argv)}\n".encode())
        self._log.flush()
        try:
            self._proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                # Own process group: a Ctrl-C in the terminal reaches devstack only, which stops us in order.
                start_new_session=True,
            )
        except OSError as exc:
            self._close_log()
            raise DevstackError(f"{self.name}: cannot run {self.argv[0]!r}: {exc}") from exc
        self.pid_path.write_text(f"{self._proc.pid}\n")
        self._meant_to_run = True

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Return once the health URL answers 200 (or at once without one); fail fast if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive:
                raise DevstackError(
                    f"{self.name} stopped ({describe_exit(self.returncode)}) before it was ready; "
                    f"end of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if self.health_url is None or _answers_ok(self.health_url):
                return
            if time.monotonic() > deadline:
                raise DevstackError(
                    f"{self.name} not healthy at {self.health_url} after {timeout:.0f}s; "
                    f"end of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.25)

    def terminate(self) -> None:
        """Send SIGTERM without waiting (lets several processes shut down side by side)."""
        self._meant_to_run = False
        if self.alive:
            self._signal(signal.SIGTERM)

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM, then SIGKILL if the process is still there after the grace period."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(self.grace if grace is None else grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._proc.wait()
        self._forget()

    def kill(self) -> None:
        """SIGKILL at once, as a crash would."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal(signal.SIGKILL)
            self._proc.wait()
        self._forget()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)

    def _forget(self) -> None:
        self._meant_to_run = False
        self.pid_path.unlink(missing_ok=True)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _end_leftover(self) -> None:
        """Kill the copy of this very command that an earlier, crashed devstack left running."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if cmdline.split(b"\0")[:-1] != [arg.encode() for arg in self.argv]:
            return
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.05)
        self.pid_path.unlink(missing_ok=True)


def _answers_ok(url: str) -> bool:
    try:
        with _NO_PROXY_OPENER.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False
