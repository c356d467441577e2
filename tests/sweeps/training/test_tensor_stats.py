"""Per-tensor statistics (``grad_abs_mean/<tensor>``, ``update_ratio/<tensor>``): equal to a
direct float64 computation on a three-tensor model, full-batch and mini-batch, whatever the
chunking; absent when turned off, for a single tensor (the seed's ``rebalance``) and beyond
``MAX_TENSORS``; tensor names turned into valid MLflow metric names."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from objectives import build
from sweeps.training import recorder
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from sweeps.training.recorder import MAX_TENSORS, tracked_tensors
from sweeps.training.stats import EPOCH_METRICS, EpochStats, tensor_keys
from tests.sweeps.training.tensor_objectives import TENSORS, full_batch, minibatch

CPU = torch.device("cpu")
EPOCHS = 4
PER_TENSOR = tuple(f"{m}/{t}" for m in ("grad_abs_mean", "update_ratio") for t in TENSORS)
OPTIMIZERS = {"sgd": lambda ps, lr: torch.optim.SGD(ps, lr=lr),
              "adam": lambda ps, lr: torch.optim.Adam(ps, lr=lr)}


def _step(params: dict[str, torch.Tensor], loss: torch.Tensor,
          optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """One step; each tensor's mean |grad| and update ratio, computed directly."""
    optimizer.zero_grad()
    loss.backward()
    before = {k: p.detach().clone() for k, p in params.items()}
    grads = {k: p.grad.abs().mean().item() for k, p in params.items()}
    optimizer.step()
    out = {f"grad_abs_mean/{k}": g for k, g in grads.items()}
    out.update({f"update_ratio/{k}": ((p.detach() - before[k]).abs().sum()
                                      / before[k].abs().sum()).item()
                for k, p in params.items()})
    return out


def reference(objective_name: str, optimizer: str, lr: float) -> dict[str, np.ndarray]:
    """Per-tensor statistics of each epoch from a plain loop: one step an epoch (full
    batch), or the mean over the epoch's steps (mini-batch)."""
    objective = full_batch() if objective_name == "full_batch" else minibatch()
    params = {k: v.detach().clone().requires_grad_(True)
              for k, v in objective.init_params(CPU).items()}
    opt = OPTIMIZERS[optimizer](list(params.values()), lr)
    rows: list[dict[str, float]] = []
    state = objective.start_trial(CPU) if objective_name == "minibatch" else None
    for epoch in range(EPOCHS):
        if objective_name == "full_batch":
            rows.append(_step(params, objective.loss(params), opt))
            continue
        steps = [_step(params, objective.batch_loss(params, state, batch), opt)
                 for batch in objective.batches(epoch, CPU)]
        rows.append({k: float(np.mean([s[k] for s in steps])) for k in steps[0]})
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("objective_name", ["full_batch", "minibatch"])
def test_per_tensor_statistics_equal_a_direct_computation(objective_name: str,
                                                          optimizer: str) -> None:
    objective = full_batch() if objective_name == "full_batch" else minibatch()
    lr = 0.3 if optimizer == "sgd" else 0.05
    expected = reference(objective_name, optimizer, lr)
    results = [train(objective, Hyperparams(optimizer, lr), EPOCHS, chunk=chunk)
               for chunk in (1, 3, EPOCHS)]
    for result in results:
        history = result.history
        assert history.tensors == TENSORS
        assert history.names[-len(PER_TENSOR):] == PER_TENSOR
        for name in PER_TENSOR:
            np.testing.assert_allclose(history.metric(name), expected[name], rtol=1e-12,
                                       atol=0, err_msg=name)
    for other in results[1:]:  # chunking changes no number
        for name in results[0].history.names:
            np.testing.assert_array_equal(other.history.metric(name),
                                          results[0].history.metric(name), err_msg=name)


def _without_per_tensor(history: EpochStats) -> dict[str, np.ndarray]:
    return {k: history.metric(k) for k in history.names if k not in PER_TENSOR}


@pytest.mark.parametrize("objective_name", ["full_batch", "minibatch"])
def test_turning_per_tensor_off_removes_them_and_changes_nothing_else(
        objective_name: str) -> None:
    objective = full_batch() if objective_name == "full_batch" else minibatch()
    hp = Hyperparams("adam", 0.05)
    on = train(objective, hp, EPOCHS)
    off = train(objective, hp, EPOCHS, per_tensor=False)
    assert off.history.tensors == () and off.history.per_tensor("update_ratio") == {}
    assert not any("/" in name for name in off.history.names)
    kept = _without_per_tensor(on.history)
    assert tuple(kept) == off.history.names
    for name, values in kept.items():
        np.testing.assert_allclose(off.history.metric(name), values, rtol=1e-12, atol=0,
                                   err_msg=name)
    assert off.final_loss == on.final_loss


def test_rebalance_has_no_per_tensor_metrics() -> None:
    """One tensor: its statistics are the overall ones; no metric rows are added."""
    history = train(build("rebalance"), Hyperparams("sgd", 0.01), 3).history
    assert history.names == EPOCH_METRICS
    assert history.tensors == ()


def test_more_tensors_than_the_limit_get_none_and_say_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    names = [f"layer{i}.weight" for i in range(MAX_TENSORS + 1)]
    assert tracked_tensors(names[:MAX_TENSORS]) == tuple(names[:MAX_TENSORS])
    recorder._TOLD.discard(len(names))
    with caplog.at_level(logging.INFO, logger="sweeps.training.recorder"):
        assert tracked_tensors(names) == ()
        assert tracked_tensors(names) == ()
    told = [r.getMessage() for r in caplog.records]
    assert told == [f"no per-tensor statistics: the objective has {MAX_TENSORS + 1} "
                    f"parameter tensors, more than {MAX_TENSORS}"]
    assert tracked_tensors(names[:2], per_tensor=False) == ()
    assert tracked_tensors(names[:1]) == ()


@pytest.mark.parametrize(("names", "keys"), [
    (["0.weight", "encoder.layers.3.bias"], ("0.weight", "encoder.layers.3.bias")),
    (["w[0]", "w/1", "θ"], ("w_0_", "w_1", "θ")),
    (["a:b", "a/b", "a?b"], ("a_b", "a_b_2", "a_b_3")),
    ([".", "..", ""], ("_", "__", "__2")),  # "" becomes "_", which "." took already
])
def test_tensor_names_become_valid_unique_metric_names(names: list[str],
                                                       keys: tuple[str, ...]) -> None:
    assert tensor_keys(names) == keys


def test_an_overlong_tensor_name_keeps_its_end_within_mlflows_limit() -> None:
    name = "block." * 60 + "weight"
    key, = tensor_keys([name])
    assert len(f"grad_abs_mean/{key}") <= 250 and key.endswith(".block.weight")
