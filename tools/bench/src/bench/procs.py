"""CPU seconds and peak memory of each process tree (a service, the Kafka JVM, PostgreSQL), sampled with psutil."""

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024


@dataclass
class _Tree:
    root: psutil.Process
    cpu_dead: float = 0.0  # CPU of children that exited between samples (PostgreSQL backends, say)
    seen: dict[int, float] = field(default_factory=dict)
    peak_rss: int = 0
    alone: bool = False


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class ProcessSampler:
    """Samples each named tree twice a second in a thread; `phase()` returns CPU used and peak RSS since `begin()`."""

    def __init__(self, pids: Mapping[str, int], interval: float = 0.5, alone: frozenset[str] = frozenset()) -> None:
        """`alone`: names measured without their children (the benchmark itself, parent of the stack it started)."""
        self.interval = interval
        self._trees: dict[str, _Tree] = {}
        for name, pid in pids.items():
            with contextlib.suppress(psutil.Error):
                self._trees[name] = _Tree(psutil.Process(pid), alone=name in alone)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-sampler", daemon=True)
        self._start_cpu: dict[str, float] = {}

    def add(self, name: str, pid: int) -> None:
        with self._lock, contextlib.suppress(psutil.Error):
            self._trees[name] = _Tree(psutil.Process(pid))
            self._start_cpu[name] = self._sample(self._trees[name])[0]

    def remove(self, name: str) -> None:
        with self._lock:
            self._trees.pop(name, None)
            self._start_cpu.pop(name, None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def begin(self) -> None:
        """A new phase: CPU counts from now, peaks start again."""
        with self._lock:
            for name, tree in self._trees.items():
                cpu, rss = self._sample(tree)
                self._start_cpu[name] = cpu
                tree.peak_rss = rss

    def phase(self) -> dict[str, dict[str, float]]:
        """Per tree: CPU seconds since `begin()`, peak memory in MB (RSS; PSS summed for a tree), process count."""
        with self._lock:
            result: dict[str, dict[str, float]] = {}
            for name, tree in self._trees.items():
                cpu, rss = self._sample(tree)
                result[name] = {
                    "cpu_s": round(cpu - self._start_cpu.get(name, cpu), 2),
                    "peak_rss_mb": round(max(tree.peak_rss, rss) / MB, 1),
                    "processes": len(tree.seen),
                }
            return result

    def lifetime_peak_rss_mb(self, name: str) -> float | None:
        """The kernel's own high-water mark (VmHWM) of the tree's root process, since it started."""
        tree = self._trees.get(name)
        if tree is None:
            return None
        try:
            with open(f"/proc/{tree.root.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) * 1024 / MB, 1)
        except OSError:
            return None
        return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                for tree in self._trees.values():
                    self._sample(tree)

    @staticmethod
    def _sample(tree: _Tree) -> tuple[float, int]:
        """Total CPU seconds of the tree (its living members plus those that exited) and its RSS now."""
        members: dict[int, tuple[float, int]] = {}
        try:
            processes = [tree.root] if tree.alone else [tree.root, *tree.root.children(recursive=True)]
        except psutil.Error:
            processes = []
        # PostgreSQL's backends share memory: PSS counts each shared page once, RSS would count it in every process.
        shared = len(processes) > 1
        for process in processes:
            with contextlib.suppress(psutil.Error):
                memory = process.memory_full_info().pss if shared else process.memory_info().rss
                members[process.pid] = (_cpu(process), memory)
        for pid, cpu in tree.seen.items():
            if pid not in members:
                tree.cpu_dead += cpu
        tree.seen = {pid: cpu for pid, (cpu, _) in members.items()}
        rss = sum(r for _, r in members.values())
        tree.peak_rss = max(tree.peak_rss, rss)
        return tree.cpu_dead + sum(tree.seen.values()), rss


def pids_listening(ports: Mapping[str, int]) -> dict[str, int]:
    """The process listening on each named TCP port (needs the right to see other users' sockets, e.g. root)."""
    by_port: dict[int, int] = {}
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.pid is not None and conn.laddr:
                by_port.setdefault(conn.laddr.port, conn.pid)
    return {name: by_port[port] for name, port in ports.items() if port in by_port}
