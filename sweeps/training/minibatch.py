"""The training loop of one trial of a mini-batch objective: an epoch is one pass over its
batches (``objectives.MiniBatchObjective``).

Each step trains one batch; the epoch's statistics are the means over its steps, summed on the
device (``StepRecorder``: no host synchronisation per step), and after each epoch the
objective's validation metrics join them (``val_loss``, ``val_<metric>``). Schedulers step once
per epoch, except the ones that span the run's steps (``onecycle``), which step per batch.
The trial owns its buffers and dropout generator (``start_trial``): a re-run is the same run.
An objective autocast to float16 has its loss scaled (``sweeps.training.precision``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sweeps.training.hparams import Hyperparams
from sweeps.training.trial import (
    ObjectiveStartError,
    Observer,
    ObserverError,
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

    from objectives import MiniBatchObjective
    from sweeps.training.stats import EpochStats

__all__ = ["last_epoch_loss", "train_minibatch"]


def train_minibatch(
    objective: MiniBatchObjective,
    hp: Hyperparams,
    epochs: int,
    *,
    device: str | torch.device = "cpu",
    observers: tuple[Observer, ...] = (),
    chunk: int | None = None,
    per_tensor: bool = True,
    log_steps: bool = False,
) -> TrainResult:
    """Run ``epochs`` passes of ``hp`` over ``objective``'s batches and return the result;
    ``per_tensor`` as in ``sweeps.training.loop.train``.

    ``log_steps`` also keeps every step's training loss and learning rate (the statistics'
    ``trace``, a ``StepTrace``; steps numbered from 0 across the run): the losses stay on the
    device until each chunk's single transfer, the learning rates on the host, so a step
    still costs no host synchronisation.

    ``final_loss`` is the mean training loss of the last epoch run (SPEC 5's "loss of the
    parameters after the last step" would cost another pass over the training data, and in
    training mode it is no more than one more noisy draw of the same loss).
    """
    import torch

    from sweeps.optim import SCHEDULERS, build_optimizer, build_scheduler
    from sweeps.optim.optimizers import clip_gradients
    from sweeps.training.precision import optimizer_steps
    from sweeps.training.recorder import StepRecorder, tracked_tensors

    device = torch.device(device)
    try:
        initial = objective.init_params(device)
        params = trainable(initial)
        leaves = list(params.values())
        state = objective.start_trial(device)
        batches = objective.batches(0, device)
        if not batches:
            raise ValueError("the objective has no batches in an epoch")
        optimizer = build_optimizer(hp.optimizer, leaves, hp.lr, hp.options)
        scheduler = build_scheduler(hp.scheduler, optimizer, epochs, hp.options,
                                    steps_per_epoch=len(batches))
        steps = optimizer_steps(objective, optimizer, device)
    except Exception as exc:
        raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
    spec = SCHEDULERS[hp.scheduler]
    per_step = scheduler is not None and spec.per_step
    per_epoch = scheduler is not None and not spec.per_step
    recorder = StepRecorder(leaves, chunk or default_chunk(epochs, len(batches)),
                            tracked_tensors(list(params), per_tensor),
                            step_trace=len(batches) if log_steps else None)
    group = optimizer.param_groups[0]
    parts: list[EpochStats] = []
    epoch = 0
    stepped = False  # a step completed: a later failure is the trial's, not the objective's
    outcome: Status | tuple[int, str] = "complete"
    try:
        for epoch in range(epochs):
            if epoch:
                batches = objective.batches(epoch, device)
            for batch in batches:
                optimizer.zero_grad()
                loss = objective.batch_loss(params, state, batch)
                steps.backward(loss)
                recorder.before_step(loss, [p.grad for p in leaves])
                clip_gradients(leaves, hp.options)
                lr = group["lr"]
                steps.step()
                recorder.after_step(lr)
                stepped = True
                if per_step:
                    scheduler.step()
            mean_loss = recorder.epoch_loss()
            recorder.end_epoch(objective.validate(params, state))
            if per_epoch:
                scheduler.step(mean_loss.item()) if spec.steps_on_loss else scheduler.step()
            if recorder.full or epoch == epochs - 1:
                outcome = deliver(recorder.drain(), observers, parts)
                if outcome != "complete":
                    break
    except Exception as exc:
        raise_observer_error(exc)
        if not stepped and not parts:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
        outcome = deliver(recorder.drain(), observers, parts) if recorder.size else "complete"
        if not isinstance(outcome, tuple):  # the exception, not an earlier NaN, ended it
            return finish(observers, parts, "failed", math.nan,
                          f"{type(exc).__name__}: {exc}", epoch, None)
    except BaseException:  # interrupted: hand the epochs already run to the observers
        if recorder.size:
            deliver(recorder.drain(), observers, parts)
        raise
    if isinstance(outcome, tuple):
        bad_epoch, what = outcome
        return finish(observers, parts, "failed", math.nan, f"non-finite {what}", bad_epoch,
                      None)
    final = last_epoch_loss(parts)
    detached = {k: v.detach() for k, v in params.items()}
    buffers = {k: v.detach() for k, v in state.buffers.items()}
    try:
        return finish(observers, parts, outcome, final, None, None, detached, buffers)
    except ObserverError as exc:  # an observer's at the end too: its cause goes up
        raise_observer_error(exc)
        raise


def last_epoch_loss(parts: list[EpochStats]) -> float:
    """The mean training loss of the last epoch in ``parts`` (a mini-batch trial's
    ``final_loss``); NaN if there is none."""
    return next((float(p.loss[-1]) for p in reversed(parts) if len(p)), math.nan)
