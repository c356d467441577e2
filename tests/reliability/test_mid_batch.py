"""A study store that fails while a batch of trials trains stops the sweep with one line; the
trials that finished before are kept, and the same command resumes once the store is back.
(An error of the store is not the trials' failure: none of the batch is told FAIL for it.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.servers import PostgresCluster

from .helpers import (
    ADAM,
    Processes,
    counted,
    load_trials,
    one_line,
    paused_when,
    poll_trials,
    snapshot,
)

pytestmark = pytest.mark.slow

BATCH = 4
EPOCHS = 20_000  # a batch of 4 trains for a few seconds


@pytest.fixture()
def cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own: the test stops its server mid-sweep."""
    if not PostgresCluster.available():
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    with PostgresCluster() as own:
        yield own


def test_a_study_store_lost_mid_batch_stops_the_sweep_and_the_same_command_resumes(
        cluster: PostgresCluster, workdir: Path, processes: Processes) -> None:
    url = cluster.create_database("midbatch")
    args = ["--study", "mid", "--storage", url, "--epochs", str(EPOCHS), "--batch",
            str(BATCH), "--n-trials", str(2 * BATCH), *ADAM]
    sweep = processes.start(workdir, *args)

    def second_batch_training() -> list[int] | None:
        trials = poll_trials(url, "mid")
        running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        if len(counted(trials)) == BATCH and len(running) == BATCH:
            return [t.number for t in counted(trials)]
        return None

    with paused_when(sweep, second_batch_training, 120, "the second batch training"):
        before = [snapshot(t) for t in counted(load_trials(url, "mid"))]
        cluster.pause()
    rc = sweep.wait(120)

    assert rc == 1, sweep.stderr[-3000:]
    line = one_line(sweep.stderr)
    assert line.startswith("sweeps.run: error: writing the study or the runs failed "
                           "(OperationalError: "), line
    assert line.endswith("run the same command again to resume")

    cluster.resume()
    trials = load_trials(url, "mid")
    assert [snapshot(t) for t in counted(trials)] == before  # none of the batch counted
    resumed = processes.run(workdir, *args)
    assert resumed.rc == 0, resumed.stderr[-3000:]
    trials = load_trials(url, "mid")
    assert [snapshot(t) for t in counted(trials)][:BATCH] == before
    assert len(counted(trials)) == 2 * BATCH
    assert not [t for t in trials if t.state == TrialState.RUNNING]
