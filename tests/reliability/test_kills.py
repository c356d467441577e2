"""Issue 5, scenarios 1-3: a sweep killed with SIGKILL, SIGINT or SIGTERM, and a worker of
several killed with SIGKILL. Whatever ends a process, the study reaches its target with the
same command, finished trials stay as they were, and nothing stays RUNNING."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from optuna.trial import FrozenTrial, TrialState

from .helpers import (
    ADAM,
    INTERRUPTED,
    SEQUENTIAL,
    Processes,
    assert_study_and_runs_agree,
    children,
    counted,
    journal_url,
    load_study,
    load_trials,
    mid_training,
    mlflow_runs,
    paused_when,
    poll_trials,
    running_with_progress,
    snapshot,
    sqlite_url,
    tracking_url,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("setup", ["local", "recipe"])
def test_kill_9_mid_trial_then_the_same_command_reaches_the_target(
        setup: str, workdir: Path, processes: Processes, request: pytest.FixtureRequest) -> None:
    """``recipe``: the README's multi-machine setup, PostgreSQL for the study and for a
    tracking server whose database takes the metrics directly (``--tracking-db``)."""
    args = ["--study", "k9", "--epochs", "3000", "--n-trials", "4", *ADAM, *SEQUENTIAL]
    url, tracking = sqlite_url(workdir), tracking_url(workdir)
    if setup == "recipe":
        postgres = request.getfixturevalue("postgres")
        tracking_db = postgres.create_database(f"k9_tracking_{uuid.uuid4().hex[:8]}")
        server = request.getfixturevalue("make_mlflow_server")(tracking_db)
        url, tracking = postgres.create_database(f"k9_study_{uuid.uuid4().hex[:8]}"), server.url
        args += ["--storage", url, "--tracking-uri", tracking, "--tracking-db", tracking_db]

    def finished_and_running() -> bool:
        trials = poll_trials(url, "k9")
        return bool(counted(trials)) and bool(running_with_progress(trials))

    sweep = processes.start(workdir, *args)
    wait_until(finished_and_running, 120, sweep, "finished trial beside a running one")
    sweep.signal(signal.SIGKILL)
    assert sweep.wait(30) == -signal.SIGKILL

    at_kill = load_trials(url, "k9")
    killed = [t for t in at_kill if t.state == TrialState.RUNNING]
    assert len(killed) == 1
    killed_run = killed[0].user_attrs["mlflow_run_id"]
    finished = {t.number: snapshot(t) for t in at_kill if t.state.is_finished()}
    assert finished

    done = processes.run(workdir, *args)
    assert done.rc == 0, done.stderr

    trials = load_trials(url, "k9")
    assert len(counted(trials)) == 4  # exactly the target
    by_number = {t.number: t for t in trials}
    assert {n: snapshot(by_number[n]) for n in finished} == finished  # untouched
    again = by_number[killed[0].number]
    assert again.state == TrialState.FAIL and INTERRUPTED in again.user_attrs
    assert again not in counted(trials)
    runs = mlflow_runs(tracking, "k9")
    assert runs.client.get_run(killed_run).info.status == "KILLED"
    assert_study_and_runs_agree(trials, runs)
    assert runs.parents[0].info.status == "FINISHED"


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_fails_the_trial_flushes_its_metrics_and_leaves_the_study_resumable(
        sig: signal.Signals, status: int, workdir: Path, processes: Processes) -> None:
    epochs = 20000
    args = ["--study", "sig", "--epochs", str(epochs), "--n-trials", "3", *ADAM, *SEQUENTIAL]
    url = sqlite_url(workdir)

    sweep = processes.start(workdir, *args)
    # The signal is sent while the sweep is stopped in the middle of a trial; the trial it
    # hits is the one the storage shows RUNNING at that moment, whatever its number.
    with paused_when(sweep, mid_training(url, "sig", epochs), 120,
                     "a running trial in the first half of its epochs") as running:
        reported = max(running.intermediate_values)  # an epoch whose metrics exist
        parent_id = load_study(url, "sig").user_attrs["mlflow_parent_run_id"]
        sweep.signal(sig)
    assert sweep.wait(60) == status, sweep.stderr[-3000:]
    assert "Traceback" not in sweep.stderr

    trials = load_trials(url, "sig")
    assert [t.number for t in trials if INTERRUPTED in t.user_attrs] == [running.number]
    hit = next(t for t in trials if t.number == running.number)
    assert hit.state == TrialState.FAIL
    assert [t.number for t in trials] == list(range(running.number + 1))  # none after it
    assert all(t.state == TrialState.COMPLETE for t in trials if t.number < hit.number)
    runs = mlflow_runs(tracking_url(workdir), "sig")
    run_id = hit.user_attrs["mlflow_run_id"]
    assert run_id == running.user_attrs["mlflow_run_id"]
    assert runs.client.get_run(run_id).info.status == "KILLED"
    history = runs.client.get_metric_history(run_id, "loss")
    assert len(history) >= max(hit.intermediate_values) + 1 >= reported + 1  # flushed
    assert sorted(m.step for m in history) == list(range(len(history)))
    assert [p.info.status for p in runs.parents] == ["KILLED"]
    assert runs.parents[0].info.run_id == parent_id

    done = processes.run(workdir, *args)
    assert done.rc == 0, done.stderr
    trials = load_trials(url, "sig")
    assert len(counted(trials)) == 3
    runs = mlflow_runs(tracking_url(workdir), "sig")
    assert_study_and_runs_agree(trials, runs, parent_id=parent_id)  # one parent, the same
    assert runs.parents[0].info.status == "FINISHED"


def test_kill_9_of_one_worker_fails_its_trial_and_the_others_reach_the_target(
        workdir: Path, processes: Processes) -> None:
    epochs = 10000
    args = ["--study", "w", "--workers", "2", "--epochs", str(epochs), "--n-trials", "10",
            *ADAM, *SEQUENTIAL]
    url = journal_url(workdir)  # the default storage of --workers > 1
    lock = workdir / "mlruns" / "optuna.journal.lock"  # held while a process appends

    def two_workers_busy() -> list:
        busy = running_with_progress(poll_trials(url, "w"))
        return busy if len({t.user_attrs["worker"] for t in busy}) == 2 else []

    def pid(trial: FrozenTrial) -> int:
        return int(trial.user_attrs["worker"].rpartition(":")[2])

    sweep = processes.start(workdir, *args)
    busy = wait_until(two_workers_busy, 150, sweep, "trial running in each of 2 workers")
    # the main process runs trials too; the victim is the helper process
    assert sorted(pid(t) == sweep.pid for t in busy) == [False, True]
    other = next(t for t in busy if pid(t) == sweep.pid)
    helper = next(pid(t) for t in busy if pid(t) != sweep.pid)
    assert helper in children(sweep.pid)
    # forked from the command (not spawned), and named for ps and top
    assert Path(f"/proc/{helper}/comm").read_text().strip() == "sweeps-worker-1"

    def helper_mid_training() -> FrozenTrial | None:
        """The helper's trial, while it trains and nobody holds the journal's lock (the
        helper is killed while it trains, not half way through writing the journal)."""
        if lock.is_symlink():
            return None
        mine = [t for t in running_with_progress(poll_trials(url, "w")) if pid(t) == helper]
        if len(mine) == 1 and max(mine[0].intermediate_values) < epochs // 2:
            return mine[0]
        return None

    with paused_when(sweep, helper_mid_training, 120, "the helper mid-trial",
                     pid=helper) as victim:
        os.kill(helper, signal.SIGKILL)
    killed_at = time.monotonic()

    def victim_failed() -> bool:
        trial = next(t for t in poll_trials(url, "w") if t.number == victim.number)
        return trial.state == TrialState.FAIL

    wait_until(victim_failed, 30, sweep, "failed trial of the dead worker")
    reaped_after = time.monotonic() - killed_at
    assert sweep.wait(180) == 0, sweep.stderr[-3000:]

    trials = load_trials(url, "w")
    by_number = {t.number: t for t in trials}
    dead = by_number[victim.number]
    assert dead.user_attrs[INTERRUPTED] and dead not in counted(trials)
    assert reaped_after < 15
    assert by_number[other.number].state == TrialState.COMPLETE  # the other worker went on
    assert len(counted(trials)) == 10
    runs = mlflow_runs(tracking_url(workdir), "w")
    assert runs.client.get_run(victim.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    assert_study_and_runs_agree(trials, runs)
    assert runs.parents[0].info.status == "FINISHED"
