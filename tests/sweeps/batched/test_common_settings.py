"""Weight decay for every optimizer, gradient clipping by norm, and the Adam family's betas
and eps: each stacked row follows its sequential run (mini-batch and full-batch), each
changes the run, and a sweep gives them to every trial that takes them (AdamW's weight decay
then not searched)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

import objectives
from sweeps.batched import batchable, train_batch
from sweeps.cli import run
from sweeps.optim import OPTIMIZERS
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from tests.minibatch_objectives import tiny
from tests.sweeps.batched.test_batched import assert_same as assert_same_full_batch
from tests.sweeps.batched.test_batched_minibatch import assert_same, stacked_net

LR = {"sgd": 0.3, "momentum": 0.1, "nesterov": 0.1, "adam": 0.01, "adamw": 0.01,
      "rmsprop": 0.003, "adagrad": 0.05}
SETTINGS = [{"weight_decay": 0.05}, {"grad_clip": 0.3}, {"weight_decay": 0.05, "grad_clip": 0.3}]
ADAM = {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6}


def rows(settings: dict[str, float]) -> list[Hyperparams]:
    momentum = {"momentum": 0.9}
    return [Hyperparams(name, lr, "cosine", {**settings, **(
        momentum if name in ("momentum", "nesterov", "rmsprop") else {}), **(
        ADAM if name in ("adam", "adamw") else {})}) for name, lr in LR.items()]


@pytest.mark.parametrize("settings", SETTINGS)
def test_every_optimizer_follows_its_sequential_run_in_mini_batches(
        settings: dict[str, float]) -> None:
    objective = stacked_net(dropout=0.3)  # BatchNorm and dropout, no bias before BatchNorm
    hps = rows(settings)
    assert all(batchable(hp) for hp in hps)
    for hp, result in zip(hps, train_batch(objective, hps, 4), strict=True):
        assert_same(result, train(objective, hp, 4))


@pytest.mark.parametrize("settings", SETTINGS)
def test_every_optimizer_follows_its_sequential_run_on_a_full_batch(
        settings: dict[str, float]) -> None:
    objective = objectives.build("tests.toy_objectives:Quadratic")
    hps = rows(settings)
    for hp, result in zip(hps, train_batch(objective, hps, 30), strict=True):
        assert_same_full_batch(result, train(objective, hp, 30))


@pytest.mark.parametrize(("optimizer", "settings"), [
    *(("sgd", s) for s in SETTINGS), *(("adam", {k: v}) for k, v in ADAM.items())])
def test_each_setting_changes_the_run(optimizer: str, settings: dict[str, float]) -> None:
    objective = tiny()
    plain = train(objective, Hyperparams(optimizer, 0.3), 3).final_loss
    assert train(objective, Hyperparams(optimizer, 0.3, "none", settings), 3).final_loss != plain


def test_a_sweep_gives_them_to_every_trial(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    common = ["--objective", "tests.minibatch_objectives:tiny", "--n-trials", "6", "--epochs",
              "2", "--study", "wd", "--storage", f"sqlite:///{tmp_path}/optuna.db",
              "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--lr-min", "1e-3",
              "--lr-max", "0.1", "--quiet", "--no-plots"]
    assert run.main([*common, "--weight-decay", "-1"]) == 2
    assert run.main([*common, "--grad-clip", "0"]) == 2
    assert run.main([*common, "--adam-beta2", "1"]) == 2
    assert run.main([*common, "--adam-eps", "0"]) == 2
    assert run.main([*common, "--optimizers", "adamw,sgd", "--weight-decay", "1e-3",
                     "--grad-clip", "2", "--adam-beta1", "0.8", "--adam-eps", "1e-6"]) == 0
    trials = optuna.load_study(study_name="wd", storage=f"sqlite:///{tmp_path}/optuna.db").trials
    assert {t.params["optimizer"] for t in trials} == {"adamw", "sgd"}
    for trial in trials:
        hparams = trial.user_attrs["hparams"]
        assert (hparams["weight_decay"], hparams["grad_clip"]) == (1e-3, 2.0)
        assert "weight_decay" not in trial.params  # fixed, not searched
        adam = {k: hparams[k] for k in ("beta1", "eps") if k in hparams}
        assert adam == ({"beta1": 0.8, "eps": 1e-6} if hparams["optimizer"] == "adamw" else {})
    assert "weight_decay" in {p.name for p in OPTIMIZERS["adamw"].params}


def test_rows_with_their_own_weight_decay_follow_their_sequential_runs() -> None:
    """A searched weight decay differs from row to row of a stack (mini-batch, and AdamW's
    decoupled one beside L2)."""
    objective = stacked_net(dropout=0.3)
    hps = [Hyperparams(name, LR[name], "none", {"weight_decay": 0.02 * (i + 1)})
           for i, name in enumerate(["sgd", "sgd", "adam", "adamw", "adamw"])]
    for hp, result in zip(hps, train_batch(objective, hps, 3), strict=True):
        assert_same(result, train(objective, hp, 3))


def test_a_sweep_searches_weight_decay_in_a_range(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    common = ["--objective", "tests.minibatch_objectives:tiny", "--n-trials", "6", "--epochs",
              "2", "--study", "wdr", "--storage", f"sqlite:///{tmp_path}/optuna.db",
              "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--lr-min", "1e-3",
              "--lr-max", "0.1", "--quiet", "--no-plots"]
    assert run.main([*common, "--weight-decay-range", "1e-2,1e-4"]) == 2
    assert run.main([*common, "--weight-decay-range", "1e-4,1e-2", "--weight-decay",
                     "1e-3"]) == 2
    assert run.main([*common, "--weight-decay-range", "1e-4,1e-2", "--sampler", "grid"]) == 2
    assert not (tmp_path / "optuna.db").exists()
    assert run.main([*common, "--optimizers", "adamw,sgd", "--weight-decay-range",
                     "1e-4,1e-2"]) == 0
    trials = optuna.load_study(study_name="wdr",
                               storage=f"sqlite:///{tmp_path}/optuna.db").trials
    decays = [t.user_attrs["hparams"]["weight_decay"] for t in trials]
    assert len(set(decays)) == len(trials) == 6
    assert all(1e-4 <= d <= 1e-2 for d in decays)
    assert [t.params["weight_decay"] for t in trials] == decays
