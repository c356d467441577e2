"""The training loop of one trial: objective + optimizer + scheduler + epochs.

It emits per-epoch statistics in chunks to observers (Optuna reporting, MLflow logging,
progress); it knows nothing about them (``sweeps.training.trial``: the observers, the result,
the errors that are not the trial's). A mini-batch objective's trial runs in
``sweeps.training.minibatch``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sweeps.training.hparams import Hyperparams
from sweeps.training.minibatch import train_minibatch
from sweeps.training.trial import (
    ObjectiveStartError,
    Observer,
    Status,
    TrainResult,
    default_chunk,
    deliver,
    finish,
    raise_observer_error,
    trainable,
)

if TYPE_CHECKING:
    import torch

    from objectives import Objective
    from sweeps.training.stats import EpochStats

# the types a caller of ``train`` needs, kept here (sweeps.training.trial has the rest)
__all__ = ["ObjectiveStartError", "Observer", "TrainResult", "default_chunk", "train"]


def train(
    objective: Objective,
    hp: Hyperparams,
    epochs: int,
    *,
    device: str | torch.device = "cpu",
    observers: tuple[Observer, ...] = (),
    chunk: int | None = None,
    per_tensor: bool = True,
    log_steps: bool = False,
) -> TrainResult:
    """Run ``epochs`` epochs of ``hp`` on ``objective`` and return the result: one full-batch
    step an epoch, or one pass over the batches of a mini-batch objective
    (``sweeps.training.minibatch``).

    ``per_tensor`` adds each parameter tensor's mean |grad| and update ratio to the
    statistics (``grad_abs_mean/<tensor>``, ``update_ratio/<tensor>``) for objectives of 2
    to ``recorder.MAX_TENSORS`` tensors (``recorder.tracked_tensors``).

    ``log_steps`` keeps every step's loss and learning rate of a mini-batch objective
    (``EpochStats.trace``; see ``train_minibatch``). A full-batch objective ignores it: its
    one step an epoch is already in the per-epoch ``loss`` and ``lr``."""
    import torch

    from objectives import is_minibatch
    from sweeps.optim import SCHEDULERS, build_optimizer, build_scheduler
    from sweeps.optim.optimizers import clip_gradients
    from sweeps.training.recorder import Recorder, chunk_capacity, tracked_tensors

    if is_minibatch(objective):
        return train_minibatch(objective, hp, epochs, device=device, observers=observers,
                               chunk=chunk, per_tensor=per_tensor, log_steps=log_steps)
    device = torch.device(device)
    try:
        initial = objective.init_params(device)
        params = trainable(initial)
        leaves = list(params.values())
        optimizer = build_optimizer(hp.optimizer, leaves, hp.lr, hp.options)
        scheduler = build_scheduler(hp.scheduler, optimizer, epochs, hp.options)
    except Exception as exc:
        raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
    steps_on_loss = SCHEDULERS[hp.scheduler].steps_on_loss
    recorder = Recorder(leaves, chunk_capacity(leaves, chunk or default_chunk(epochs)),
                        tracked_tensors(list(params), per_tensor))
    group = optimizer.param_groups[0]
    parts: list[EpochStats] = []

    def flush() -> Status | tuple[int, str]:
        return deliver(recorder.drain(), observers, parts)

    epoch = 0
    outcome: Status | tuple[int, str] = "complete"
    try:
        for epoch in range(epochs):
            optimizer.zero_grad()
            loss = objective.loss(params)
            loss.backward()
            recorder.record(loss, group["lr"], [p.grad for p in leaves])
            clip_gradients(leaves, hp.options)
            optimizer.step()
            if scheduler is not None:
                scheduler.step(loss.item()) if steps_on_loss else scheduler.step()
            if recorder.full or epoch == epochs - 1:
                outcome = flush()
                if outcome != "complete":
                    break
    except Exception as exc:
        raise_observer_error(exc)
        if epoch == 0 and recorder.size == 0 and not parts:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
        outcome = flush() if recorder.size else "complete"
        if not isinstance(outcome, tuple):  # the exception, not an earlier NaN, ended it
            return finish(observers, parts, "failed", math.nan,
                           f"{type(exc).__name__}: {exc}", epoch, None)
    except BaseException:  # interrupted: hand the epochs already run to the observers
        if recorder.size:
            flush()
        raise
    if isinstance(outcome, tuple):
        bad_epoch, what = outcome
        return finish(observers, parts, "failed", math.nan, f"non-finite {what}", bad_epoch,
                       None)
    with torch.no_grad():
        final = float(objective.loss(params))
    if not math.isfinite(final):
        return finish(observers, parts, "failed", final, "non-finite final loss", epochs, None)
    detached = {k: v.detach() for k, v in params.items()}
    return finish(observers, parts, outcome, final, None, None, detached)
