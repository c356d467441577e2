"""Torch's intra-op threads in every process of a sweep: a worker its share of the cores.

Left alone, torch in each process runs as many intra-op threads as the machine has physical
cores; with ``--workers N``, N such processes (beside their metric writers) oversubscribe
the cores and the thread pools spin against each other (the README has the figures). The
rule, in ``decide_threads``:

1. ``--threads N`` (the ``threads`` config key) wins;
2. else a user's own choice is kept: ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set in the
   environment, or a ``torch.set_num_threads`` call made before the API was called;
3. else each worker process gets ``max(1, cores // workers)``, the cores being those this
   process may run on (its CPU affinity), at most torch's own default.

Worker processes take that count, with one inter-op thread; the plots process, which does no
heavy torch math, takes ``AUXILIARY`` (the metric writer never imports torch). ``use_threads``
applies a count in a process at its start, before any torch work.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AUXILIARY", "TorchThreads", "available_cores", "decide_threads", "physical_cores",
           "use_threads", "worker_threads"]

AUXILIARY = 1  # intra-op threads of a process that does no heavy torch math
USER_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # torch reads these for its default


@dataclass(frozen=True)
class TorchThreads:
    """The intra-op threads of each worker process, and where the count comes from."""

    count: int  # torch intra-op threads of each worker process
    source: str  # "--threads", a variable of USER_VARIABLES, "torch.set_num_threads", or
    # "C cores / N workers" (the share)

    @property
    def user_choice(self) -> bool:
        """The user's own setting, already in effect here: this process is left as it is."""
        return self.source in (*USER_VARIABLES, "torch.set_num_threads")

    def describe(self) -> str:
        return f"torch: {self.count} intra-op thread(s) per worker process ({self.source})"


def decide_threads(workers: int, threads: int | None = None, *, cores: int, default: int,
                   current: int, environ: Mapping[str, str]) -> TorchThreads:
    """The intra-op threads of each of ``workers`` worker processes: ``threads`` if given;
    else the user's choice, if ``environ`` sets one of ``USER_VARIABLES`` or torch's
    ``current`` count differs from its ``default`` (torch.set_num_threads was called); else
    a share of the ``cores`` (no more than ``default``), at least one."""
    if threads is not None:
        return TorchThreads(threads, "--threads")
    for name in USER_VARIABLES:
        if environ.get(name, "").strip():
            return TorchThreads(current, name)
    if current != default:
        return TorchThreads(current, "torch.set_num_threads")
    usable = min(cores, default)
    return TorchThreads(max(1, usable // workers),
                        f"{usable} cores / {workers} worker{'s' if workers > 1 else ''}")


def worker_threads(workers: int, threads: int | None = None, *,
                   fresh: bool = False) -> TorchThreads:
    """``decide_threads`` for this process. ``fresh``: no code but the project's has run in it
    (``python -m sweeps.run``), so torch's count is still its default."""
    import torch

    current = torch.get_num_threads()
    return decide_threads(workers, threads, cores=available_cores(),
                          default=current if fresh else physical_cores(), current=current,
                          environ=os.environ)


def use_threads(count: int, *, own: bool = True) -> None:
    """Torch in this process runs ``count`` intra-op threads. ``own``: a process the project
    started, at its start: also one inter-op thread, and ``OMP_NUM_THREADS`` set, so that a
    torch (or a BLAS library) loaded later in the process starts with ``count`` as well.
    Otherwise (a program that called the API) only the intra-op count changes."""
    if own:
        os.environ["OMP_NUM_THREADS"] = str(count)
    torch = sys.modules.get("torch")
    if torch is None:
        return
    torch.set_num_threads(count)
    if own:
        with contextlib.suppress(RuntimeError):  # inter-op work ran already: it keeps its pool
            torch.set_num_interop_threads(1)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def physical_cores() -> int:
    """Torch's intra-op count where no variable of ``USER_VARIABLES`` is set, counted as torch
    counts it: the machine's physical cores, all of them whatever the affinity (from Linux's CPU
    topology; elsewhere the logical cores)."""
    try:
        cores = {path.read_text().strip() for path in
                 Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology/thread_siblings_list")}
    except OSError:
        cores = set()
    return len(cores) or os.cpu_count() or 1
