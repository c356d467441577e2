"""Trials left RUNNING by processes that died: found by heartbeat, failed, runs closed.

Optuna's own heartbeat exists only for RDB storages and is checked only inside
``optimize()``; this one works for every storage. A running trial writes its heartbeat (a
user attribute) at most every ``HEARTBEAT_S`` seconds. A RUNNING trial is stale when its
process is gone (same machine: the pid no longer exists) or its heartbeat is older than
``GRACE_S`` (any machine). Stale trials become FAIL with the ``interrupted`` attribute, which
keeps them out of the study's count of finished trials, and their tracked runs are closed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from sweeps.study.results import INTERRUPTED_ATTR, RUN_ID_ATTR

if TYPE_CHECKING:
    import optuna

    from sweeps.study.tracker import RunState, SweepTracker

__all__ = ["GRACE_S", "HEARTBEAT_S", "Heartbeat", "reap_stale"]

log = logging.getLogger(__name__)

HEARTBEAT_ATTR = "heartbeat"
HEARTBEAT_S = 5.0  # seconds between two heartbeats of a running trial
GRACE_S = 60.0  # a heartbeat older than this marks the trial's process as dead


class Heartbeat:
    """Writes the trial's heartbeat when the last one is older than ``HEARTBEAT_S``."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.last = 0.0

    def beat(self) -> None:
        now = time.time()
        if now - self.last >= HEARTBEAT_S:
            self.trial.set_user_attr(HEARTBEAT_ATTR, now)
            self.last = now


def is_stale(trial: optuna.trial.FrozenTrial, now: float, grace: float = GRACE_S) -> bool:
    """True if the process running ``trial`` is known dead or silent for ``grace`` seconds."""
    host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return True
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    return now - float(beat if beat is not None else started) > grace


def reap_stale(study: optuna.Study, tracker: SweepTracker, *,
               close_orphan_runs: bool = False) -> list[int]:
    """Fail the stale RUNNING trials of ``study``; returns their numbers.

    With ``close_orphan_runs``, also close runs still open whose trial has ended (a process
    killed between Optuna's tell and closing the run).
    """
    import optuna
    from optuna.trial import TrialState

    now = time.time()
    reaped = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(t, now):
            continue
        handle = optuna.trial.Trial(study, t._trial_id)
        handle.set_user_attr(INTERRUPTED_ATTR, "worker died")
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except ValueError:  # another worker reaped it first
            continue
        run_id = t.user_attrs.get(RUN_ID_ATTR)
        if run_id:
            tracker.end_run(run_id, "interrupted")
        log.warning("trial %d was left RUNNING by a dead process; marked FAIL", t.number)
        reaped.append(t.number)
    if close_orphan_runs:
        trials = {str(t.number): t for t in study.get_trials(deepcopy=False)}
        tracker.end_orphan_runs(lambda number: _run_state(trials.get(number)))
    return reaped


def _run_state(trial: optuna.trial.FrozenTrial | None) -> RunState | None:
    """How the run of ``trial`` ended (None: the trial is unknown or still running)."""
    from optuna.trial import TrialState

    if trial is None or trial.state == TrialState.RUNNING:
        return None
    if INTERRUPTED_ATTR in trial.user_attrs:
        return "interrupted"
    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(
        trial.state, "failed")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
