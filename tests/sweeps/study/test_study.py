"""A study end to end: the seed reproduced through MLflow, resume by re-running, export and
re-run of the best trial."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mlflow import MlflowClient

from sweeps.cli import export, run, train
from sweeps.study.results import counted_trials, load_study


def test_seed_case_read_back_from_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert train.main(["--optimizer", "sgd", "--lr", "0.01", "--epochs", "10000"]) == 0
    out = capsys.readouterr().out
    assert "mean shares: 24.5626 -> 24.5633" in out
    run_id = re.search(r"mlflow run: (\w+)", out).group(1)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    first = {m: client.get_metric_history(run_id, m)[0] for m in
             ("grad_abs_mean", "update_abs_mean", "loss")}
    assert first["grad_abs_mean"].step == 0
    assert f"{first['grad_abs_mean'].value:.4e}" == "1.1838e-05"
    assert f"{first['update_abs_mean'].value:.4e}" == "1.1838e-07"
    assert f"{first['loss'].value:.4e}" == "2.3874e-03"
    metrics = client.get_run(run_id).data.metrics
    assert f"{metrics['final_loss']:.4e}" == "2.3871e-03"
    means = sorted(client.get_metric_history(run_id, "param_mean.shares"), key=lambda m: m.step)
    assert [m.step for m in means] == [0, 10000]
    assert [f"{m.value:.4f}" for m in means] == ["24.5626", "24.5633"]
    assert len(client.get_metric_history(run_id, "update_ratio")) == 10000


def _sweep(*extra: str) -> int:
    return run.main(["--study", "resume", "--epochs", "40", "--optimizers", "adam,sgd",
                     "--schedulers", "none", "--quiet", *extra])


def test_rerunning_the_same_command_continues_the_study(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _sweep("--n-trials", "3") == 0
    assert _sweep("--n-trials", "3") == 0
    study = load_study("sqlite:///mlruns/optuna.db", "resume")
    assert len(counted_trials(study)) == 3 and len(study.trials) == 3
    assert _sweep("--n-trials", "5") == 0
    study = load_study("sqlite:///mlruns/optuna.db", "resume")
    assert len(counted_trials(study)) == 5
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    assert sum("mlflow.parentRunId" not in r.data.tags for r in runs) == 1
    assert len(runs) == 6


def test_exported_best_trial_reruns_to_the_same_value(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    monkeypatch.chdir(tmp_path)
    assert _sweep("--n-trials", "4", "--export", "best.json") == 0
    exported = json.loads(Path("best.json").read_text())
    assert exported["objective"]["name"] == "rebalance" and exported["epochs"] == 40
    assert export.main(["--study", "resume", "--out", "again.json"]) == 0
    assert json.loads(Path("again.json").read_text()) == exported
    capsys.readouterr()
    assert train.main(["--params", "best.json", "--no-track"]) == 0
    out = capsys.readouterr().out
    rel = float(re.search(r"relative difference (\S+)", out).group(1))
    assert rel <= 1e-9
    spec = train.spec_from_export("best.json")
    from objectives import build
    from sweeps.training.loop import train as train_loop

    objective = build(spec.objective, spec.objective_args)
    result = train_loop(objective, spec.hp, spec.epochs or 0)
    assert result.final_loss == pytest.approx(exported["value"], rel=1e-9)


def test_top_k_export_lists_trials_best_first(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _sweep("--n-trials", "4", "--pruner", "none") == 0
    assert export.main(["--study", "resume", "--out", "top.json", "--top", "3"]) == 0
    doc = json.loads(Path("top.json").read_text())
    values = [t["value"] for t in doc["trials"]]
    assert len(values) == 3 and values == sorted(values)


def test_lr_range_auto_centres_the_intervals_and_starts_at_the_suggestions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["--study", "auto", "--epochs", "40", "--optimizers", "adam,sgd", "--schedulers",
            "none", "--lr-range", "auto", "--batch", "1", "--quiet"]
    assert run.main([*args, "--n-trials", "3"]) == 0
    study = load_study("sqlite:///mlruns/optuna.db", "auto")
    ranges = study.user_attrs["lr_ranges"]
    assert set(ranges) == {"adam", "sgd"}
    for low, high in ranges.values():
        assert high / low == pytest.approx(10**3)  # AUTO_DECADES either side
    centres = {name: (low * high) ** 0.5 for name, (low, high) in ranges.items()}
    first = sorted(study.trials, key=lambda t: t.number)[:2]
    assert {t.params["optimizer"] for t in first} == {"adam", "sgd"}
    for t in first:  # the range test's suggestions are tried first
        name = t.params["optimizer"]
        assert t.params[f"lr_{name}"] == pytest.approx(centres[name], rel=1e-9)
    assert ranges["sgd"][0] > 1.0  # the seed's SGD needs a far larger lr than 0.01
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    parent = study.user_attrs["mlflow_parent_run_id"]
    logged = {a.path for a in client.list_artifacts(parent, "lr_range")}
    assert logged == {f"lr_range/{n}.{ext}" for n in ("adam", "sgd") for ext in ("png", "csv")}
    assert run.main([*args, "--n-trials", "5"]) == 0  # resumed: same ranges, nothing enqueued
    study = load_study("sqlite:///mlruns/optuna.db", "auto")
    assert study.user_attrs["lr_ranges"] == ranges
    assert len(counted_trials(study)) == 5 and len(study.trials) == 5


def test_workers_with_plots_finish_and_the_parent_run_has_the_plots(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run.main(["--study", "w", "--workers", "2", "--n-trials", "4", "--epochs", "100",
                     "--optimizers", "adam", "--schedulers", "none", "--pruner", "none",
                     "--quiet"]) == 0
    study = load_study("journal:///mlruns/optuna.journal", "w")  # the default for --workers
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("w").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    plots = {a.path for a in client.list_artifacts(parents[0].info.run_id, "plots")}
    assert "plots/loss_curves.png" in plots
    assert len(counted_trials(study)) == 4
