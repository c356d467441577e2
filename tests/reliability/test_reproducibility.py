"""Issue 5, scenario 10: a single-worker sweep with a fixed ``--seed``, run twice in two fresh
folders, samples the same parameters and reaches the same losses."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from .helpers import (
    NO_PLOTS,
    Processes,
    load_study,
    load_trials,
    mlflow_runs,
    sqlite_url,
    tracking_url,
)

ARGS = ["--study", "repro", "--seed", "7", "--n-trials", "6", "--epochs", "300",
        "--optimizers", "adam,sgd,momentum", "--schedulers", "none,cosine", "--quiet",
        *NO_PLOTS]


def _trials_table(where: Path) -> pd.DataFrame:
    """The parent run's ``trials.csv`` artifact, without the run ids (unique per run) and
    the wall times."""
    parent = load_study(sqlite_url(where), "repro").user_attrs["mlflow_parent_run_id"]
    runs = mlflow_runs(tracking_url(where), "repro")
    local = runs.client.download_artifacts(parent, "trials.csv", str(where))
    return pd.read_csv(local).drop(columns=["mlflow_run_id", "trial_seconds"])


def _loss_histories(where: Path) -> dict[int, list[float]]:
    runs = mlflow_runs(tracking_url(where), "repro")
    out = {}
    for run in runs.children:
        history = runs.client.get_metric_history(run.info.run_id, "loss")
        out[int(run.data.tags["trial_number"])] = [m.value for m in
                                                   sorted(history, key=lambda m: m.step)]
    return out


@pytest.mark.slow
def test_a_seeded_sweep_run_twice_samples_and_reaches_the_same(
        tmp_path: Path, processes: Processes) -> None:
    homes = [tmp_path / "first", tmp_path / "second"]
    for home in homes:
        home.mkdir()
    sweeps = [processes.start(home, *ARGS) for home in homes]  # side by side, independent
    for sweep in sweeps:
        assert sweep.wait(180) == 0, sweep.stderr[-3000:]

    first, second = (load_trials(sqlite_url(home), "repro") for home in homes)
    assert len(first) == len(second) == 6
    for a, b in zip(first, second, strict=True):
        assert (a.number, a.state, a.params, a.value) == (b.number, b.state, b.params, b.value)
        assert a.intermediate_values == b.intermediate_values
        for key in ("hparams", "final_loss", "best_loss", "epochs_run"):
            assert a.user_attrs.get(key) == b.user_attrs.get(key), key
    assert len({str(t.params) for t in first}) == 6  # six different configurations
    pd.testing.assert_frame_equal(_trials_table(homes[0]), _trials_table(homes[1]))
    assert _loss_histories(homes[0]) == _loss_histories(homes[1])
