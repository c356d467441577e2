"""A short probe run of one configuration with statistics per parameter tensor.

The training loop's observers see statistics over all parameters together; to say *which*
tensor does not move, the probe keeps, per tensor and epoch, sum |theta|, sum |grad| and sum
|delta theta|. For a full-batch objective it runs its own small loop (the same optimizer and
scheduler builders, the same step order as ``sweeps.training.loop.train``); the totals over all
tensors give the usual ``EpochStats`` (SPEC section 5), so the probe can be judged like a trial.
A mini-batch objective is trained by ``train`` itself (one pass over its batches an epoch, its
validation metrics in ``history.extra``), with a ``TensorWatch`` around the objective for the
per-tensor sums.

    result = probe(build("rebalance"), Hyperparams("sgd", 0.01), epochs=200)
    print(result.to_frame().to_string())
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

from sweeps.training.hparams import Hyperparams
from sweeps.training.stats import EpochStats

if TYPE_CHECKING:
    import torch

    from objectives import MiniBatchObjective, Objective

__all__ = ["MOVE_FRACTION", "ProbeResult", "TensorStats", "epochs_to_move", "probe"]

log = logging.getLogger(__name__)

MOVE_FRACTION = 0.01  # "epochs to move": epochs until a tensor has moved 1% of its size


@dataclass(frozen=True)
class TensorStats:
    """How one parameter tensor behaved during the probe."""

    name: str  # the objective's name for the tensor
    shape: tuple[int, ...]  # its shape
    theta_abs_mean: float  # mean |theta| before the first step
    grad_abs_mean: float  # mean |grad|, averaged over the probe's epochs
    update_abs_mean: float  # mean |delta theta| per step, averaged over the probe's epochs
    update_ratio: float  # median over epochs of sum |delta theta| / sum |theta| (per step)
    steps_per_epoch: int = 1  # optimizer steps an epoch (batches of a mini-batch objective)

    @property
    def epochs_to_move(self) -> float:
        """Epochs to move the tensor by ``MOVE_FRACTION`` of its size at this update ratio."""
        return epochs_to_move(self.update_ratio * self.steps_per_epoch)


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of a probe run."""

    hp: Hyperparams  # the configuration probed
    tensors: tuple[TensorStats, ...]  # one entry per parameter tensor, in the objective's order
    history: EpochStats  # statistics over all tensors, per epoch (as sweeps.training.loop.train's)
    failure: str | None = None  # why the probe stopped early (a non-finite loss or gradient)
    steps_per_epoch: int = 1  # optimizer steps an epoch (batches of a mini-batch objective)
    minibatch: bool = False  # the objective was trained in mini-batches, by ``train``

    @property
    def validation(self) -> dict[str, np.ndarray]:
        """The validation metrics per epoch (``val_loss``, ``val_<metric>``), if any."""
        return {k: v for k, v in self.history.extra.items() if k.startswith("val_")}

    @property
    def update_ratio(self) -> float:
        """Median over epochs of the update ratio of all parameters together."""
        finite = self.history.update_ratio[np.isfinite(self.history.update_ratio)]
        return float(np.median(finite)) if len(finite) else math.nan

    def to_frame(self):  # type: ignore[no-untyped-def]
        """One row per tensor: shape, mean |theta|, |grad|, |delta|, ratio, epochs to move 1%."""
        import pandas as pd

        rows = [{"tensor": t.name, "shape": "x".join(map(str, t.shape)) or "scalar",
                 "theta_abs_mean": t.theta_abs_mean, "grad_abs_mean": t.grad_abs_mean,
                 "update_abs_mean": t.update_abs_mean, "update_ratio": t.update_ratio,
                 "epochs_to_move_1pct": t.epochs_to_move} for t in self.tensors]
        return pd.DataFrame(rows).set_index("tensor")


def epochs_to_move(update_ratio: float, fraction: float = MOVE_FRACTION) -> float:
    """Epochs to move parameters by ``fraction`` of their size at ``update_ratio`` per step."""
    return fraction / update_ratio if update_ratio > 0 else math.inf


def probe(
    objective: Objective, hp: Hyperparams, epochs: int = 200, *,
    device: str | torch.device = "cpu",
) -> ProbeResult:
    """Run ``epochs`` epochs of ``hp`` on fresh parameters of ``objective``: full-batch steps,
    or for a mini-batch objective ``train``'s passes over its batches.

    Stops at the first non-finite loss or gradient (``failure`` says which); the epochs before
    it are kept.
    """
    import torch

    from objectives import is_minibatch
    from sweeps.optim import SCHEDULERS, build_optimizer, build_scheduler

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1 but got {epochs!r}.")
    if is_minibatch(objective):
        minibatch = cast("MiniBatchObjective", objective)
        return _probe_minibatch(minibatch, hp, epochs, torch.device(device))
    initial = objective.init_params(torch.device(device))
    params = {k: v.detach().clone().requires_grad_(True) for k, v in initial.items()}
    leaves = list(params.values())
    optimizer = build_optimizer(hp.optimizer, leaves, hp.lr, dict(hp.options))
    scheduler = build_scheduler(hp.scheduler, optimizer, epochs, dict(hp.options))
    on_loss = SCHEDULERS[hp.scheduler].steps_on_loss
    rows: list[torch.Tensor] = []  # per epoch: (tensors, 3) sums of |theta|, |grad|, |delta|
    losses: list[torch.Tensor] = []
    lrs: list[float] = []
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = objective.loss(params)
        loss.backward()
        before = [p.detach().clone() for p in leaves]
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        with torch.no_grad():
            rows.append(torch.stack([torch.stack([
                b.abs().sum().double(),
                (p.grad.abs().sum() if p.grad is not None else b.new_zeros(())).double(),
                (p - b).abs().sum().double()]) for p, b in zip(leaves, before)]))
        losses.append(loss.detach().double())
        if not bool(torch.isfinite(rows[-1][:, :2]).all() and torch.isfinite(loss)):
            break  # the epoch is kept: history.first_nonfinite() names it below
        if scheduler is not None:
            scheduler.step(loss.item()) if on_loss else scheduler.step()
    sums = torch.stack(rows).cpu().numpy()  # (epochs, tensors, 3)
    loss_values = torch.stack(losses).cpu().numpy()
    numel = np.array([p.numel() for p in leaves], dtype=float)
    history = _history(sums, numel, loss_values, np.asarray(lrs))
    bad = history.first_nonfinite()
    failure = None
    if bad is not None:
        failure = f"non-finite {bad[1]} at epoch {bad[0]}"
        log.info("probe stopped: %s", failure)
        history, sums = history.head(bad[0]), sums[: bad[0]]
    tensors = tuple(_tensor_stats(name, tuple(p.shape), sums[:, i], numel[i], p)
                    for i, (name, p) in enumerate(initial.items()))
    return ProbeResult(hp, tensors, history, failure)


def _probe_minibatch(objective: MiniBatchObjective, hp: Hyperparams, epochs: int,
                     device: torch.device) -> ProbeResult:
    """``train`` the objective with a ``TensorWatch`` around it."""
    from sweeps.diagnostics.tensor_watch import TensorWatch
    from sweeps.training.loop import train

    watch = TensorWatch(objective)
    result = train(watch, hp, epochs, device=device)
    history = result.history
    failure = result.failure
    if failure is not None and result.failure_epoch is not None:
        failure = f"{failure} at epoch {result.failure_epoch}"
        log.info("probe stopped: %s", failure)
    sums = watch.sums()[: len(history)]
    steps = max(1, watch.steps_per_epoch)
    initial = objective.init_params(device)
    numel = np.array([p.numel() for p in initial.values()], dtype=float)
    if not len(sums):
        sums = np.empty((0, len(initial), 3))
    tensors = tuple(_tensor_stats(name, tuple(p.shape), sums[:, i], numel[i], p, steps)
                    for i, (name, p) in enumerate(initial.items()))
    return ProbeResult(hp, tensors, history, failure, steps, minibatch=True)


def _history(sums: np.ndarray, numel: np.ndarray, loss: np.ndarray, lrs: np.ndarray
             ) -> EpochStats:
    """Statistics over all tensors together, defined as the training loop defines them."""
    theta, grad, delta = sums.sum(axis=1).T
    total = numel.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = delta / theta
    return EpochStats(0, loss, grad / total, delta / total, ratio, lrs)


def _tensor_stats(name: str, shape: tuple[int, ...], sums: np.ndarray, numel: float,
                  initial: torch.Tensor, steps_per_epoch: int = 1) -> TensorStats:
    theta, grad, delta = sums.T
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = delta / theta
    finite = ratios[np.isfinite(ratios)]
    return TensorStats(
        name=name,
        shape=shape,
        theta_abs_mean=float(initial.detach().abs().double().mean()),
        grad_abs_mean=float(grad.mean() / numel) if len(grad) else math.nan,
        update_abs_mean=float(delta.mean() / numel) if len(delta) else math.nan,
        update_ratio=float(np.median(finite)) if len(finite) else math.nan,
        steps_per_epoch=steps_per_epoch,
    )
