"""Optuna storage set-up when several processes open one fresh database at once."""

from __future__ import annotations

import os
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

PROCESSES = 6
# Each process imports everything first and says so; all of them then open the storage as
# soon as their standard input closes (one event, seen by all at once), and run one trial of
# a study they create or load.
OPEN_AT_ONCE = """
import sys
import optuna
from sweeps.storage.backends import open_storage
print("ready", flush=True)
sys.stdin.read()
storage = open_storage(sys.argv[1])
study = optuna.create_study(storage=storage, study_name="race", load_if_exists=True)
trial = study.ask()
study.tell(trial, float(sys.argv[2]))
"""


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    """The next line ``proc`` writes to stdout; fails at ``deadline`` (``time.monotonic``)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
    assert ready, f"process {proc.pid} wrote no line in time"
    return proc.stdout.readline()


def _schema(path: Path) -> list[tuple[str, str, str, str | None]]:
    """Every table and index of a SQLite file, with the SQL that created it."""
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                                 "WHERE name NOT LIKE 'sqlite_%'"))


def _versions(path: Path) -> list[tuple[str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchall()


@pytest.mark.parametrize("attempt", range(4))
def test_processes_opening_one_fresh_sqlite_database_at_once_share_one_whole_schema(
        tmp_path: Path, attempt: int) -> None:
    raced = tmp_path / "optuna.db"
    read, write = os.pipe()
    try:
        procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, f"sqlite:///{raced}",
                                   str(i)], stdin=read, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for i in range(PROCESSES)]
    finally:
        os.close(read)
    try:
        try:
            deadline = time.monotonic() + 120
            assert [_read_line(p, deadline) for p in procs] == ["ready\n"] * PROCESSES
            assert not raced.exists()  # nobody has touched the database yet
        finally:
            os.close(write)  # go
        errors = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [p.returncode for p in procs] == [0] * PROCESSES, "\n".join(e for e in errors if e)

    # What one process alone makes of a fresh file: Optuna's own set-up, no race.
    alone = tmp_path / "alone.db"
    optuna.storages.RDBStorage(f"sqlite:///{alone}").engine.dispose()
    assert _schema(raced) == _schema(alone)
    assert _versions(raced) == _versions(alone)
    assert len(_versions(raced)) == 1
    storage = optuna.storages.RDBStorage(f"sqlite:///{raced}", skip_table_creation=True)
    try:
        assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["race"]
        trials = optuna.load_study(study_name="race", storage=storage).trials
    finally:
        storage.engine.dispose()
    assert [t.number for t in trials] == list(range(PROCESSES))
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    assert sorted(t.value for t in trials) == [float(i) for i in range(PROCESSES)]
