"""Issue 5, scenario 7: the tracking server is unreachable before the sweep (refused, or
accepting and never answering), or lost in the middle of it."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from optuna.trial import FrozenTrial, TrialState

from tests.servers import MlflowServer, free_port

from .helpers import (
    ADAM,
    INTERRUPTED,
    SEQUENTIAL,
    Processes,
    assert_study_and_runs_agree,
    counted,
    load_study,
    load_trials,
    mid_training,
    mlflow_runs,
    one_line,
    paused_when,
    poll_trials,
    snapshot,
    sqlite_url,
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
def test_tracking_server_lost_mid_trial_stops_the_sweep_with_one_line_and_resumes(
        make_mlflow_server: Callable[..., MlflowServer], tmp_path: Path, workdir: Path,
        processes: Processes) -> None:
    """The server dies while a trial trains: that trial finishes and its result is told to
    Optuna, then the sweep stops (exit 1) with one line naming the server and how to resume,
    leaving nothing RUNNING in the study. The same command, once the server is back at the
    same URL, reaches the target, and the study and the runs agree one to one."""
    backend = f"sqlite:///{tmp_path / 'server.db'}"  # outlives the server process
    server = make_mlflow_server(backend)
    epochs = 20000
    args = ["--study", "lost", "--epochs", str(epochs), "--log-every", "20", "--n-trials", "4",
            *ADAM, *SEQUENTIAL, "--tracking-uri", server.url]
    url = sqlite_url(workdir)
    training = mid_training(url, "lost", epochs)

    def training_after_a_finished_trial() -> FrozenTrial | None:
        return training() if counted(poll_trials(url, "lost")) else None

    sweep = processes.start(workdir, *args)
    # The server is stopped while the sweep is stopped in the middle of a trial, so that it
    # is lost during that trial (not between two trials) whatever the machine's speed.
    with paused_when(sweep, training_after_a_finished_trial, 180,
                     "a trial in the first half of its epochs after a finished one") as in_hand:
        before = {t.number: snapshot(t) for t in counted(load_trials(url, "lost"))}
        parent_id = load_study(url, "lost").user_attrs["mlflow_parent_run_id"]
        server.stop()

    try:
        status: int | None = sweep.wait(60)
    except subprocess.TimeoutExpired:
        status = None
    trials = {t.number: t for t in load_trials(url, "lost")}
    assert {n: snapshot(trials[n]) for n in before} == before  # nothing finished was lost
    assert status == 1, f"sweeps.run ended with {status} (None: still running after 60 s)"
    line = one_line(sweep.stderr)
    assert line.startswith(f"sweeps.run: error: tracking-uri {server.url} failed (")
    assert line.endswith("run the same command again to resume")
    assert sorted(trials) == [*sorted(before), in_hand.number]  # no trial after it
    finished = trials[in_hand.number]  # trained to its end: its result is in Optuna
    assert finished.state == TrialState.COMPLETE and finished.value is not None
    assert max(finished.intermediate_values) == epochs - 1
    before[in_hand.number] = snapshot(finished)

    again = make_mlflow_server(backend, port=server.port)  # back at the same URL
    assert again.url == server.url
    done = processes.run(workdir, *args)

    assert done.rc == 0, done.stderr[-3000:]
    trials = {t.number: t for t in load_trials(url, "lost")}
    assert {n: snapshot(trials[n]) for n in before} == before
    assert len(counted(list(trials.values()))) == 4
    runs = mlflow_runs(again.url, "lost")
    assert_study_and_runs_agree(list(trials.values()), runs, parent_id=parent_id)
    assert runs.parents[0].info.status == "FINISHED"


class CuttableProxy:
    """An HTTP proxy on 127.0.0.1 in front of an MLflow server. Once ``cut_at`` holds for a
    request (``cut_at(method, path, body)``), that request and every later one get their
    connection closed without an answer, as from a server that has died; ``restore()``
    forwards everything again."""

    _HOP = frozenset({"connection", "content-length", "date", "host", "server",
                      "transfer-encoding"})

    def __init__(self, upstream: str, cut_at: Callable[[str, str, bytes], bool]) -> None:
        self.upstream = upstream
        self.cut_at = cut_at
        self.cut = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.cut.is_set() or proxy.cut_at(self.command, self.path, body):
                    proxy.cut.set()
                    self.close_connection = True
                    return  # no answer at all
                headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy._HOP}
                request = urllib.request.Request(proxy.upstream + self.path, data=body or None,
                                                 headers=headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=60) as reply:
                        status, answer, payload = reply.status, reply.headers, reply.read()
                except urllib.error.HTTPError as exc:
                    status, answer, payload = exc.code, exc.headers, exc.read()
                self.send_response(status)
                for key, value in answer.items():
                    if key.lower() not in proxy._HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def restore(self) -> None:
        self.cut_at = lambda method, path, body: False
        self.cut.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _creates_run(name: str) -> Callable[[str, str, bytes], bool]:
    """Whether a request creates the MLflow run called ``name``."""

    def match(method: str, path: str, body: bytes) -> bool:
        return path.endswith("/runs/create") and json.loads(body).get("run_name") == name

    return match


@pytest.mark.slow
def test_tracking_server_lost_between_trials_stops_the_sweep_with_one_line_and_resumes(
        make_mlflow_server: Callable[..., MlflowServer], tmp_path: Path, workdir: Path,
        processes: Processes) -> None:
    """The server is lost exactly when the sweep creates the run of its second trial: the
    sweep stops (exit 1) with the one line that says how to resume, the first trial is
    kept, the second is failed and not counted, nothing stays RUNNING; the same command,
    once the server answers again, reaches the target."""
    server = make_mlflow_server(f"sqlite:///{tmp_path / 'server.db'}")
    proxy = CuttableProxy(server.url, _creates_run("trial-1"))
    try:
        args = ["--study", "between", "--epochs", "3000", "--n-trials", "3", *ADAM,
                *SEQUENTIAL, "--tracking-uri", proxy.url]
        url = sqlite_url(workdir)

        done = processes.run(workdir, *args, timeout=120)

        assert proxy.cut.is_set()
        trials = load_trials(url, "between")
        assert done.rc == 1, done.stderr[-3000:]
        line = one_line(done.stderr)
        assert line.startswith(f"sweeps.run: error: tracking-uri {proxy.url} failed (")
        assert line.endswith("run the same command again to resume")
        assert [t.number for t in trials] == [0, 1]
        assert trials[0].state == TrialState.COMPLETE
        assert trials[1].state == TrialState.FAIL and INTERRUPTED in trials[1].user_attrs
        assert "mlflow_run_id" not in trials[1].user_attrs
        kept = snapshot(trials[0])

        proxy.restore()
        again = processes.run(workdir, *args)

        assert again.rc == 0, again.stderr[-3000:]
        trials = load_trials(url, "between")
        assert snapshot(trials[0]) == kept
        assert len(counted(trials)) == 3
        runs = mlflow_runs(server.url, "between")
        assert_study_and_runs_agree(trials, runs)
        assert runs.parents[0].info.status == "FINISHED"
    finally:
        proxy.close()
