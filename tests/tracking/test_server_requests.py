"""What a sweep asks of a tracking server, counted in the server's own access log: a fixed
few requests per trial (create the run, log its params, log its outcome, end it), none of them
a read-back of a run, and no run links printed on stdout."""

from __future__ import annotations

import re
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from sweeps.cli import run
from tests.servers import MlflowServer

TRIALS = 3
_REQUEST = re.compile(r'"(GET|POST|PUT) (/[^ ?"]*)[^"]* HTTP/1\.1"')


def _requests(server: MlflowServer) -> Counter[str]:
    """The requests the server has answered, as ``METHOD path``, once a marker request it
    answered last is in its log (its access log is written after each answer)."""
    marker = "/health?marker"
    with urllib.request.urlopen(server.url + marker, timeout=10) as reply:
        assert reply.status == 200
    deadline = time.monotonic() + 30
    while marker not in (text := server.log_file.read_text(errors="replace")):
        assert time.monotonic() < deadline, "the server did not log its last answer"
        time.sleep(0.05)  # the line follows the answer within moments
    lines = text[:text.index(marker)].splitlines()
    return Counter(f"{m[1]} {m[2]}" for line in lines if (m := _REQUEST.search(line))
                   and m[2] != "/health")


@pytest.mark.parametrize("direct", [True, False], ids=["tracking-db", "through-server"])
def test_each_trial_costs_four_requests_and_no_read_back(
        make_mlflow_server: Callable[..., MlflowServer], tmp_path: Path,
        capfd: pytest.CaptureFixture[str], direct: bool) -> None:
    database = f"sqlite:///{tmp_path / 'server.db'}"
    server = make_mlflow_server(database)
    extra = ["--tracking-db", database] if direct else ["--log-every", "1000"]

    code = run.main(["--study", "budget", "--n-trials", str(TRIALS), "--epochs", "20",
                     "--optimizers", "adam", "--schedulers", "none", "--pruner", "none",
                     "--no-plots", "--quiet", "--storage", f"sqlite:///{tmp_path}/optuna.db",
                     "--tracking-uri", server.url, *extra])

    assert code == 0
    requests = _requests(server)
    runs = TRIALS + 1  # the parent run too
    api = "/api/2.0/mlflow/runs"
    # no run read back, but the parent's once, by MLflow, for its artifacts' location
    assert requests[f"GET {api}/get"] == 1
    assert requests[f"POST {api}/create"] == runs
    assert requests[f"POST {api}/update"] == runs  # each run ended once
    # a trial: its params, then its outcome (metrics and tags); the parent: its params, the
    # stack's tags, the best trial; through the server, each trial's epochs (1 chunk of 20
    # epochs, every 1000th: epoch 0 only) in one more batch
    assert requests[f"POST {api}/log-batch"] == 2 * TRIALS + 3 + (0 if direct else TRIALS)
    assert "View run" not in capfd.readouterr().out
