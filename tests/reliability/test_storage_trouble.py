"""Issue 5, scenario 8: storage trouble. A locked SQLite file, a journal lock file left by a
dead process, a journal whose last line was torn by a crash, a disk that fills up mid-sweep.
Each is recovered from or reported clearly, and no finished trial is lost."""

from __future__ import annotations

import contextlib
import errno
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
    Processes,
    counted,
    journal_url,
    load_trials,
    one_line,
    poll_trials,
    snapshot,
    sqlite_exclusive_lock,
    sqlite_url,
    wait_until,
)

pytestmark = pytest.mark.slow

SHORT = ["--epochs", "100", *ADAM, *SEQUENTIAL]


def test_locked_sqlite_files_are_waited_for(workdir: Path, processes: Processes) -> None:
    """Another process holds ``BEGIN EXCLUSIVE`` on the study's and the tracking store's
    SQLite files while a sweep starts: the sweep waits and then goes on."""
    args = ["--study", "locked", *SHORT]
    first = processes.run(workdir, *args, "--n-trials", "1")
    assert first.rc == 0, first.stderr[-3000:]
    url = sqlite_url(workdir)
    before = [snapshot(t) for t in load_trials(url, "locked")]

    with contextlib.ExitStack() as locks:
        for database in ("optuna.db", "mlflow.db"):
            locks.enter_context(sqlite_exclusive_lock(workdir / "mlruns" / database))
        sweep = processes.start(workdir, *args, "--n-trials", "2")
        time.sleep(8)  # start-up takes ~5 s: the sweep reaches the locked files meanwhile
        assert sweep.poll() is None, sweep.stderr[-3000:]  # waiting, not failed
        released = time.time()

    assert sweep.wait(120) == 0, sweep.stderr[-3000:]
    trials = load_trials(url, "locked")
    assert [snapshot(t) for t in trials[:1]] == before
    assert len(counted(trials)) == 2
    started = trials[1].datetime_start
    assert started is not None and started.timestamp() >= released - 1


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


def test_a_journal_with_a_torn_last_line_is_recovered_or_refused_clearly(
        workdir: Path, processes: Processes) -> None:
    url = journal_url(workdir)
    args = ["--study", "torn", "--storage", url, *SHORT]
    first = processes.run(workdir, *args, "--n-trials", "2")
    assert first.rc == 0, first.stderr[-3000:]
    before = [snapshot(t) for t in load_trials(url, "torn")]
    with open(workdir / "mlruns" / "optuna.journal", "ab") as journal:
        journal.write(b'{"op_code":6,"worker_id":"dead","trial_id":1,"user_attr')

    done = processes.run(workdir, *args, "--n-trials", "3")

    if done.rc != 0:  # refused: one clear line, and the journal no worse than before
        assert done.rc == 2 and "journal" in one_line(done.stderr)
    trials = load_trials(url, "torn")
    assert [snapshot(t) for t in trials[:2]] == before
    if done.rc == 0:
        assert len(counted(trials)) == 3


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
            wait_until(lambda: counted(poll_trials(url, "full")), 120, sweep, "finished trial")
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
