"""Prometheus for the local stack: Debian's `prometheus` package (installed with apt-get when missing, as the Kafka
jars are fetched with Maven), run on deploy/prometheus's configuration and alert rules, scraping every service.

The configuration is the file `docker compose up` uses; only the targets differ: `targets/devstack.json`, written
beside a copy of the configuration in `<state>/prometheus/`.
"""

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import DevstackError
from devstack.paths import repo_root
from devstack.ports import port_in_use
from devstack.process import ManagedProcess

DEBIAN_PACKAGE = "prometheus"
_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def prometheus_dir() -> Path:
    """deploy/prometheus: prometheus.yml, rules.yml, the rules' unit tests, compose's targets."""
    return repo_root() / "deploy" / "prometheus"


@dataclass(frozen=True)
class PrometheusBinaries:
    prometheus: Path
    promtool: Path


def find_prometheus() -> PrometheusBinaries | None:
    """`prometheus` and `promtool` on PATH (Debian's package puts both in /usr/bin), or None."""
    found = [shutil.which(name) or shutil.which(name, path="/usr/bin") for name in ("prometheus", "promtool")]
    if found[0] is None or found[1] is None:
        return None
    return PrometheusBinaries(Path(found[0]), Path(found[1]))


def ensure_prometheus() -> PrometheusBinaries:
    """Prometheus and promtool, installed from Debian's package with apt-get when missing (as root, else sudo -n)."""
    found = find_prometheus()
    if found is not None:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise DevstackError("prometheus is not installed and there is no apt-get: install Prometheus 2.x yourself")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    install = [*sudo, apt, "install", "-y", "--no-install-recommends", DEBIAN_PACKAGE]
    # Debian's package would start its own Prometheus as a system service where services start (not in containers);
    # ours listens on a port of its own (DEVSTACK_PROMETHEUS_PORT), so the two do not collide.
    if _run(install) != 0 and (_run([*sudo, apt, "update"]) != 0 or _run(install) != 0):
        raise DevstackError(f"could not install Debian's {DEBIAN_PACKAGE} package: run `sudo {' '.join(install[-5:])}`")
    found = find_prometheus()
    if found is None:
        raise DevstackError(f"Debian's {DEBIAN_PACKAGE} package was installed but prometheus/promtool are not found")
    return found


def _run(argv: list[str]) -> int:
    print(f"devstack: {' '.join(argv)}", flush=True)
    result = subprocess.run(argv, env={**os.environ, **_APT_ENV}, stdin=subprocess.DEVNULL, check=False)
    return result.returncode


def target_groups(targets: Mapping[str, str]) -> list[dict[str, object]]:
    """file_sd's JSON for `{service: "host:port"}`, labelled as targets/compose.json labels the containers."""
    return [{"targets": [where], "labels": {"service": service}} for service, where in targets.items()]


class PrometheusServer:
    """One Prometheus on 127.0.0.1:`port`, its data and configuration in `<state_dir>/prometheus/`.

    `config` and `rules` default to deploy/prometheus's; tests pass copies with shorter intervals."""

    def __init__(
        self,
        state_dir: Path,
        port: int,
        targets: Mapping[str, str],
        *,
        config: Path | None = None,
        rules: Path | None = None,
    ) -> None:
        self.root = state_dir.resolve() / "prometheus"
        self.port = port
        self.targets = dict(targets)
        self.config = config or prometheus_dir() / "prometheus.yml"
        self.rules = rules or prometheus_dir() / "rules.yml"
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "prometheus.log"

    def start(self) -> None:
        if self._process is None:
            if port_in_use(self.port):
                raise DevstackError(
                    f"port {self.port} is already in use: is another Prometheus running? "
                    "(set DEVSTACK_PROMETHEUS_PORT to move ours)"
                )
            binaries = ensure_prometheus()
            self._write_config()
            self._process = ManagedProcess("prometheus", self._argv(binaries.prometheus), os.environ, self.log_path,
                                           f"{self.url}/-/ready", cwd=self.root)  # fmt: skip
        self._process.start()

    def wait_ready(self, timeout: float = 60.0) -> None:
        if self._process is None:
            raise DevstackError("Prometheus has not been started")
        self._process.wait_ready(timeout)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def _write_config(self) -> None:
        (self.root / "targets").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.config, self.root / "prometheus.yml")
        shutil.copyfile(self.rules, self.root / "rules.yml")
        (self.root / "targets" / "devstack.json").write_text(json.dumps(target_groups(self.targets), indent=2) + "\n")

    def _argv(self, prometheus: Path) -> list[str]:
        return [
            str(prometheus),
            f"--config.file={self.root / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.root / 'data'}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}/",
        ]
