"""Stopping ``python -m sweeps.ui`` stops its ``mlflow server`` and the server's workers: a
signal to the launcher alone (not to its process group) leaves none of them running, and the
launcher exits 128 + the signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.servers import HOST, free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[3]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from ``/proc/<pid>/task/*/children``."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = [int(k) for k in children.read_text().split()]
        except OSError:  # the task ended while we read
            continue
        for kid in kids:
            found += [kid, *descendants(kid)]
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, waiting to be reaped, has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex((HOST, port)) == 0


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A real MLflow SQLite store with one experiment in it."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(tracking_uri=uri).create_experiment("launcher")
    return uri


@pytest.fixture
def launched(tracking_uri: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``python -m sweeps.ui`` on a free port, answering; killed (with whatever it started)
    after the test if it is still there."""
    port = free_port()
    log_file = tmp_path / "ui.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweeps.ui", "--tracking-uri", tracking_uri,
             "--port", str(port)],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    started: list[int] = []
    try:
        wait_healthy(f"http://{HOST}:{port}", proc, log_file)
        started += descendants(proc.pid)
        yield proc, port
    finally:
        for pid in [proc.pid, *started, *descendants(proc.pid)]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_launcher_stops_the_server_and_its_workers(
        launched: tuple[subprocess.Popen[bytes], int], sig: signal.Signals) -> None:
    proc, port = launched
    server = descendants(proc.pid)
    assert len(server) >= 2, f"expected mlflow server and its uvicorn worker, found {server}"

    os.kill(proc.pid, sig)  # the launcher alone, as `kill` or a supervisor sends it

    status = proc.wait(timeout=60)
    assert [pid for pid in server if alive(pid)] == []
    assert not answers(port)
    assert status == 128 + sig
