"""Stalled-trial pruning: which trajectories it stops, when, and a sweep of the seed case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweeps.cli import run
from sweeps.diagnostics.stall import StallWatch
from sweeps.study.results import load_study
from sweeps.training.stats import EPOCH_METRICS, EpochStats
from tests.sweeps.training.test_verdicts import converged_with_noise, geometric, stats

EPOCHS = 500
CHUNK = 25
WINDOW = 100


def first_stop(loss: np.ndarray, ratio: float | np.ndarray, epochs: int = EPOCHS,
               verdict: str = "stalled") -> int | None:
    """Epochs run when the watch asks to stop, chunk by chunk (its verdict ``verdict``), or
    None if it never does."""
    whole = stats(loss, ratio)
    watch = StallWatch(epochs, window=WINDOW)
    for start in range(0, len(whole), CHUNK):
        chunk = EpochStats(start, *(getattr(whole, m)[start:start + CHUNK]
                                    for m in EPOCH_METRICS))
        if watch.on_chunk(chunk):
            assert watch.verdict is not None and watch.verdict.name == verdict
            return start + len(chunk)
    assert watch.verdict is None
    return None


@pytest.mark.parametrize(("name", "loss", "ratio", "stops_at"), [
    ("seed-like", np.linspace(2.3874e-3, 2.3873e-3, EPOCHS), 4.8e-9, WINDOW),
    ("nothing moves", np.full(EPOCHS, 0.5), 0.0, WINDOW),
    # converged: at the end its parameters stand still too, but the loss fell 1e30x
    ("converged", converged_with_noise(), np.r_[np.full(100, 1e-3), np.zeros(EPOCHS - 100)],
     None),
    ("healthy", geometric(1.0, 1e-6, EPOCHS), 1e-3, None),
    ("slow but moving", np.linspace(1.0, 0.5, EPOCHS), 1e-7, None),
    # stalled at first, then it moves: stopped only if the window was enough to tell
    ("late start", np.r_[np.full(50, 1.0), geometric(1.0, 1e-3, EPOCHS - 50)],
     np.r_[np.full(50, 1e-9), np.full(EPOCHS - 50, 1e-3)], None),
])
def test_stall_watch_stops_only_trials_stalled_since_their_start(
        name: str, loss: np.ndarray, ratio: float | np.ndarray, stops_at: int | None) -> None:
    assert first_stop(loss, ratio) == stops_at, name


def test_the_watch_stops_trials_that_do_not_learn_or_that_diverge() -> None:
    """A loss that stays at its start while the parameters move (flat: no lr fixes it) stops
    at a third of the run, a loss that grows a millionfold (diverging, still finite) at the
    window; a loss that starts flat and falls within the window does not."""
    noise = np.random.default_rng(0).normal(0.0, 1e-3, EPOCHS)
    assert first_stop(2.3 + noise, 1e-3, verdict="flat") == 175  # the chunk past 500 // 3
    assert first_stop(geometric(1.0, 1e30, EPOCHS), 1e-2, verdict="diverged") == WINDOW
    late = np.r_[np.full(40, 2.3), geometric(2.3, 1e-3, EPOCHS - 40)]
    assert first_stop(late, 1e-3) is None


def test_stall_watch_never_stops_at_the_last_chunk() -> None:
    # nothing left to save: the trial completes, with its final value in the study
    assert first_stop(np.full(WINDOW, 0.5), 0.0, epochs=WINDOW) is None


def _seed_sweep(*extra: str) -> int:
    return run.main(["--study", "seed", "--optimizers", "sgd", "--schedulers", "none",
                     "--lr-min", "0.001", "--lr-max", "0.01", "--epochs", "2000",
                     "--n-trials", "3", "--pruner", "none", "--quiet", "--no-plots", *extra])


def test_a_sweep_stops_the_seed_case_early_with_the_stalled_verdict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _seed_sweep() == 0
    trials = load_study("sqlite:///mlruns/optuna.db", "seed").trials
    assert [t.state for t in trials] == [TrialState.PRUNED] * 3
    assert {t.user_attrs["epochs_run"] for t in trials} == {200}  # a tenth of 2,000 epochs
    assert {t.user_attrs["pruned_by"] for t in trials} == {"stalled"}
    assert all("update ratio" in t.user_attrs["pruned_reason"] for t in trials)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    for t in trials:
        mlflow_run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert mlflow_run.info.status == "KILLED"
        assert mlflow_run.data.tags["verdict"] == "stalled"
        assert mlflow_run.data.tags["pruned_by"] == "stalled"
        assert mlflow_run.data.tags["pruned_reason"] == t.user_attrs["pruned_reason"]
        assert len(client.get_metric_history(mlflow_run.info.run_id, "loss")) == 200


def test_no_prune_stalled_runs_the_seed_case_to_the_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _seed_sweep("--no-prune-stalled") == 0
    trials = load_study("sqlite:///mlruns/optuna.db", "seed").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert {t.user_attrs["epochs_run"] for t in trials} == {2000}
    assert all(t.user_attrs["verdict"] == "stalled" for t in trials)
    assert not any("pruned_by" in t.user_attrs for t in trials)
