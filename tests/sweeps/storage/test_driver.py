"""A database URL whose Python driver is not installed is refused as such (not blamed on the
database), with the extra that installs it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from sweeps.cli import run


@pytest.mark.skipif(importlib.util.find_spec("pg8000") is not None,
                    reason="pg8000 is installed here: the driver is not missing")
def test_a_missing_driver_is_named_with_the_extra_that_installs_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    url = "postgresql+pg8000://user:secret@127.0.0.1:1/lrsweep"
    assert run.main(["--storage", url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == ("sweeps.run: error: storage: 'postgresql+pg8000://user:***@127.0.0.1:1/"
                   "lrsweep' is not valid; install its Python driver 'pg8000' (for PostgreSQL: "
                   "pip install -e '.[postgres]')\n")
    assert list(tmp_path.iterdir()) == []
