"""What a sweep leaves in MLflow: one experiment, one parent run, one nested run per trial,
full per-epoch histories, true terminal states, and the parent's artifacts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow import MlflowClient

from sweeps.cli import export, run
from sweeps.study.results import load_study
from sweeps.training.stats import EPOCH_METRICS
from tracking.study_run import KIND_TAG, MODEL_TRAINING, StudyTracker

STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small sweep whose lr range reaches divergence, so some trials fail."""
    workdir = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        code = run.main(["--study", "layout", "--n-trials", "8", "--epochs", "120",
                         "--objective", "tests.toy_objectives:Quadratic",
                         "--optimizers", "sgd,adam", "--schedulers", "none,cosine",
                         "--lr-min", "1e-3", "--lr-max", "1e3", "--sampler", "random",
                         "--pruner", "none", "--no-prune-stalled", "--seed", "3", "--quiet"])
    assert code == 0
    return workdir


def _client(workdir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlruns/mlflow.db")


def _runs(client: MlflowClient) -> tuple[object, list, list]:
    experiment = client.get_experiment_by_name("layout")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return experiment, parents, children


def test_one_experiment_one_parent_and_a_child_per_trial(sweep_dir: Path) -> None:
    client = _client(sweep_dir)
    names = [e.name for e in client.search_experiments()]
    assert names.count("layout") == 1
    _, parents, children = _runs(client)
    assert len(parents) == 1
    study = load_study(f"sqlite:///{sweep_dir}/mlruns/optuna.db", "layout")
    trials = study.get_trials()
    assert len(children) == len(trials) == 8
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(c.info.run_name for c in children) == sorted(f"trial-{t.number}"
                                                                 for t in trials)
    assert parents[0].info.status == "FINISHED"


def test_the_experiment_opens_in_the_ui_as_model_training(sweep_dir: Path,
                                                          tmp_path: Path) -> None:
    """The study's experiment says it is model training (the UI's runs view, not its GenAI
    view); one created without the tag, by an earlier version, gets it when a tracker opens
    it."""
    client = _client(sweep_dir)
    assert client.get_experiment_by_name("layout").tags[KIND_TAG] == MODEL_TRAINING
    older = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = older.create_experiment("older")
    assert KIND_TAG not in older.get_experiment(experiment_id).tags
    tracker = StudyTracker(older, "older")
    try:
        assert tracker.experiment_id == experiment_id
        assert older.get_experiment(experiment_id).tags[KIND_TAG] == MODEL_TRAINING
    finally:
        tracker.close()


def test_terminal_states_match_optuna(sweep_dir: Path) -> None:
    client = _client(sweep_dir)
    _, _, children = _runs(client)
    study = load_study(f"sqlite:///{sweep_dir}/mlruns/optuna.db", "layout")
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in study.get_trials()}
    states = set()
    for child in children:
        trial = by_run[child.info.run_id]
        states.add(trial.state.name)
        assert child.info.status == STATUS[trial.state.name]
        assert child.data.tags["trial_number"] == str(trial.number)
        if trial.state.name == "FAIL":
            assert child.data.tags["failure_reason"].startswith("non-finite")
            assert int(child.data.tags["failure_epoch"]) == trial.user_attrs["failure_epoch"]
    assert {"COMPLETE", "FAIL"} <= states  # the lr range reaches divergence
    assert not any(c.info.status == "RUNNING" for c in children)


def test_every_trial_logs_each_metric_for_every_epoch_run(sweep_dir: Path) -> None:
    client = _client(sweep_dir)
    _, _, children = _runs(client)
    for child in children:
        epochs_run = int(child.data.metrics["epochs_run"])
        for metric in EPOCH_METRICS:
            history = client.get_metric_history(child.info.run_id, metric)
            assert sorted(m.step for m in history) == list(range(epochs_run)), metric
        params = child.data.params
        assert {"optimizer", "lr", "scheduler", "epochs", "objective", "seed"} <= set(params)
        assert float(params["log10_lr"]) == round(math.log10(float(params["lr"])), 4)
        assert params["epochs"] == "120"


def test_best_params_artifact_equals_export(sweep_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sweep_dir)
    assert export.main(["--study", "layout", "--out", "best.json"]) == 0
    exported = json.loads((sweep_dir / "best.json").read_text())
    client = _client(sweep_dir)
    _, parents, _ = _runs(client)
    local = client.download_artifacts(parents[0].info.run_id, "best_params.json",
                                      str(sweep_dir))
    assert json.loads(Path(local).read_text()) == exported
    csv = client.download_artifacts(parents[0].info.run_id, "trials.csv", str(sweep_dir))
    import pandas as pd

    table = pd.read_csv(csv)
    assert len(table) == 8 and table["final_loss"].min() == pytest.approx(exported["value"])


def test_export_writes_the_plots_next_to_the_file(sweep_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sweep_dir)
    assert export.main(["--study", "layout", "--out", "top.json", "--plots"]) == 0
    names = sorted(p.name for p in sweep_dir.glob("top.*.png"))
    assert names == ["top.loss_curves.png", "top.loss_vs_lr.png", "top.optimization_history.png",
                     "top.parallel_coordinates.png", "top.param_importances.png",
                     "top.update_ratio.png"]
    assert all((sweep_dir / n).read_bytes()[:4] == b"\x89PNG" for n in names)
    artifacts = _client(sweep_dir).list_artifacts(_runs(_client(sweep_dir))[1][0].info.run_id,
                                                  "plots")
    assert len(artifacts) == 6  # the sweep logged the same six on its parent run
