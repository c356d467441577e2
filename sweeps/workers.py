"""``--workers N``: N processes on this machine sharing one study and one parent run.

The parent process creates the study and the MLflow parent run first (two workers that both
create a study on an empty database race on table creation), then starts the workers; each
attaches to both and runs trials until the study holds its target. A worker that dies is
noticed at once: its trial is failed and its run closed, and the others fill the gap.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from typing import TYPE_CHECKING

from .config import SweepConfig

if TYPE_CHECKING:
    from .study import Sweep

__all__ = ["run_workers"]

log = logging.getLogger(__name__)


def _worker(config: SweepConfig, index: int) -> None:
    from .cli import setup_logging
    from .signals import Terminated, exit_status, terminate_as_exception
    from .study import open_sweep

    setup_logging(True)  # the parent process shows progress and the summary
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards Ctrl-C as SIGTERM
    with terminate_as_exception():
        # each worker its own sampler stream, or their first random trials coincide; the
        # parent draws the plots at the end
        sweep = open_sweep(config.with_overrides({"seed": config.seed + index, "plots": False}))
        try:
            sweep.run()
        except Terminated as exc:
            sweep.tracker.close()
            raise SystemExit(exit_status(exc)) from None
        sweep.tracker.close()


def run_workers(sweep: Sweep, n: int) -> None:
    """Run ``n`` worker processes to completion; reap the trials of any that died."""
    from .reaper import reap_stale
    from .study import counted_trials

    if sweep.plotter is not None:  # the workers train every trial: the reference, here
        sweep.plotter.train_reference()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(sweep.config, i),
                                   name=f"worker-{i}")
                 for i in range(n)]
    for process in processes:
        process.start()
    pending = list(processes)
    last_poll = 0.0
    try:
        while pending:
            if time.monotonic() - last_poll > 2.0:  # the workers draw nothing themselves
                sweep.progress.set_done(len(counted_trials(sweep.study)))
                last_poll = time.monotonic()
            for process in list(pending):
                process.join(timeout=0.2)
                if process.exitcode is None:
                    continue
                pending.remove(process)
                if process.exitcode != 0:
                    log.warning("%s ended with status %d", process.name, process.exitcode)
                    reap_stale(sweep.study, sweep.tracker)
    except BaseException:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=30)
        raise
    finally:
        reap_stale(sweep.study, sweep.tracker)
