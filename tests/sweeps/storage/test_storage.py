"""Optuna storage set-up when several processes open one fresh database at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

OPEN_AT = """
import sys, time
from sweeps.storage.backends import open_storage
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
open_storage(sys.argv[1])
"""


@pytest.mark.parametrize("attempt", range(4))
def test_processes_opening_one_fresh_sqlite_database_at_once_all_succeed(
        tmp_path: Path, attempt: int) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    start = time.time() + 3.0  # after every process has imported optuna
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT, url, str(start)],
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, "\n".join(e for e in errors if e)
