"""A data-set objective's test split: scored once at the end of each complete trial, with the
trial's own BatchNorm statistics, as ``test_loss`` and ``test_<metric>``; never a study's
metric."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from mlflow import MlflowClient
from torch import nn
from torch.func import functional_call

from objectives import ObjectiveError
from objectives.dataset import DatasetObjective, accuracy
from sweeps.cli import run
from sweeps.study.results import RUN_ID_ATTR
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from tests.minibatch_objectives import HELD_OUT, data, held_out_test, model, tiny


def test_the_test_split_is_scored_in_eval_mode_with_the_trials_own_statistics() -> None:
    objective = held_out_test()
    result = train(objective, Hyperparams("adam", 0.01), 4)
    assert result.params is not None and result.buffers is not None
    scores = objective.evaluate(result.params, result.buffers)
    net = model().eval()
    inputs, targets = data(2, HELD_OUT)
    with torch.no_grad():
        outputs = functional_call(net, {**result.buffers, **result.params}, (inputs,))
    assert scores == {"test_loss": float(nn.functional.cross_entropy(outputs, targets)),
                      "test_accuracy": float(accuracy(outputs, targets))}
    initial = objective.evaluate(result.params)  # no buffers: the module's initial ones
    assert initial["test_loss"] != scores["test_loss"]


def test_without_test_data_nothing_is_scored() -> None:
    objective = tiny()
    assert objective.evaluate(objective.init_params(torch.device("cpu"))) == {}


def test_test_rows_unlike_the_training_rows_are_refused() -> None:
    inputs, targets = data(2, HELD_OUT)
    with pytest.raises(ObjectiveError) as caught:
        DatasetObjective(model(), data(0), batch_size=8, loss_fn=nn.functional.cross_entropy,
                         test=(inputs[:, :3], targets))
    assert (caught.value.field, caught.value.allowed) == (
        "test inputs", "use rows of shape (4,), as in training")


def test_a_sweep_logs_the_test_scores_of_its_complete_trials_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage, tracking = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    common = ["--objective", "tests.minibatch_objectives:held_out_test", "--study", "t", "--storage",
              storage, "--tracking-uri", tracking, "--quiet", "--no-plots"]
    assert run.main([*common, "--metric", "test_loss"]) == 2  # never a study's metric
    assert run.main([*common, "--n-trials", "6", "--lr-min", "1e-3", "--lr-max", "1",
                     "--no-prune-stalled"]) == 0  # 37 rows learn slowly: none is hopeless
    study = optuna.load_study(study_name="t", storage=storage)
    client = MlflowClient(tracking_uri=tracking)
    logged = {t.state.name: set() for t in study.trials}
    for trial in study.trials:
        metrics = client.get_run(trial.user_attrs[RUN_ID_ATTR]).data.metrics
        logged[trial.state.name].add(frozenset(k for k in metrics if k.startswith("test_")))
    assert logged["COMPLETE"] == {frozenset({"test_loss", "test_accuracy"})}
    assert logged["PRUNED"] == {frozenset()}
