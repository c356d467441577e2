"""``--workers N``: this process and N-1 helper processes sharing one study and one parent run.

This process creates the study and the MLflow parent run first (two processes that both create
a study on an empty database race on table creation), starts the helpers, and runs trials
itself while they import and attach: a helper costs a few seconds of start-up, this process
none. Every process runs trials until the study holds its target. A helper that dies is
noticed at once by a watcher thread here: its trial is failed and its run closed, and the
others fill the gap.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from .config import SweepConfig

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from .study import Sweep

__all__ = ["Helpers"]

log = logging.getLogger(__name__)

_WATCH_S = 0.2  # how often the watcher looks for a helper that ended


def _helper(config: SweepConfig, index: int) -> None:
    from .cli import setup_logging
    from .signals import Terminated, exit_status, terminate_as_exception
    from .study import open_sweep

    setup_logging(True)  # the main process shows progress and the summary
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process forwards Ctrl-C as SIGTERM
    with terminate_as_exception():
        # each process its own sampler stream, or their first random trials coincide; the
        # main process draws the plots at the end
        sweep = open_sweep(config.with_overrides({"seed": config.seed + index, "plots": False}))
        try:
            sweep.run()
        except Terminated as exc:
            sweep.tracker.close()
            raise SystemExit(exit_status(exc)) from None
        sweep.tracker.close()


class Helpers:
    """``n`` helper processes for the duration of a ``with`` block in which this process runs
    trials of ``sweep`` too. Leaving the block normally waits for the helpers; leaving it by an
    exception (Ctrl-C, a failure) terminates them, and each fails its running trial."""

    def __init__(self, sweep: Sweep, n: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._sweep = sweep
        self._processes: list[BaseProcess] = [
            context.Process(target=_helper, args=(sweep.config, i), name=f"worker-{i}")
            for i in range(1, n + 1)]
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="helper-watcher", daemon=True)

    def __enter__(self) -> Helpers:
        for process in self._processes:
            process.start()
        self._watcher.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        from .reaper import reap_stale

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
            reap_stale(self._sweep.study, self._sweep.tracker)

    def _watch(self) -> None:
        """Reap the trial of a helper as soon as it ends with a non-zero status."""
        from .reaper import reap_stale

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
