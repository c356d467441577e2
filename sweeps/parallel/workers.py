"""``--workers N``: this process and N-1 helper processes sharing one study and one parent run.

Started by the command (``python -m sweeps.run``), the helpers are forked at the very start,
once the libraries are imported and before any store, thread or device is opened: each
inherits the imports (which a spawned process would pay for again) and nothing that
cannot cross a fork. Where ``main`` is called by another program, which may hold open
database connections a fork would share, they are spawned instead. They wait while this process
creates the study and the MLflow parent run (two processes that both create a study on an
empty database race on table creation), then each opens its own connections and runs trials
until the study holds its target, as this process does, torch in each on the intra-op
threads this process decided for every worker (``sweeps.parallel.threads``). A helper that
dies is noticed at once by a watcher thread here: its trial is failed and its run closed,
and the others fill the gap.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sweeps.parallel.threads import use_threads

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from sweeps.study.config import SweepConfig
    from sweeps.study.sweep import Sweep

__all__ = ["Helpers", "PROCESS_NAME"]

log = logging.getLogger(__name__)

_WATCH_S = 0.2  # how often the watcher looks for a helper that ended
PROCESS_NAME = "sweeps-worker-{}"  # what ps and top show for helper i (15 characters at most)


def _import_libraries(work: Callable[[SweepConfig], None]) -> None:
    """What every worker needs, imported once, before the fork: the libraries, and the
    modules of ``work`` and of the sweep it runs."""
    import mlflow  # noqa: F401
    import optuna  # noqa: F401
    import torch  # noqa: F401

    from sweeps.batched import trials  # noqa: F401
    from sweeps.study import sweep  # noqa: F401

    importlib.import_module(work.__module__)


def _name_process(name: str) -> None:
    """Best effort: the name ``ps`` and ``top`` show (Linux), so a helper can be told apart."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name)
    except OSError:
        pass


def _helper(work: Callable[[SweepConfig], None], config: SweepConfig, index: int, go: Any,
            parent: int, threads: int) -> None:
    import torch  # noqa: F401  (loaded first, so that its thread counts can be set)

    from sweeps.checks import resolve_device
    from sweeps.parallel.signals import Terminated, exit_status, terminate_as_exception

    use_threads(threads)
    _name_process(PROCESS_NAME.format(index))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process forwards Ctrl-C as SIGTERM
    with terminate_as_exception():
        try:
            while not go.wait(_WATCH_S):  # the main process creates the study and parent run
                if os.getppid() != parent:
                    return
        except Terminated:  # cancelled: the sweep could not be opened
            return
        # each process its own sampler stream, or their first random trials coincide, and
        # its own GPU where there are several; the main process draws the plots at the end
        try:
            work(config.with_overrides({"seed": config.seed + index, "plots": False,
                                        "device": resolve_device(config.device, index)}))
        except Terminated as exc:
            raise SystemExit(exit_status(exc)) from None


class Helpers:
    """``n`` helper processes, started when this is created (before the sweep opens anything),
    each to call ``work(config)`` (open the sweep, run its trials, close its runs) with torch
    running ``threads`` intra-op threads. They start once ``run_with`` runs this process's
    sweep beside them; ``cancel`` ends helpers whose sweep could not be opened."""

    def __init__(self, config: SweepConfig, n: int, work: Callable[[SweepConfig], None], *,
                 fork: bool, threads: int) -> None:
        if fork:
            _import_libraries(work)
            sys.stdout.flush()  # a forked child flushes what its buffers hold when it ends
            sys.stderr.flush()
        context = (multiprocessing.get_context("fork") if fork
                   else multiprocessing.get_context("spawn"))
        self._go = context.Event()
        self._processes: list[BaseProcess] = [
            context.Process(target=_helper,
                            args=(work, config, i, self._go, os.getpid(), threads),
                            name=f"worker-{i}")
            for i in range(1, n + 1)]
        for process in self._processes:
            process.start()
        self._sweep: Sweep | None = None
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="helper-watcher", daemon=True)

    def run_with(self, sweep: Sweep) -> None:
        """Run ``sweep`` in this process while the helpers run theirs, then what helpers that
        died left undone. An exception here (Ctrl-C, a failure) terminates the helpers, and
        each fails its running trial."""
        self._sweep = sweep
        with self:
            sweep.run()
        sweep.run()

    def cancel(self) -> None:
        """End helpers that were never attached (the sweep could not be opened)."""
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            process.join()

    def __enter__(self) -> Helpers:
        self._go.set()
        self._watcher.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        from sweeps.study.reaper import reap_stale

        try:
            if kind is not None:
                for process in self._processes:
                    if process.is_alive():
                        process.terminate()
            for process in self._processes:
                process.join(timeout=None if kind is None else 30)
        finally:
            self._stop.set()
            self._watcher.join()
            assert self._sweep is not None
            reap_stale(self._sweep.study, self._sweep.tracker)

    def _watch(self) -> None:
        """Reap the trial of a helper as soon as it ends with a non-zero status."""
        from sweeps.study.reaper import reap_stale

        assert self._sweep is not None
        pending = list(self._processes)
        while pending and not self._stop.wait(_WATCH_S):
            for process in [p for p in pending if p.exitcode is not None]:
                pending.remove(process)
                if process.exitcode == 0:
                    continue
                log.warning("%s ended with status %d", process.name, process.exitcode)
                try:
                    reap_stale(self._sweep.study, self._sweep.tracker)
                except Exception as exc:  # the main thread's next batch reaps it instead
                    log.warning("could not fail the trial of %s yet: %s", process.name, exc)
