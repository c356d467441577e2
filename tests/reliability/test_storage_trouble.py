"""Issue 5, scenario 8: storage trouble. A locked SQLite file, a journal lock file left by a
dead process, a journal whose last line was torn by a crash, a disk that fills up mid-sweep.
Each is recovered from or reported clearly, and no finished trial is lost."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from .helpers import (
    ADAM,
    SEQUENTIAL,
    Proc,
    Processes,
    counted,
    journal_url,
    load_trials,
    one_line,
    open_files,
    paused_when,
    poll_trials,
    snapshot,
    sqlite_exclusive_lock,
    sqlite_url,
    wait_until,
)

pytestmark = pytest.mark.slow

SHORT = ["--epochs", "100", *ADAM, *SEQUENTIAL]
SQLITE_DEFAULT_BUSY_S = 5.0  # how long Python's sqlite3 waits on a locked database by default


def _still_running_after(proc: Proc, seconds: float) -> None:
    """``proc`` has not ended ``seconds`` from now (a bounded wait for its end, which must not
    come)."""
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(seconds)


def test_locked_sqlite_files_are_waited_for(workdir: Path, processes: Processes) -> None:
    """Another process holds ``BEGIN EXCLUSIVE`` on the study's and the tracking store's
    SQLite files while a sweep starts. The sweep reaches the study's file first and waits
    there, longer than SQLite's default busy timeout, without going further; released, it
    goes on to the tracking store and waits there the same; released, it runs its trial."""
    args = ["--study", "locked", *SHORT]
    first = processes.run(workdir, *args, "--n-trials", "1")
    assert first.rc == 0, first.stderr[-3000:]
    url = sqlite_url(workdir)
    before = [snapshot(t) for t in load_trials(url, "locked")]
    study_db = (workdir / "mlruns" / "optuna.db").resolve()
    tracking_db = (workdir / "mlruns" / "mlflow.db").resolve()

    with contextlib.ExitStack() as locks:
        study_lock = locks.enter_context(contextlib.ExitStack())
        tracking_lock = locks.enter_context(contextlib.ExitStack())
        study_lock.enter_context(sqlite_exclusive_lock(study_db))
        tracking_lock.enter_context(sqlite_exclusive_lock(tracking_db))
        sweep = processes.start(workdir, *args, "--n-trials", "2")

        wait_until(lambda: study_db in open_files(sweep.pid), 120, sweep,
                   "the sweep opening the locked study")
        _still_running_after(sweep, SQLITE_DEFAULT_BUSY_S + 1)
        assert tracking_db not in open_files(sweep.pid)  # it waits at the study
        study_lock.close()

        wait_until(lambda: tracking_db in open_files(sweep.pid), 60, sweep,
                   "the sweep opening the locked tracking store")
        _still_running_after(sweep, SQLITE_DEFAULT_BUSY_S + 1)
        assert len(load_trials(url, "locked")) == 1  # no trial started meanwhile
        released = time.time()
        tracking_lock.close()

    assert sweep.wait(120) == 0, sweep.stderr[-3000:]
    trials = load_trials(url, "locked")
    assert [snapshot(t) for t in trials[:1]] == before
    assert len(counted(trials)) == 2
    started = trials[1].datetime_start
    assert started is not None and started.timestamp() >= released - 1


def test_a_tracking_store_locked_for_longer_than_mlflow_waits_stops_with_one_line(
        workdir: Path, processes: Processes) -> None:
    """The tracking store stays locked until the sweep gives up on it: one line naming the
    store and how to resume, exit 1, the study as it was and nothing left RUNNING."""
    args = ["--study", "locked", *SHORT]
    first = processes.run(workdir, *args, "--n-trials", "1")
    assert first.rc == 0, first.stderr[-3000:]
    url = sqlite_url(workdir)
    before = [snapshot(t) for t in load_trials(url, "locked")]

    with sqlite_exclusive_lock(workdir / "mlruns" / "mlflow.db"):
        done = processes.run(workdir, *args, "--n-trials", "2", timeout=120)

    assert done.rc == 1, done.stderr[-3000:]
    line = one_line(done.stderr)
    assert line.startswith("sweeps.run: error: tracking-uri ") and "locked" in line
    assert line.endswith("run the same command again to resume")
    trials = load_trials(url, "locked")
    assert [snapshot(t) for t in trials[:1]] == before
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_a_stale_journal_lock_is_broken_and_the_sweep_goes_on(
        workdir: Path, processes: Processes) -> None:
    """Optuna's JournalFileBackend locks ``<journal>.lock`` (a symlink to the journal, see
    optuna/storages/journal/_file.py: JournalFileSymlinkLock); a process killed while holding
    it leaves it behind. Optuna breaks a lock unchanged for its 30 s grace period."""
    url = journal_url(workdir)
    args = ["--study", "stale", "--storage", url, *SHORT]
    first = processes.run(workdir, *args, "--n-trials", "1")
    assert first.rc == 0, first.stderr[-3000:]
    before = [snapshot(t) for t in load_trials(url, "stale")]
    journal = workdir / "mlruns" / "optuna.journal"
    lock = journal.with_name(journal.name + ".lock")
    os.symlink(journal, lock)  # what the dead holder left

    done = processes.run(workdir, *args, "--n-trials", "2", timeout=120)

    assert done.rc == 0, done.stderr[-3000:]
    assert "lock" in done.stderr  # the wait was reported
    assert done.seconds < 60
    trials = load_trials(url, "stale")
    assert [snapshot(t) for t in trials[:1]] == before
    assert len(counted(trials)) == 2
    assert not lock.is_symlink()


def test_a_journal_with_a_torn_last_line_is_cut_and_the_sweep_goes_on(
        workdir: Path, processes: Processes) -> None:
    """A writer killed mid-append leaves a last line without its end. The next sweep cuts it
    (under the journal's lock), says so in one line, and goes on: the records before it are
    kept byte for byte, and every line of the journal is whole again."""
    url = journal_url(workdir)
    args = ["--study", "torn", "--storage", url, *SHORT]
    first = processes.run(workdir, *args, "--n-trials", "2")
    assert first.rc == 0, first.stderr[-3000:]
    before = [snapshot(t) for t in load_trials(url, "torn")]
    journal = workdir / "mlruns" / "optuna.journal"
    whole = journal.read_bytes()
    torn = b'{"op_code":6,"worker_id":"dead","trial_id":1,"user_attr'
    with open(journal, "ab") as out:
        out.write(torn)

    done = processes.run(workdir, *args, "--n-trials", "3")

    assert done.rc == 0, done.stderr[-3000:]
    line = one_line(done.stderr)
    assert line.startswith(f"{journal.resolve()}: ") and "torn" in line
    assert f"({len(torn)} bytes)" in line
    data = journal.read_bytes()
    assert data.startswith(whole) and torn not in data
    assert data.endswith(b"\n") and all(json.loads(r) for r in data.splitlines())
    trials = load_trials(url, "torn")
    assert [snapshot(t) for t in trials[:2]] == before
    assert len(counted(trials)) == len(trials) == 3


# --------------------------------------------------------------------------- full disk


@dataclass
class FullDisk:
    before: dict[int, Any]  # snapshots of the trials finished when the disk filled
    status: int | None  # exit status of the sweep that ran out of space (None: hung)
    stderr: str
    resumed: Any  # the same command once space was freed
    after: dict[int, Any]  # the study's trials after that


def _fill(path: Path) -> None:
    """Write ``path`` until the file system is full."""
    block = b"\0" * (1 << 16)
    with open(path, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(block)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullDisk]:
    """A sweep on a 32 MB tmpfs; once a trial has finished the test fills the disk, the sweep
    runs out of space; then the space is freed and the same command runs again."""
    disk = tmp_path_factory.mktemp("disk")
    procs = Processes(tmp_path_factory.mktemp("logs"))
    args = ["--study", "full", "--epochs", "3000", "--n-trials", "4", *ADAM, *SEQUENTIAL]
    url = sqlite_url(disk)
    with _tmpfs(disk, "32m"):
        try:
            sweep = procs.start(disk, *args)
            # filled while the sweep is stopped: its next write is the first to find no space
            with paused_when(sweep, lambda: counted(poll_trials(url, "full")), 120,
                             "a finished trial"):
                _fill(disk / "filler")
                before = {t.number: snapshot(t) for t in counted(load_trials(url, "full"))}
            try:
                status: int | None = sweep.wait(120)
            except subprocess.TimeoutExpired:
                status = None
                procs.close()
            (disk / "filler").unlink()
            resumed = procs.run(disk, *args)
            after = {t.number: t for t in load_trials(url, "full")}
            yield FullDisk(before, status, sweep.stderr, resumed, after)
        finally:
            procs.close()


def test_a_full_disk_loses_no_finished_trial(full_disk: FullDisk) -> None:
    assert full_disk.status is not None, "the sweep hung on the full disk"
    assert full_disk.resumed.rc == 0, full_disk.resumed.stderr[-3000:]
    after = full_disk.after
    assert {n: snapshot(after[n]) for n in full_disk.before} == full_disk.before
    assert len(counted(list(after.values()))) == 4
    assert not [t for t in after.values() if t.state == TrialState.RUNNING]


def test_a_full_disk_is_reported_in_one_clear_line(full_disk: FullDisk) -> None:
    assert full_disk.status not in (None, 0)
    line = one_line(full_disk.stderr)
    assert "full" in line or "space" in line
