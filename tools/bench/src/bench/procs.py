"""CPU seconds and peak memory of each process tree (a service, the Kafka JVM, PostgreSQL), read from /proc (Linux)
in one pass for all trees; PostgreSQL's PSS and the listening sockets through psutil."""

import contextlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
HZ = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
# PostgreSQL's PSS (each backend's smaps) costs far more to read than the rest of a round: every 4th round only.
PSS_EVERY = 4


@dataclass(frozen=True)
class _Stat:
    """What one read of /proc/<pid>/stat tells: the parent, CPU seconds (user + system) used by the process and by
    its children it has waited for, RSS, start time."""

    ppid: int
    cpu: float
    reaped: float  # PostgreSQL's backends that lived and exited between two samples count here, in the postmaster
    rss: int
    started: int  # clock ticks after boot: tells a process from a later one given the same pid

    @classmethod
    def of(cls, pid: int | str) -> "_Stat | None":
        try:
            text = (PROC / str(pid) / "stat").read_bytes()
            # The command name (field 2) is in parentheses and may hold spaces or parentheses itself: split after
            # the last. fields[0] is field 3 (state): ppid is field 4, utime and stime 14 and 15, cutime and cstime
            # 16 and 17, starttime 22, rss (pages) 24.
            f = text[text.rindex(b")") + 2 :].split()
            own, reaped = (int(f[11]) + int(f[12])) / HZ, (int(f[13]) + int(f[14])) / HZ
            return cls(int(f[1]), own, reaped, int(f[21]) * PAGE, int(f[19]))
        except (OSError, ValueError, IndexError):
            return None  # exited meanwhile


@dataclass
class _Tree:
    pid: int
    started: int
    alone: bool = False  # without its children: the benchmark itself, parent of the stack it started
    cpu: float = 0.0  # as last seen: kept once the tree has exited
    processes: int = 0
    peak_rss: int = 0


@dataclass
class _Scan:
    """One pass over /proc for every tree, not one per tree: each process of the machine, by pid and by parent."""

    by_pid: dict[int, _Stat]
    by_parent: dict[int, list[int]]

    @classmethod
    def now(cls) -> "_Scan":
        by_pid: dict[int, _Stat] = {}
        by_parent: dict[int, list[int]] = {}
        for entry in os.listdir(PROC):
            if entry.isdigit() and (stat := _Stat.of(entry)) is not None:
                by_pid[int(entry)] = stat
                by_parent.setdefault(stat.ppid, []).append(int(entry))
        return cls(by_pid, by_parent)

    def tree(self, root: _Tree) -> list[int]:
        """The root's pid and, unless it is measured alone, its descendants'; empty once it has exited."""
        stat = self.by_pid.get(root.pid)
        if stat is None or stat.started != root.started:  # gone (or its pid taken by another)
            return []
        found, waiting = [root.pid], [] if root.alone else [root.pid]
        while waiting:
            children = self.by_parent.get(waiting.pop(), [])
            found += children
            waiting += children
        return found


def _pss(pid: int) -> int:
    with contextlib.suppress(psutil.Error):
        return int(psutil.Process(pid).memory_full_info().pss)
    return 0


class ProcessSampler:
    """Samples each named tree twice a second in a thread; `phase()` returns CPU used and peak RSS since `begin()`."""

    def __init__(self, pids: Mapping[str, int], interval: float = 0.5, alone: frozenset[str] = frozenset()) -> None:
        """`alone`: names measured without their children (the benchmark itself, parent of the stack it started)."""
        self.interval = interval
        self._trees: dict[str, _Tree] = {}
        for name, pid in pids.items():
            if (stat := _Stat.of(pid)) is not None:
                self._trees[name] = _Tree(pid, stat.started, alone=name in alone)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-sampler", daemon=True)
        self._start_cpu: dict[str, float] = {}
        self._own_cpu = 0.0  # the sampling thread's own CPU seconds so far (it runs in the benchmark's process)
        self._own_cpu_start = 0.0

    def add(self, name: str, pid: int) -> None:
        with self._lock:
            if (stat := _Stat.of(pid)) is not None:
                self._trees[name] = _Tree(pid, stat.started)
                self._start_cpu[name] = self._sample(self._trees[name], _Scan.now())

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
            scan = _Scan.now()
            for name, tree in self._trees.items():
                tree.peak_rss = 0
                self._start_cpu[name] = self._sample(tree, scan)
            self._own_cpu_start = self._own_cpu

    def phase(self) -> dict[str, dict[str, float]]:
        """Per tree: CPU seconds since `begin()`, peak memory in MB (RSS; PSS summed for a tree), process count."""
        with self._lock:
            scan = _Scan.now()
            result: dict[str, dict[str, float]] = {}
            for name, tree in self._trees.items():
                cpu = self._sample(tree, scan)
                result[name] = {
                    "cpu_s": round(cpu - self._start_cpu.get(name, cpu), 3),
                    "peak_rss_mb": round(tree.peak_rss / MB, 1),
                    "processes": tree.processes,
                }
            return result

    def sampling_cpu_s(self) -> float:
        """CPU seconds the sampling thread itself used since `begin()`: the measurement's share of the benchmark's."""
        with self._lock:
            return round(self._own_cpu - self._own_cpu_start, 3)

    def lifetime_peak_rss_mb(self, name: str) -> float | None:
        """The kernel's own high-water mark (VmHWM) of the tree's root process, since it started."""
        tree = self._trees.get(name)
        if tree is None:
            return None
        try:
            with open(PROC / str(tree.pid) / "status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) * 1024 / MB, 1)
        except OSError:
            return None
        return None

    def _run(self) -> None:
        rounds = 0
        while not self._stop.wait(self.interval):
            rounds += 1
            with self._lock:
                scan = _Scan.now()
                for tree in self._trees.values():
                    self._sample(tree, scan, pss=rounds % PSS_EVERY == 0)
                self._own_cpu = time.thread_time()

    @staticmethod
    def _sample(tree: _Tree, scan: _Scan, pss: bool = True) -> float:
        """Total CPU seconds of the tree: its living members' and those of the members they waited for (a member
        that exits moves its CPU into its parent's). Its memory's peak updated: RSS for one process, PSS summed for
        several (PostgreSQL's backends share memory: RSS would count a shared page in every one), read only when
        `pss`."""
        members = {pid: scan.by_pid[pid] for pid in scan.tree(tree)}
        if not members:
            return tree.cpu
        tree.cpu = sum(stat.cpu + (0.0 if tree.alone else stat.reaped) for stat in members.values())
        tree.processes = len(members)
        if len(members) == 1:
            tree.peak_rss = max(tree.peak_rss, *(stat.rss for stat in members.values()))
        elif pss:
            tree.peak_rss = max(tree.peak_rss, sum(_pss(pid) for pid in members))
        return tree.cpu


def pids_listening(ports: Mapping[str, int]) -> dict[str, int]:
    """The process listening on each named TCP port (needs the right to see other users' sockets, e.g. root)."""
    by_port: dict[int, int] = {}
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.pid is not None and conn.laddr:
                by_port.setdefault(conn.laddr.port, conn.pid)
    return {name: by_port[port] for name, port in ports.items() if port in by_port}
