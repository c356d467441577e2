"""Batched trials: several trials of one objective run as one tensor program.

The parameters of all trials are stacked (one row per trial, all starting from the
objective's initial parameters). The forward pass is one ``torch.func.vmap`` of the
objective's loss over the rows; one backward pass on the summed losses gives each row the
gradient of its own loss. Each optimizer's update rule runs over its rows with per-row
hyperparameters (``sweeps.stacked_optim``), and each row follows its own learning-rate table
(``sweeps.lr_tables``); both repeat torch's arithmetic, so every trial follows its sequential
trajectory while the per-epoch Python overhead is paid once per batch.

``plateau`` steps on each row's loss (``Plateau``, torch's ReduceLROnPlateau arithmetic).

Statistics are recorded for the whole batch and handed to each trial's observers per chunk,
so pruning and tracking work per trial. RMSprop without momentum and objectives that
``vmap`` cannot trace run sequentially instead.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import ObjectiveStartError, Observer, Status, TrainResult, default_chunk, finish, train
from sweeps.batched.lr_tables import TABULATED
from sweeps.batched.rules import RULES
from sweeps.training.stats import EpochStats

if TYPE_CHECKING:
    import torch

    from objectives import Objective

__all__ = ["batchable", "train_batch"]

log = logging.getLogger(__name__)


def batchable(hp: Hyperparams) -> bool:
    """True if ``hp`` can join a batch (its schedule does not depend on the loss)."""
    if hp.optimizer == "rmsprop" and hp.options.get("momentum", 0.9) <= 0:
        return False
    return (hp.scheduler in TABULATED or hp.scheduler == "plateau") and hp.optimizer in RULES


def train_batch(
    objective: Objective,
    hps: list[Hyperparams],
    epochs: int,
    *,
    device: str | torch.device = "cpu",
    observers: list[tuple[Observer, ...]] | None = None,
    chunk: int | None = None,
) -> list[TrainResult]:
    """Train every configuration of ``hps`` on ``objective``; one result per configuration,
    in order. Configurations that cannot be batched run sequentially."""
    observers = observers if observers is not None else [() for _ in hps]
    results: list[TrainResult | None] = [None] * len(hps)
    members = sorted((b for b, hp in enumerate(hps) if batchable(hp)),
                     key=lambda b: list(RULES).index(hps[b].optimizer))
    if len(members) < 2:
        members = []
    for b, hp in enumerate(hps):
        if b not in members:
            results[b] = train(objective, hp, epochs, device=device, observers=observers[b],
                               chunk=chunk)
    if members:
        batch = [hps[b] for b in members]
        batch_results = _Batch(objective, batch, epochs, device,
                               [observers[b] for b in members], chunk).run()
        if batch_results is None:  # the objective cannot be traced by vmap
            batch_results = [train(objective, hp, epochs, device=device, observers=observers[b],
                                   chunk=chunk) for b, hp in zip(members, batch)]
        for b, result in zip(members, batch_results):
            results[b] = result
    return [r for r in results if r is not None]


class _Batch:
    """One batch of trials sharing stacked parameter tensors (one row per trial)."""

    def __init__(self, objective: Objective, hps: list[Hyperparams], epochs: int,
                 device: str | torch.device, observers: list[tuple[Observer, ...]],
                 chunk: int | None) -> None:
        import torch

        from sweeps.batched.lr_tables import lr_table
        from sweeps.training.recorder import chunk_capacity

        self.objective, self.hps, self.epochs, self.observers = objective, hps, epochs, observers
        self.device = torch.device(device)
        try:
            initial = objective.init_params(self.device)
        except Exception as exc:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
        self.names = list(initial)
        size = len(hps)
        self.params = [initial[n].detach().unsqueeze(0).repeat(size, *([1] * initial[n].dim()))
                       .requires_grad_(True) for n in self.names]
        like = self.params[0]
        self.rules = []
        start = 0
        for name in RULES:
            rows = [i for i, hp in enumerate(hps) if hp.optimizer == name]
            if rows:
                stop = start + len(rows)
                self.rules.append(RULES[name](slice(start, stop), [hps[i].options for i in rows],
                                              like))
                start = stop
        tables = [lr_table("none" if hp.scheduler == "plateau" else hp.scheduler, hp.lr,
                           epochs, hp.options) for hp in hps]
        self.plateaus = {i: Plateau.for_options(hp.lr, epochs, hp.options)
                         for i, hp in enumerate(hps) if hp.scheduler == "plateau"}
        self.lr = torch.tensor(tables, dtype=like.dtype, device=self.device).T.contiguous()
        self.lr_host = np.asarray(tables).T
        native = getattr(objective, "batched_loss", None)  # optional: rows of stacked params
        self.loss_fn = native if callable(native) else torch.func.vmap(
            lambda params: objective.loss(params))
        capacity = chunk_capacity(self.params, chunk or default_chunk(epochs))
        self.recorder = _StackedRecorder(self.params, capacity)
        self.parts: list[list[EpochStats]] = [[] for _ in hps]
        self.results: list[TrainResult | None] = [None] * size
        self.active = list(range(size))
        self.live_rules = list(self.rules)  # rules with a row still training

    def losses(self) -> torch.Tensor:
        return self.loss_fn(dict(zip(self.names, self.params)))

    def run(self) -> list[TrainResult] | None:
        import torch

        try:
            probe = self.losses()
            if probe.shape != (len(self.hps),):
                raise ValueError(f"batched loss has shape {tuple(probe.shape)}")
        except Exception as exc:
            log.info("objective cannot be batched (%s); running trials sequentially", exc)
            return None
        epoch = 0
        try:
            for epoch in range(self.epochs):
                for p in self.params:
                    p.grad = None
                losses = self.losses()
                losses.sum().backward()
                grads = [p.grad if p.grad is not None else torch.zeros_like(p)
                         for p in self.params]
                self.recorder.record(grads, losses, self.lr_host[epoch])
                lr = self.lr[epoch]
                with torch.no_grad():
                    for rule in self.live_rules:
                        rule.step(self.params, grads, lr[rule.rows])
                if self.plateaus:
                    self.step_plateaus(epoch, losses.detach().tolist())
                if self.recorder.full or epoch == self.epochs - 1:
                    self.flush()
                    if not self.active:
                        break
        except Exception as exc:
            for i in list(self.active):
                self.end(i, "failed", f"{type(exc).__name__}: {exc}", epoch)
        except BaseException:  # interrupted: hand the epochs already run to the observers
            if self.recorder.size:
                self.flush()
            raise
        for i in list(self.active):
            self.end(i, "complete", None, None)
        return [r for r in self.results if r is not None]

    def step_plateaus(self, epoch: int, losses: list[float]) -> None:
        """ReduceLROnPlateau per row: a reduction sets the lr of every later epoch."""
        for i, plateau in self.plateaus.items():
            new_lr = plateau.step(losses[i])
            if new_lr is not None and epoch + 1 < self.epochs:
                self.lr[epoch + 1 :, i] = new_lr
                self.lr_host[epoch + 1 :, i] = new_lr

    def flush(self) -> None:
        for i, stats in enumerate(self.recorder.drain()):
            if i not in self.active:
                continue
            bad = stats.first_nonfinite()
            if bad is not None:
                stats = stats.head(bad[0] - stats.start)
            self.parts[i].append(stats)
            stop = False
            for observer in self.observers[i]:
                stop = observer.on_chunk(stats) or stop
            if bad is not None:
                self.end(i, "failed", f"non-finite {bad[1]}", bad[0])
            elif stop:
                self.end(i, "pruned", None, None)

    def end(self, i: int, status: Status, failure: str | None,
            failure_epoch: int | None) -> None:
        import torch

        params = {n: p[i].detach().clone() for n, p in zip(self.names, self.params)}
        final = math.nan
        if status != "failed":
            with torch.no_grad():  # unbatched, exactly as the sequential loop computes it
                final = float(self.objective.loss(params))
            if not math.isfinite(final):
                status, failure, failure_epoch = "failed", "non-finite final loss", self.epochs
        kept = params if status != "failed" else None
        self.results[i] = finish(self.observers[i], self.parts[i], status, final, failure,
                                 failure_epoch, kept)
        self.active.remove(i)
        live = set(self.active)  # a rule whose rows all ended stops updating them
        self.live_rules = [r for r in self.rules
                           if live.intersection(range(r.rows.start, r.rows.stop))]


class _StackedRecorder:
    """Per-epoch copies of the stacked parameters, gradients, losses and learning rates."""

    def __init__(self, params: list[torch.Tensor], capacity: int) -> None:
        import torch

        self.params = params
        size = params[0].shape[0]
        self.theta = [p.detach().new_empty((capacity + 1, *p.shape)) for p in params]
        self.grad = [p.detach().new_empty((capacity, *p.shape)) for p in params]
        self.loss = torch.empty((capacity, size), dtype=params[0].dtype,
                                device=params[0].device)
        self.lr = np.empty((capacity, size))
        self.numel = sum(p[0].numel() for p in params)
        self.capacity = capacity
        self.start = 0
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size == self.capacity

    def record(self, grads: list[torch.Tensor], losses: torch.Tensor, lrs: np.ndarray) -> None:
        i = self.size
        for theta, grad, p, g in zip(self.theta, self.grad, self.params, grads):
            theta[i].copy_(p.detach())
            grad[i].copy_(g)
        self.loss[i].copy_(losses.detach())
        self.lr[i] = lrs
        self.size = i + 1

    def drain(self) -> list[EpochStats]:
        from sweeps.training.recorder import reduce_chunk

        n = self.size
        for theta, p in zip(self.theta, self.params):
            theta[n].copy_(p.detach())
        loss, grad_mean, update_mean, ratio = reduce_chunk(self.loss, self.theta, self.grad, n,
                                                           self.numel, dims=2)
        out = [EpochStats(self.start, loss[:, b].copy(), grad_mean[:, b].copy(),
                          update_mean[:, b].copy(), ratio[:, b].copy(), self.lr[:n, b].copy())
               for b in range(loss.shape[1])]
        self.start += n
        self.size = 0
        return out


class Plateau:
    """``ReduceLROnPlateau`` (mode min, relative threshold, no cooldown, min_lr 0) for one
    trial, repeating torch's float arithmetic."""

    threshold, eps = 1e-4, 1e-8

    def __init__(self, lr: float, factor: float, patience: int) -> None:
        self.lr, self.factor, self.patience = lr, factor, patience
        self.best = math.inf
        self.bad_epochs = 0

    @classmethod
    def for_options(cls, lr: float, epochs: int, options: dict[str, float]) -> Plateau:
        """As ``sweeps.schedulers`` builds it."""
        patience = int(options.get("plateau_patience", max(1, epochs // 20)))
        return cls(lr, options.get("plateau_factor", 0.5), patience)

    def step(self, loss: float) -> float | None:
        """Take the epoch's loss; the new lr if it is reduced, else None."""
        if loss < self.best * (1.0 - self.threshold):
            self.best = loss
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs <= self.patience:
            return None
        self.bad_epochs = 0
        new_lr = max(self.lr * self.factor, 0.0)
        if self.lr - new_lr > self.eps:
            self.lr = new_lr
            return new_lr
        return None
