"""Run a command and measure it: wall time, exit status, and the peak resident memory of every
process of its tree (the command and, e.g., its helper workers and spawned children).

Peaks come from the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``), read while
the tree runs. A process is read only once it has executed its own program: between fork (or
vfork) and exec it still shows its parent's memory, so a sample taken then reported the
parent's peak (this process's ~600 MiB, for a command it had just started). For the same
reason ``wait4``'s ``ru_maxrss`` is not used: Linux folds the pre-exec memory into it.
Linux only (``/proc``).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sweeps.parallel.workers import PROCESS_NAME

__all__ = ["CommandRun", "ProcessPeak", "run_measured", "wall_time"]

_MIB = 1024.0  # KiB per MiB
HELPER_PREFIX = PROCESS_NAME.split("{")[0]  # the name a forked helper worker gives itself


@dataclass(frozen=True)
class ProcessPeak:
    pid: int
    role: str  # "main", "helper" (a --workers helper), "child" (a multiprocessing spawn
    # child: metric writer, plotter) or the program name
    peak_mib: float  # highest resident set size seen
    cpu_s: float = 0.0  # user + system CPU seconds at its last sighting


@dataclass(frozen=True)
class CommandRun:
    argv: list[str]  # the command run
    wall_s: float  # from start to exit
    returncode: int
    processes: list[ProcessPeak]  # every process of the tree seen while it ran
    stderr_tail: str  # the last lines of its stderr, for errors

    @property
    def peak_mib(self) -> float:
        """The highest peak of any one process."""
        return max((p.peak_mib for p in self.processes), default=float("nan"))

    def role_peak(self, role: str) -> float:
        return max((p.peak_mib for p in self.processes if p.role == role), default=float("nan"))

    def check(self) -> CommandRun:
        """This run, or ``RuntimeError`` with its stderr if it failed."""
        if self.returncode != 0:
            raise RuntimeError(f"{' '.join(self.argv)} exited with status {self.returncode}:\n"
                               f"{self.stderr_tail}")
        return self


def run_measured(argv: list[str], *, cwd: Path, env: dict[str, str],
                 poll_s: float = 0.1) -> CommandRun:
    """Run ``argv`` to completion, polling its process tree's memory every ``poll_s``."""
    log_path = cwd / f"stderr-{time.monotonic_ns()}.log"
    peaks: dict[int, ProcessPeak] = {}
    with open(log_path, "wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=stderr)
        while True:
            _sample(proc.pid, peaks)
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(poll_s)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
    return CommandRun(argv, wall, proc.returncode, sorted(peaks.values(), key=lambda p: p.pid),
                      tail)


def wall_time(argv: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    """Seconds ``argv`` takes, start to exit, output discarded; fails if it fails."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _sample(root: int, peaks: dict[int, ProcessPeak]) -> None:
    for pid in _tree(root):
        if not _executed(pid):
            continue
        hwm = _hwm_kib(pid)
        if hwm is None:
            continue
        old = peaks.get(pid)
        role = old.role if old else ("main" if pid == root else _role(pid))
        cpu = _cpu_s(pid)
        peaks[pid] = ProcessPeak(pid, role, max(hwm / _MIB, old.peak_mib if old else 0.0),
                                 cpu if cpu is not None else (old.cpu_s if old else 0.0))


def _tree(root: int) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(_children(pid))
    return out


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            found.extend(int(c) for c in text.split())
    except OSError:
        pass
    return found


def _executed(pid: int) -> bool:
    """False while ``pid`` still runs its parent's program (forked, not yet exec'd, nor
    named as a helper worker of the sweep: those are forked on purpose and never exec)."""
    try:
        ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        return (Path(f"/proc/{pid}/cmdline").read_bytes()
                != Path(f"/proc/{ppid}/cmdline").read_bytes()) or _is_helper(pid)
    except (OSError, IndexError):
        return False


def _is_helper(pid: int) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return comm.startswith(HELPER_PREFIX)


def _hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (its own, not its children's)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _role(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"
    if _is_helper(pid):
        return "helper"
    if "spawn_main" in cmdline:
        return "child"
    if "resource_tracker" in cmdline:
        return "resource tracker"
    return Path(cmdline.split(" ", 1)[0]).name or "?"
