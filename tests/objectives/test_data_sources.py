"""Data from a ``Dataset``, a ``DataLoader`` or a function returning one: random transforms
draw afresh each epoch and alike in every trial and re-run, workers, dict batches through a
``step`` hook (stacked rows equal to their sequential runs), and one-line errors."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from objectives import ObjectiveError
from objectives.dataset import DatasetObjective
from sweeps.batched import train_batch
from sweeps.cli import run
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import ObjectiveStartError, TrainResult, train
from tests.data_objectives import (
    Noisy,
    Records,
    TwoInputs,
    nan_test,
    per_row_step,
    record_loss,
    records,
    wrong_width,
)
from tests.minibatch_objectives import HELD_OUT, model

CPU = torch.device("cpu")
ADAM = Hyperparams("adam", 0.01)


def recording(runs: list[list[torch.Tensor]]) -> DatasetObjective:
    """``model`` on ``Noisy`` rows in a fixed order; every input batch it trains on is kept
    in ``runs[-1]``."""

    def step(net: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        runs[-1].append(batch[0].clone())
        return nn.functional.cross_entropy(net(batch[0]), batch[1])

    return DatasetObjective(model(), Noisy(0), batch_size=8, shuffle=False, step=step)


def test_a_random_transform_draws_afresh_each_epoch_and_alike_in_every_trial_and_rerun(
        ) -> None:
    runs: list[list[torch.Tensor]] = []
    objective = recording(runs)
    for hp in (ADAM, Hyperparams("sgd", 0.1)):  # two trials
        runs.append([])
        train(objective, hp, 2)
    runs.append([])
    train(recording(runs), ADAM, 2)  # a re-run
    first, second, again = runs
    assert len(first) == 10  # 2 epochs of 5 batches, in the same order of rows
    assert not torch.equal(torch.stack(first[:4]), torch.stack(first[5:9]))
    assert all(torch.equal(a, b) and torch.equal(a, c)
               for a, b, c in zip(first, second, again, strict=True))


def test_loading_leaves_the_global_generators_as_they_were() -> None:
    objective = DatasetObjective(model(), Noisy(0), batch_size=8,
                                 loss_fn=nn.functional.cross_entropy,
                                 validation=Noisy(1, HELD_OUT))
    before = torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    for epoch in range(2):
        list(objective.batches(epoch, CPU))
    objective.validate(objective.init_params(CPU), objective.start_trial(CPU))
    assert torch.equal(torch.random.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert random.getstate() == before[2]


def test_held_out_data_with_random_draws_score_the_same_every_time() -> None:
    objective = DatasetObjective(model(), Noisy(0), batch_size=8,
                                 loss_fn=nn.functional.cross_entropy,
                                 validation=Noisy(1, HELD_OUT, noise=1.0))
    params, state = objective.init_params(CPU), objective.start_trial(CPU)
    scores = [objective.validate(params, state)["val_loss"] for _ in range(2)]
    list(objective.batches(3, CPU))  # an epoch's draws between them change nothing
    scores.append(objective.validate(params, state)["val_loss"])
    assert scores[0] == scores[1] == scores[2]


class _Counted(Noisy):
    def __init__(self) -> None:
        super().__init__(0, noise=0.0)
        self.reads = 0

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.reads += 1
        return super().__getitem__(i)


def test_an_epochs_batches_are_loaded_as_they_are_reached() -> None:
    data = _Counted()
    objective = DatasetObjective(model(), data, batch_size=8,
                                 loss_fn=nn.functional.cross_entropy)
    batches = iter(objective.batches(0, CPU))
    next(batches)
    assert data.reads == 8


def test_a_function_given_as_data_is_called_when_the_data_are_first_needed_once() -> None:
    calls: list[int] = []

    def make() -> DataLoader:
        calls.append(1)
        return DataLoader(Noisy(0), batch_size=8, shuffle=True)

    objective = DatasetObjective(model(), make, loss_fn=nn.functional.cross_entropy)
    assert calls == []
    train(objective, ADAM, 2)
    assert calls == [1]


def _same_run(a: TrainResult, b: TrainResult, rel: float = 0.0) -> None:
    assert a.status == b.status == "complete"
    for name in b.history.names:
        np.testing.assert_allclose(a.history.metric(name), b.history.metric(name), rtol=rel,
                                   atol=1e-15 if rel else 0.0, err_msg=name)
    assert a.params is not None and b.params is not None
    for key, value in b.params.items():
        torch.testing.assert_close(a.params[key], value, rtol=rel,
                                   atol=rel * float(value.abs().max()), msg=key)


def _loaded(noise: float, workers: int) -> DatasetObjective:
    return DatasetObjective(
        model(), DataLoader(Noisy(0, noise=noise), batch_size=8, shuffle=True,
                            num_workers=workers),
        loss_fn=nn.functional.cross_entropy, validation=Noisy(1, HELD_OUT), batch_size=8)


def test_a_loader_with_two_workers_trains_as_one_without() -> None:
    _same_run(train(_loaded(0.0, 2), ADAM, 2), train(_loaded(0.0, 0), ADAM, 2))


def test_a_loader_with_two_workers_and_random_draws_runs_the_same_again() -> None:
    _same_run(train(_loaded(0.5, 2), ADAM, 2), train(_loaded(0.5, 2), ADAM, 2))


HPS = [Hyperparams("adam", 0.003), Hyperparams("adam", 0.03),
       Hyperparams("momentum", 0.05, options={"momentum": 0.9})]


def test_dict_batches_through_a_step_hook_stack_and_each_row_equals_its_sequential_run(
        caplog: pytest.LogCaptureFixture) -> None:
    objective = records()
    with caplog.at_level(logging.WARNING, logger="sweeps.batched"):
        stacked = train_batch(objective, HPS, 3)
    assert not caplog.records  # they stacked: nothing ran one at a time
    for hp, result in zip(HPS, stacked, strict=True):
        _same_run(result, train(objective, hp, 3), rel=1e-12)


def test_a_step_hook_vmap_cannot_trace_runs_its_trials_one_at_a_time_and_says_why_once(
        caplog: pytest.LogCaptureFixture) -> None:
    def step(net: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = record_loss(net, batch)
        return loss if loss.item() < 1e9 else loss * 0  # .item(): vmap cannot batch it

    objective = DatasetObjective(TwoInputs(), Records(0), batch_size=8, step=step,
                                 name="tests:untraceable-step")
    with caplog.at_level(logging.WARNING, logger="sweeps.batched"):
        results = [train_batch(objective, HPS, 2) for _ in range(2)]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith(
        "trials of tests:untraceable-step run one at a time: vmap cannot trace its loss")
    for hp, result in zip(HPS, results[0], strict=True):
        _same_run(result, train(objective, hp, 2))


@pytest.mark.parametrize(("build", "field"), [
    (wrong_width, "train batch"), (per_row_step, "step")])
def test_a_batch_the_model_or_step_cannot_use_is_an_objective_error(build: Any,
                                                                    field: str) -> None:
    objective = build()
    params = objective.init_params(CPU)
    batch = next(iter(objective.batches(0, CPU)))
    with pytest.raises(ObjectiveError) as caught:
        objective.batch_loss(params, objective.start_trial(CPU), batch)
    assert caught.value.field == field
    with pytest.raises(ObjectiveStartError, match=f"ObjectiveError: {field}: "):
        train(objective, ADAM, 1)


def test_a_non_finite_test_score_is_an_objective_error() -> None:
    objective = nan_test()
    with pytest.raises(ObjectiveError) as caught:
        objective.evaluate(objective.init_params(CPU))
    assert (caught.value.field, str(caught.value.value)) == ("test_loss", "nan")


class _Unsized(torch.utils.data.IterableDataset):
    def __iter__(self) -> Any:
        rows = Noisy(0)
        return (rows[i] for i in range(len(rows)))


@pytest.mark.parametrize(("changes", "field"), [
    ({"step": record_loss, "metrics": {"accuracy": lambda o, t: o.mean()}}, "metrics"),
    ({"loss_fn": None}, "loss_fn"),
    ({"step": "mean"}, "step"),
    ({"train": DataLoader(Noisy(0), batch_size=8, num_workers=1, persistent_workers=True)},
     "train persistent_workers"),
    ({"train": Noisy(0), "batch_size": None}, "batch_size"),
    ({"train": _Unsized()}, "train"),
    ({"validation": np.zeros(3)}, "validation"),
])
def test_bad_data_arguments_name_the_field(changes: dict[str, Any], field: str) -> None:
    kwargs: dict[str, Any] = {"batch_size": 8, "loss_fn": nn.functional.cross_entropy,
                              "train": Noisy(0)}
    kwargs.update(changes)
    with pytest.raises(ObjectiveError) as caught:
        DatasetObjective(model(), kwargs.pop("train"), **kwargs)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


def test_a_function_returning_something_else_is_refused_when_called() -> None:
    objective = DatasetObjective(model(), lambda: [1, 2, 3], batch_size=8,
                                 loss_fn=nn.functional.cross_entropy)
    with pytest.raises(ObjectiveError) as caught:
        objective.batches(0, CPU)
    assert caught.value.field == "train"


def test_a_pair_yielded_unlike_the_training_rows_is_refused_before_the_first_step() -> None:
    class Wider(Noisy):
        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = super().__getitem__(i)
            return torch.cat([x, x[:1]]), y

    objective = DatasetObjective(model(), Noisy(0), batch_size=8,
                                 loss_fn=nn.functional.cross_entropy,
                                 validation=Wider(1, HELD_OUT))
    with pytest.raises(ObjectiveError) as caught:
        objective.batches(0, CPU)
    assert (caught.value.field, caught.value.allowed) == (
        "validation inputs", "use rows of shape (4,), as in training")


class _Unpaired(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.zeros(4, dtype=torch.float64)


def test_batches_that_are_not_pairs_need_a_step_hook() -> None:
    objective = DatasetObjective(model(), _Unpaired(), batch_size=4,
                                 loss_fn=nn.functional.cross_entropy)
    batch = next(iter(objective.batches(0, CPU)))
    with pytest.raises(ObjectiveError) as caught:
        objective.batch_loss(objective.init_params(CPU), objective.start_trial(CPU), batch)
    assert str(caught.value) == ("train batch: 'float64[4, 4]' is not valid; yield (inputs, "
                                 "targets) pairs of tensors, or give a step(model, batch) hook")


@pytest.mark.parametrize(("name", "said"), [
    ("wrong_width", "train batch: '(float64[8, 5], int64[8])' is not valid; the model and "
                    "loss_fn could not take it (RuntimeError: "),
    ("per_row_step", "step: 'a loss of float64[8]' is not valid; return the batch's loss as "
                     "a scalar tensor (0-dim)"),
    ("nan_test", "test_loss: nan is not valid; a test score must be finite"),
])
def test_the_sweep_command_says_what_is_wrong_with_the_data_in_one_line(
        name: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    status = run.main(["--objective", f"tests.data_objectives:{name}", "--study", "s",
                       "--storage", f"sqlite:///{tmp_path}/optuna.db",
                       "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                       "--n-trials", "2", "--epochs", "2", "--lr-min", "0.001",
                       "--lr-max", "0.1", "--pruner", "none", "--quiet", "--no-plots"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(lines) == 1 and said in lines[0], lines
