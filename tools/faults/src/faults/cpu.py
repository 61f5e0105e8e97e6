"""CPU used by the stack's service processes, read from /proc (Linux): each service's whole process group, since
devstack starts every service in a session of its own (its pid is the group's id)."""

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path

PROC = Path("/proc")


def parse_stat(text: str) -> tuple[int, int]:
    """From one /proc/<pid>/stat line: the process group and the CPU ticks used (user + system)."""
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself: split after the last.
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): pgrp is field 5, utime and stime fields 14 and 15.
    return int(fields[2]), int(fields[11]) + int(fields[12])


def group_ticks(leader: int, proc: Path = PROC) -> int | None:
    """CPU ticks used so far by every live process of `leader`'s process group; None when the leader is gone."""
    if not (proc / str(leader)).exists():
        return None
    total = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            group, ticks = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile, or not readable
        if group == leader:
            total += ticks
    return total


def percent(ticks: int, seconds: float, hz: int) -> float:
    """CPU as a percentage of one core over `seconds`."""
    return 100.0 * ticks / hz / seconds if seconds > 0 else 0.0


async def measure(pids: Mapping[str, int], seconds: float, proc: Path = PROC) -> dict[str, float | None]:
    """Each process group's CPU (% of one core) over the next `seconds`; None for one that ended meanwhile."""
    hz = os.sysconf("SC_CLK_TCK")
    before = {name: group_ticks(pid, proc) for name, pid in pids.items()}
    started = time.monotonic()
    await asyncio.sleep(seconds)
    after = {name: group_ticks(pid, proc) for name, pid in pids.items()}
    elapsed = time.monotonic() - started
    result: dict[str, float | None] = {}
    for name in pids:
        first, last = before[name], after[name]
        result[name] = None if first is None or last is None else round(percent(last - first, elapsed, hz), 1)
    return result
