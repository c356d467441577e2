"""Data-set objectives: batches of an epoch, the trial's own state (BatchNorm, dropout), eval-mode
validation, data from a ``Dataset`` (more in ``test_data_sources``), and one-line errors for
bad arguments."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from objectives import MiniBatchObjective, Objective, ObjectiveError, is_minibatch
from objectives.dataset import DatasetObjective, accuracy
from objectives.rebalance import Rebalance

try:
    from minibatch_objectives import HELD_OUT, ROWS, data, model, tiny
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import HELD_OUT, ROWS, data, model, tiny

CPU = torch.device("cpu")


@pytest.mark.parametrize(("batch_size", "drop_last", "steps"), [
    (8, False, 5), (8, True, 4), (37, False, 1), (37, True, 1), (1, False, 37), (40, False, 1),
    (36, True, 1), (36, False, 2),
])
def test_an_epoch_is_ceil_n_over_b_batches_or_the_floor_with_drop_last(
        batch_size: int, drop_last: bool, steps: int) -> None:
    objective = tiny(batch_size=batch_size, drop_last=drop_last)
    batches = objective.batches(0, CPU)
    assert len(batches) == objective.steps_per_epoch == steps
    assert steps == (ROWS // batch_size if drop_last else math.ceil(ROWS / batch_size))
    rows = torch.cat(batches)
    assert len(set(rows.tolist())) == len(rows)  # no row twice in an epoch
    if not drop_last:
        assert sorted(rows.tolist()) == list(range(ROWS))
    else:
        assert all(len(b) == batch_size for b in batches)


def test_the_batch_order_is_a_function_of_seed_and_epoch_only() -> None:
    first, again = tiny(), tiny()
    for epoch in range(3):
        assert all(torch.equal(a, b) for a, b in
                   zip(first.batches(epoch, CPU), again.batches(epoch, CPU), strict=True))
    orders = [torch.cat(first.batches(epoch, CPU)).tolist() for epoch in range(3)]
    assert len({tuple(o) for o in orders}) == 3  # shuffled anew each epoch
    assert torch.cat(tiny(seed=1).batches(0, CPU)).tolist() != orders[0]
    assert torch.cat(tiny(shuffle=False).batches(2, CPU)).tolist() == list(range(ROWS))


def test_it_is_an_objective_with_the_minibatch_capability() -> None:
    objective = tiny()
    assert isinstance(objective, Objective) and isinstance(objective, MiniBatchObjective)
    assert is_minibatch(objective)
    assert not is_minibatch(Rebalance())


def _state_buffers(objective: DatasetObjective) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in objective.start_trial(CPU).buffers.items()}


def test_a_step_updates_the_trials_batchnorm_statistics_and_nothing_else() -> None:
    objective = tiny()
    fresh = _state_buffers(objective)
    state = objective.start_trial(CPU)
    params = objective.init_params(CPU)
    objective.batch_loss(params, state, objective.batches(0, CPU)[0])
    assert not torch.equal(state.buffers["1.running_mean"], fresh["1.running_mean"])
    assert state.buffers["1.num_batches_tracked"].item() == 1
    for key, value in _state_buffers(objective).items():  # the next trial starts fresh
        assert torch.equal(value, fresh[key]), key


def test_dropout_draws_from_the_trials_generator_only() -> None:
    objective = tiny(dropout=0.5)
    params = objective.init_params(CPU)
    batch = objective.batches(0, CPU)[0]
    global_state = torch.random.get_rng_state()
    losses = [objective.batch_loss(params, objective.start_trial(CPU), batch) for _ in range(2)]
    assert torch.equal(losses[0], losses[1])  # a fresh trial draws the same masks
    assert torch.equal(torch.random.get_rng_state(), global_state)  # the global stream is left
    state = objective.start_trial(CPU)
    first = objective.batch_loss(params, state, batch)
    second = objective.batch_loss(params, state, batch)
    assert not torch.equal(first, second)  # within a trial the stream moves on


def test_validation_runs_in_eval_mode() -> None:
    objective = tiny(dropout=0.5)
    params = objective.init_params(CPU)
    state = objective.start_trial(CPU)
    for batch in objective.batches(0, CPU):
        objective.batch_loss(params, state, batch)  # running statistics of this trial
    first, second = objective.validate(params, state), objective.validate(params, state)
    assert set(first) == {"val_loss", "val_accuracy"}
    assert first == second
    reference = model(0.5)
    reference.load_state_dict({**params, **state.buffers})
    reference.eval()
    inputs, targets = data(1, HELD_OUT)
    with torch.no_grad():
        outputs = reference(inputs)
    assert first["val_loss"].item() == pytest.approx(
        nn.functional.cross_entropy(outputs, targets).item(), rel=1e-12)
    assert first["val_accuracy"].item() == accuracy(outputs, targets).item()
    assert objective.validate(params, state)["val_loss"].ndim == 0


def test_without_validation_data_there_is_nothing_to_validate() -> None:
    objective = DatasetObjective(model(), data(), batch_size=8,
                                 loss_fn=nn.functional.cross_entropy)
    assert objective.validate(objective.init_params(CPU), objective.start_trial(CPU)) == {}


def test_loss_is_a_pure_function_of_params_even_with_dropout() -> None:
    objective = tiny(dropout=0.5)
    params = objective.init_params(CPU)
    assert torch.equal(objective.loss(params), objective.loss(params))


class _Pairs(Dataset):
    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.inputs[i], int(self.targets[i])


def test_a_dataset_without_random_draws_trains_as_its_tensors_do() -> None:
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import train

    from_tensors = tiny()
    from_dataset = DatasetObjective(
        model(), _Pairs(*data(0)), batch_size=8, loss_fn=nn.functional.cross_entropy,
        validation=_Pairs(*data(1, HELD_OUT)), metrics={"accuracy": accuracy})
    assert from_dataset.rows == ROWS and from_dataset.steps_per_epoch == 5
    inputs, targets = data(0)
    for epoch in range(2):  # the same rows in the same order, batch by batch
        loaded = list(from_dataset.batches(epoch, CPU))
        indices = from_tensors.batches(epoch, CPU)
        assert [torch.equal(x, inputs[i]) and torch.equal(y, targets[i])
                for (x, y), i in zip(loaded, indices, strict=True)] == [True] * 5
    runs = [train(o, Hyperparams("adam", 0.01), 3) for o in (from_tensors, from_dataset)]
    for name in ("loss", "val_loss", "val_accuracy"):
        assert list(runs[0].history.metric(name)) == list(runs[1].history.metric(name)), name


def _build(**changes: object) -> DatasetObjective:
    kwargs: dict[str, object] = {"batch_size": 8, "loss_fn": nn.functional.cross_entropy,
                                 "validation": data(1, HELD_OUT)}
    kwargs.update(changes)
    train = kwargs.pop("train", data())
    return DatasetObjective(model(), train, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("changes", "field"), [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"batch_size": -4}, "batch_size"),
    ({"batch_size": True}, "batch_size"),
    ({"batch_size": 38, "drop_last": True}, "batch_size"),
    ({"default_epochs": 0}, "default_epochs"),
    ({"seed": -1}, "seed"),
    ({"validation": (torch.zeros(5, 3, dtype=torch.float64), torch.zeros(5))},
     "validation inputs"),
    ({"validation": (torch.zeros(5, 4, dtype=torch.float64), torch.zeros(5, 2))},
     "validation targets"),
    ({"validation": (torch.zeros(5, 4), torch.zeros(4))}, "validation"),
    ({"validation": (torch.zeros(5, 4, dtype=torch.float64), torch.zeros(6, dtype=torch.long))},
     "validation"),
    ({"validation": (torch.zeros(5, 4), torch.zeros(5, dtype=torch.long))}, "validation inputs"),
    ({"validation": (torch.zeros(5, 4, dtype=torch.float64), torch.zeros(5, dtype=torch.int32))},
     "validation targets"),
    ({"train": (torch.zeros(5, 4), torch.zeros(6))}, "train"),
    ({"train": [1, 2, 3]}, "train"),
    ({"validation": None, "metrics": {"accuracy": accuracy}}, "metrics"),
    ({"metrics": {"loss": accuracy}}, "metrics"),
])
def test_bad_arguments_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ObjectiveError) as caught:
        _build(**changes)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("validation", "message"), [
    ((torch.zeros(5, 3, dtype=torch.float64), torch.zeros(5, dtype=torch.long)),
     "validation inputs: (5, 3) is not valid; use rows of shape (4,), as in training"),
    ((torch.zeros(5, 4, dtype=torch.float64), torch.zeros(6, dtype=torch.long)),
     "validation: '(5, 4) and (6,)' is not valid; use inputs and targets with the same number "
     "of rows, at least 1"),
    ((torch.zeros(5, 4, dtype=torch.float32), torch.zeros(5, dtype=torch.long)),
     "validation inputs: 'float32' is not valid; use float64, as in training"),
])
def test_misshapen_validation_data_is_refused_at_construction(
        validation: tuple[torch.Tensor, torch.Tensor], message: str) -> None:
    with pytest.raises(ObjectiveError) as caught:
        _build(validation=validation)
    assert str(caught.value) == message
