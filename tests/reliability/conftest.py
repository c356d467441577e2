"""Fixtures of the reliability suite: processes that are always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Processes


@pytest.fixture
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    """Starts ``python -m ...`` commands; kills whatever is left of them after the test."""
    procs = Processes(tmp_path_factory.mktemp("logs"))
    try:
        yield procs
    finally:
        procs.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The folder a sweep runs in (its ``mlruns/`` goes here)."""
    where = tmp_path / "work"
    where.mkdir()
    return where
