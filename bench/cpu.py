"""CPU seconds from Linux's ``/proc``: of a process and its children, and of the whole
machine, for the benches that share the cores with a tracking server and a database."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["family_cpu_s", "machine_busy_s", "postmaster_pid"]

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """CPU seconds of process ``pid``, its reaped children's included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(f) for f in fields[11:15]) / _TICK  # utime, stime, cutime, cstime


def family_cpu_s(pid: int) -> float:
    """CPU seconds of process ``pid`` and of its children, live or reaped."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return _cpu_s(pid) + sum(family_cpu_s(int(c)) for c in children)


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent busy since boot (any process)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def postmaster_pid(data_dir: Path) -> int:
    """The process id of the PostgreSQL server running on ``data_dir`` (its parent of every
    backend: ``family_cpu_s`` of it is the whole server's CPU)."""
    return int((data_dir / "postmaster.pid").read_text().split()[0])
