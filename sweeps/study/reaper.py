"""Trials left RUNNING by processes that died: found by heartbeat, failed, runs closed.

Optuna's own heartbeat exists only for RDB storages and is checked only inside
``optimize()``; this one works for every storage. A running trial writes its heartbeat (a
user attribute) at most every ``HEARTBEAT_S`` seconds. A RUNNING trial is stale when its
process is gone (same machine: the pid no longer exists) or its heartbeat is older than
``GRACE_S`` (any machine). Stale trials become FAIL with the ``interrupted`` attribute, which
keeps them out of the study's count of finished trials, and their MLflow runs become KILLED.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

    from tracking.study_run import StudyTracker

__all__ = ["GRACE_S", "HEARTBEAT_S", "INTERRUPTED_ATTR", "Heartbeat", "reap_stale"]

log = logging.getLogger(__name__)

INTERRUPTED_ATTR = "interrupted"  # killed, signalled or surplus: counted against nothing
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


def reap_stale(study: optuna.Study, tracker: StudyTracker, *,
               close_orphan_runs: bool = False) -> list[int]:
    """Fail the stale RUNNING trials of ``study``; returns their numbers.

    With ``close_orphan_runs``, also end MLflow runs still RUNNING whose trial has ended
    (a process killed between Optuna's tell and MLflow's set_terminated).
    """
    import optuna
    from optuna.trial import TrialState

    from tracking.study_run import RUN_STATUS

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
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id:
            tracker.client.set_tag(run_id, "state", "interrupted")
            tracker.client.set_terminated(run_id, status=RUN_STATUS["interrupted"])
        log.warning("trial %d was left RUNNING by a dead process; marked FAIL", t.number)
        reaped.append(t.number)
    if close_orphan_runs:
        _close_orphan_runs(study, tracker)
    return reaped


def _close_orphan_runs(study: optuna.Study, tracker: StudyTracker) -> None:
    from optuna.trial import TrialState

    from tracking.study_run import RUN_STATUS

    trials = {str(t.number): t for t in study.get_trials(deepcopy=False)}
    client = tracker.client
    for run in client.search_runs([tracker.experiment_id],
                                  filter_string="attributes.status = 'RUNNING'",
                                  max_results=50000):
        trial = trials.get(run.data.tags.get("trial_number", ""))
        if trial is None or trial.state == TrialState.RUNNING:
            continue
        if INTERRUPTED_ATTR in trial.user_attrs:
            status = RUN_STATUS["interrupted"]
        else:
            status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}.get(
                trial.state, "FAILED")
        client.set_tag(run.info.run_id, "state", trial.state.name.lower())
        client.set_terminated(run.info.run_id, status=status)


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
