"""Trials left RUNNING by processes that died: found, failed, their runs closed.

A running trial writes its heartbeat (a user attribute) at most every ``HEARTBEAT_S``
seconds. A RUNNING trial is stale when its process is gone (same machine: its pid no longer
exists, so a killed worker's trial is failed at the next look) or its heartbeat, or its start
if it has none yet, is older than ``GRACE_S`` (any machine; their clocks must agree to well
within ``GRACE_S``). A stale trial gets the ``interrupted`` attribute, which keeps it out of
the study's count of finished trials, then becomes FAIL; its tracked run is closed as
interrupted.

Optuna's own heartbeat (``RDBStorage(heartbeat_interval=..., grace_period=...)`` and
``optuna.storages.fail_stale_trials``) is not used, for RDB storages either:
``fail_stale_trials`` makes the trial FAIL itself, after which Optuna refuses any attribute
(``UpdateFinishedTrialError``), so the trial would count as finished and its run close as
failed; a trial whose process died before its first heartbeat stays RUNNING for good; every
``study.ask()`` on such a storage warns that the heartbeat is meant for ``optimize()``; and
the journal storage and the pid check would still need this module.
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


def is_stale(trial: optuna.trial.FrozenTrial, now: float) -> bool:
    """True if the process running ``trial`` is known dead or silent for ``GRACE_S``."""
    host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return True
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    return now - float(beat if beat is not None else started) > GRACE_S


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
        try:
            optuna.trial.Trial(study, t._trial_id).set_user_attr(INTERRUPTED_ATTR, "worker died")
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another process (or this one's watcher thread) reaped it first
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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
