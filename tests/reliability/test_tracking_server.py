"""Issue 5, scenario 7: the tracking server is unreachable before the sweep (refused, or
accepting and never answering), or lost in the middle of it."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.servers import MlflowServer, free_port

from .helpers import (
    ADAM,
    SEQUENTIAL,
    Processes,
    counted,
    load_trials,
    one_line,
    poll_trials,
    snapshot,
    sqlite_url,
    wait_until,
)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:  # closed at teardown
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            conn.close()


def test_unreachable_tracking_server_fails_fast_with_one_line_before_any_trial(
        silent_server: str, workdir: Path, processes: Processes) -> None:
    """Refused: the preflight answers at once. Silent: it gives up after its own short
    timeout. Either way one line, exit 2, and nothing written."""
    args = ["--study", "pre", "--n-trials", "2", "--epochs", "50", *ADAM]
    refused_uri = f"http://127.0.0.1:{free_port()}"

    refused = processes.run(workdir, *args, "--tracking-uri", refused_uri, timeout=60)
    silent = processes.run(workdir, *args, "--tracking-uri", silent_uri := silent_server,
                           timeout=60)

    for done, uri in ((refused, refused_uri), (silent, silent_uri)):
        assert done.rc == 2
        line = one_line(done.stderr)
        assert line.startswith("sweeps.run: error: tracking-uri: ") and uri in line
    assert refused.seconds < 10
    # Both processes pay the same start-up (imports, objective); what the silent server
    # adds is the preflight's own wait.
    assert silent.seconds - refused.seconds < 10
    assert silent.seconds < 20
    assert list(workdir.iterdir()) == []


@pytest.mark.slow
def test_tracking_server_lost_mid_sweep_neither_hangs_nor_loses_optuna_results(
        make_mlflow_server: Callable[[str], MlflowServer], tmp_path: Path, workdir: Path,
        processes: Processes) -> None:
    server = make_mlflow_server(f"sqlite:///{tmp_path / 'server.db'}")
    args = ["--study", "lost", "--epochs", "3000", "--n-trials", "4", *ADAM, *SEQUENTIAL,
            "--tracking-uri", server.url]
    url = sqlite_url(workdir)

    sweep = processes.start(workdir, *args)
    wait_until(lambda: counted(poll_trials(url, "lost")), 120, sweep, "finished trial")
    server.stop()
    lost_at = time.monotonic()
    before = {t.number: snapshot(t) for t in counted(load_trials(url, "lost"))}

    try:
        status: int | None = sweep.wait(60)
    except subprocess.TimeoutExpired:
        status = None
    waited = time.monotonic() - lost_at
    if status is None:
        processes.close()

    trials = {t.number: t for t in load_trials(url, "lost")}
    assert {n: snapshot(trials[n]) for n in before} == before  # nothing finished was lost
    assert status is not None, f"sweeps.run still running {waited:.0f}s after the server died"
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]
    if status == 0:  # went on without MLflow: the study reached its target
        assert len(counted(list(trials.values()))) == 4
    else:  # stopped: says so, and how to resume
        assert "Traceback" not in sweep.stderr
        assert "resume" in sweep.stderr.lower() or "same command" in sweep.stderr.lower()
