"""``save_all``: a sweep's figures written two at a time (a forked copy writes every second
one), byte for byte as one at a time, and all of them whatever happens to the copy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from tracking.plots import figures
from tracking.plots.figures import figure, save_all

REPO = Path(__file__).resolve().parents[2]


def four(tmp_path: Path, folder: str) -> list[tuple[object, Path]]:
    out = []
    for i in range(4):
        fig, ax = figure()
        ax.plot(np.arange(10.0), np.arange(10.0) ** (i + 1), label=f"power {i + 1}")
        ax.legend()
        (tmp_path / folder).mkdir(exist_ok=True)
        out.append((fig, tmp_path / folder / f"f{i}.png"))
    return out


_TWO_WAYS = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from tests.tracking.test_save_all import four
    from tracking.plots.figures import save, save_all

    out = Path(sys.argv[1])
    forks = []
    real_fork = os.fork

    def counted():
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    os.fork = counted
    one = [save(fig, path) for fig, path in four(out, "one")]
    two = save_all(four(out, "two"))
    print(len(forks), [a.read_bytes() == b.read_bytes() for a, b in zip(one, two)])
""")


def test_figures_written_two_at_a_time_equal_those_written_one_at_a_time(
        tmp_path: Path) -> None:
    """In a fresh process (one thread, as the sweep's plots process): one fork, and every
    PNG equal byte for byte to the one written one at a time."""
    done = subprocess.run([sys.executable, "-c", _TWO_WAYS, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split(maxsplit=1) == ["1", "[True, True, True, True]\n"]


def test_what_the_copy_failed_to_write_is_written_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = os.getpid()
    real = figures.save

    def fails_in_the_copy(fig: object, path: Path) -> Path:
        if os.getpid() != parent:
            raise OSError("disk full")
        return real(fig, path)  # type: ignore[arg-type]

    monkeypatch.setattr(figures, "save", fails_in_the_copy)
    paths = save_all(four(tmp_path, "all"))  # type: ignore[arg-type]
    assert all(p.stat().st_size > 0 for p in paths)


def test_a_process_with_other_threads_does_not_fork(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise AssertionError("forked with another thread running")

    monkeypatch.setattr(os, "fork", no_fork)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        paths = save_all(four(tmp_path, "threads"))  # type: ignore[arg-type]
    finally:
        stop.set()
        other.join()
    assert all(p.stat().st_size > 0 for p in paths)
